#!/usr/bin/env bash
# Follow README.md's "Install" steps literally: the shell block after the
# `install-steps` marker runs, line by line as written, in a scratch HOME that
# holds a fresh clone of this checkout named `taskleak` (committed files only).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

block=$(awk '/<!-- install-steps/ {on=1; next} on && /^```sh/ {inside=1; next} inside && /^```/ {exit} inside {print}' "$repo/README.md")
if [[ -z "$block" ]]; then
    echo "readme-install: no install-steps block found in README.md" >&2
    exit 1
fi
git clone -q "$repo" "$scratch/taskleak"

interp=$("$repo/tools/find_python.sh" 3.11)
mkdir -p "$scratch/bin"
ln -s "$interp" "$scratch/bin/python3"
echo "readme-install: running in $scratch with $interp:"
echo "$block" | sed 's/^/    /'
cd "$scratch"
HOME="$scratch" PATH="$scratch/bin:/usr/local/bin:/usr/bin:/bin" bash -euo pipefail -c "$block" 2>&1 | tee "$scratch/out.txt"
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$repo/src/taskleak/__init__.py")
grep -q "taskleak $version" "$scratch/out.txt" || { echo "readme-install: 'taskleak --version' did not print $version" >&2; exit 1; }
echo "readme-install: ok"
