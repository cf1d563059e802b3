#!/usr/bin/env bash
# tools/smoke_wheel.sh for an aarch64 wheel on an x86_64 machine: the same
# tools/wheel_smoke.py, run by Debian's arm64 CPython under qemu-aarch64 in a
# venv of its own, with no compiler reachable.
#
#   tools/smoke_wheel_qemu.sh TOOLS_PYTHON SYSROOT X.Y dist/taskleak-...-cp313-...aarch64.whl
#
# SYSROOT comes from `tools/arm64_cpython.sh sysroot X.Y`; TOOLS_PYTHON is an
# x86_64 interpreter with pip and `installer` (make dist's tools venv).
#
# Nothing here registers qemu with the kernel (binfmt_misc is a machine-wide
# switch): the venv's bin/python is a small script that starts qemu, and the
# emulated CPython is told (qemu -0) that it runs as that script, so it takes
# the venv for sys.prefix and re-runs itself through the script when the
# smoke test starts `taskleak run` or pytest as subprocesses. Console scripts
# get that script as their #! interpreter.
set -euo pipefail
tools_python=$1
sysroot=$(realpath "$2")
ver=$3
wheel=$(realpath "$4")
here=$(cd "$(dirname "$0")" && pwd)
qemu=$(command -v qemu-aarch64) || { echo "smoke-qemu: qemu-aarch64 missing (apt-get install qemu-user)" >&2; exit 2; }
guest="$sysroot/usr/bin/python$ver"
[[ -x "$guest" ]] || { echo "smoke-qemu: no $guest" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

venv="$work/venv"
site="$venv/lib/python$ver/site-packages"
mkdir -p "$venv/bin" "$site" "$work/bin" "$work/wheels"
full=$("$qemu" -L "$sysroot" "$guest" -c 'import platform; print(platform.python_version())')
printf 'home = %s\ninclude-system-site-packages = false\nversion = %s\n' \
    "$sysroot/usr/bin" "$full" > "$venv/pyvenv.cfg"
cat > "$venv/bin/python" <<EOF
#!/bin/sh
exec "$qemu" -L "$sysroot" -0 "\$0" "$guest" "\$@"
EOF
chmod +x "$venv/bin/python"
ln -s python "$venv/bin/python3"

# pytest (pure Python) and what it needs on the target version, chosen by the
# x86_64 pip for an aarch64 CPython X.Y; then the wheel and those, installed
# with console scripts that start the venv's python.
abi="cp${ver/./}"
"$tools_python" -m pip download --disable-pip-version-check -q -d "$work/wheels" \
    --only-binary=:all: --platform manylinux2014_aarch64 --python-version "$ver" \
    --implementation cp --abi "$abi" pytest
"$tools_python" - "$site" "$venv/bin" "$venv/bin/python" "$wheel" "$work"/wheels/*.whl <<'EOF'
import sys
from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile

site, scripts, interpreter, *wheels = sys.argv[1:]
scheme = {"purelib": site, "platlib": site, "scripts": scripts,
          "headers": site + "/../include", "data": site + "/../../.."}
dest = SchemeDictionaryDestination(scheme, interpreter=interpreter, script_kind="posix",
                                   bytecode_optimization_levels=())
for w in wheels:
    with WheelFile.open(w) as source:
        install(source, dest, {"INSTALLER": b"taskleak-smoke-qemu"})
EOF

# Bytecode, compiled natively. Debian compiles its stdlib's .pyc at install
# time (not in the .deb), and the wheels were installed without: under
# emulation every import would compile its source first, in every one of the
# smoke test's processes (minutes per version). A .pyc depends on the minor
# version only, so this machine's interpreter of the same version writes them.
native=$("$here/find_python.sh" "$ver" 2>/dev/null || true)
if [[ -n "$native" ]]; then
    "$native" -m compileall -q -j 0 "$sysroot/usr/lib/python$ver" "$site" >/dev/null 2>&1 || true
fi

for cmd in env sh bash; do ln -s "$(command -v "$cmd")" "$work/bin/$cmd"; done
echo "smoke: $(basename "$wheel") on $("$venv/bin/python" -c 'import platform, sys; print("Python", platform.python_version(), platform.machine(), "(Debian arm64 build under", sys.argv[1] + ")")' "$(basename "$qemu")")"
cd "$work"
# Emulation is 5-20x slower: give wheel_smoke.py's subprocesses more time.
env -i HOME="$work" PATH="$venv/bin:$work/bin" TASKLEAK_SMOKE_TIMEOUT=900 "$venv/bin/python" "$here/wheel_smoke.py"
