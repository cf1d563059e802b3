#!/usr/bin/env bash
# Install one wheel into a fresh venv of its own CPython and run
# tools/wheel_smoke.py there with no compiler reachable: PATH holds only the
# venv's bin/ and a folder of the few commands the smoke test needs.
#
#   tools/smoke_wheel.sh /path/to/python3.12 dist/taskleak-...-cp312-...whl
set -euo pipefail
interp=$1
wheel=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$interp" -m venv "$work/venv"
# pytest is needed for the plugin check; the wheel itself has no dependencies
# (--no-deps would hide a wrong requirement, so it is installed normally).
"$work/venv/bin/python" -m pip install --disable-pip-version-check -q "$wheel" pytest

mkdir "$work/bin"
for cmd in env sh bash; do ln -s "$(command -v "$cmd")" "$work/bin/$cmd"; done
echo "smoke: $(basename "$wheel") on $("$work/venv/bin/python" -V)"
cd "$work"
env -i HOME="$work" PATH="$work/venv/bin:$work/bin" "$work/venv/bin/python" "$here/wheel_smoke.py"
