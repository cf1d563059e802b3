#!/usr/bin/env bash
# Print the absolute path of a CPython X.Y interpreter.
#
#   tools/find_python.sh 3.12
#
# Lookup order (first hit wins):
#   1. `pythonX.Y` on PATH, if running it really reports CPython X.Y
#      (pyenv shims for versions that are not "global" fail this check and
#      are skipped). The path printed is the interpreter's own sys.executable,
#      not the shim, so it stays valid whatever PYENV_VERSION says later.
#   2. <pyenv root>/versions/X.Y.*/bin/pythonX.Y (newest patch release first);
#      <pyenv root> is `pyenv root` if pyenv exists, else $HOME/.pyenv.
#   3. for 3.14/3.15 only: tools/provision_python.sh X.Y, which unpacks
#      Debian's CPython packages into ~/.cache/taskleak/cpython/X.Y (once;
#      later runs reuse it). Set TASKLEAK_NO_PROVISION=1 to skip this step.
#      See docs/interpreters.md.
#
# Exit codes: 0 found (path on stdout), 1 usage error, 2 not found.
set -euo pipefail

prog="taskleak"
looked=()

die_usage() {
    echo "$prog: $*" >&2
    echo "usage: tools/find_python.sh X.Y   (e.g. 3.11)" >&2
    exit 1
}

# check_candidate PATH -> prints the real executable and returns 0 if PATH is
# a working CPython $want.
check_candidate() {
    local cand="$1" real
    [[ -x "$cand" ]] || return 1
    real=$("$cand" - "$want" 2>/dev/null <<'EOF'
import platform, sys
want = sys.argv[1]
if platform.python_implementation() == "CPython" and \
        "%d.%d" % sys.version_info[:2] == want:
    print(sys.executable)
else:
    sys.exit(1)
EOF
    ) || return 1
    [[ -n "$real" && -x "$real" ]] || return 1
    printf '%s\n' "$real"
}

find_on_path() {
    local cand
    cand=$(command -v "python$want" 2>/dev/null) || { looked+=("python$want on PATH (none)"); return 1; }
    looked+=("$cand")
    check_candidate "$cand"
}

pyenv_root() {
    local root=""
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root 2>/dev/null) || root=""
    fi
    printf '%s\n' "${root:-${PYENV_ROOT:-$HOME/.pyenv}}"
}

find_in_pyenv() {
    local root cand dir
    root=$(pyenv_root)
    looked+=("$root/versions/$want.*/bin/python$want")
    [[ -d "$root/versions" ]] || return 1
    # Newest patch release first (3.12.10 before 3.12.9); skip pre-releases
    # and pyenv-virtualenv envs, which live under versions/ too.
    while IFS= read -r dir; do
        [[ -n "$dir" ]] || continue
        cand="$root/versions/$dir/bin/python$want"
        check_candidate "$cand" && return 0
    done < <(cd "$root/versions" && ls -1d -- "$want".* 2>/dev/null \
                 | grep -E "^${want//./\\.}\.[0-9]+\$" | sort -t. -k3,3nr)
    return 1
}

# Provision interpreters the machine lacks (3.14/3.15 from Debian packages).
# Prints the interpreter path and returns 0 on success. The provisioning
# script's progress ("provision: ...") goes to stderr; its last stdout line is
# the interpreter path.
try_provision() {
    case "$want" in 3.14|3.15) ;; *) return 1 ;; esac
    local script out
    script="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/provision_python.sh"
    if [[ "${TASKLEAK_NO_PROVISION:-0}" == 1 ]]; then
        looked+=("provisioning (skipped: TASKLEAK_NO_PROVISION=1)")
        return 1
    fi
    looked+=("$script $want")
    echo "$prog: no CPython $want on PATH or in pyenv; using tools/provision_python.sh" >&2
    out=$("$script" "$want") || { looked[-1]+=" (failed)"; return 1; }
    check_candidate "$(tail -n 1 <<<"$out")"
}

main() {
    [[ $# -eq 1 ]] || die_usage "expected exactly one argument, got $#"
    want="$1"
    [[ "$want" =~ ^3\.(0|[1-9][0-9]*)$ ]] \
        || die_usage "malformed Python version '$want' (want MAJOR.MINOR like 3.12)"

    find_on_path && return 0
    find_in_pyenv && return 0
    try_provision && return 0

    local where="" item
    for item in "${looked[@]}"; do where+="${where:+, }$item"; done
    echo "$prog: no CPython $want found (looked in $where)" >&2
    exit 2
}

main "$@"
