#!/usr/bin/env bash
# Debian's arm64 CPython X.Y, unpacked (never installed) for the aarch64
# wheels of make dist: its headers to compile against, and a sysroot in which
# qemu-aarch64 runs the interpreter for the smoke test.
#
#   tools/arm64_cpython.sh headers X.Y   # -> prints a dir holding include/pythonX.Y
#   tools/arm64_cpython.sh sysroot X.Y   # -> prints a sysroot (usr/bin/pythonX.Y, its libs)
#
# Debian packages come from a private apt index of bookworm, trixie, sid and
# experimental for arm64 only (nothing under /etc/apt changes; no multiarch).
# Cache: ${TASKLEAK_ARM64_CACHE:-$HOME/.cache/taskleak/arm64}/<X.Y>/; a second
# run prints the cached directory at once.
#
# For a version Debian has no arm64 build of (3.10 and 3.12 today), `headers`
# derives the aarch64 headers from the x86_64 ones of the local interpreter:
# CPython's headers are the same on every 64-bit Linux except pyconfig.h, and
# there only the x86-specific lines differ (see derive_pyconfig). `sysroot`
# has no such fallback: exit 3, with the reason on stderr.
#
# Exit codes: 0 ok, 1 usage, 2 failed, 3 Debian has no arm64 CPython X.Y.
set -euo pipefail

MIRROR="${TASKLEAK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
say() { echo "arm64-cpython: $*" >&2; }
die() { echo "arm64-cpython: error: $1" >&2; exit "${2:-2}"; }
usage() { echo "usage: tools/arm64_cpython.sh headers|sysroot X.Y" >&2; exit 1; }

[[ $# -eq 2 ]] || usage
what=$1 ver=$2
[[ "$what" == headers || "$what" == sysroot ]] || usage
[[ "$ver" =~ ^3\.[0-9]+$ ]] || usage
here=$(cd "$(dirname "$0")" && pwd)
root="${TASKLEAK_ARM64_CACHE:-$HOME/.cache/taskleak/arm64}"
mkdir -p "$root"
# make dist asks for several versions at once: one apt user at a time.
exec 9>"$root/.lock"
flock 9

aptdir="$root/apt"
mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/debs"
printf 'deb [arch=arm64] %s %s main\n' "$MIRROR" bookworm "$MIRROR" trixie "$MIRROR" sid \
    "$MIRROR" experimental > "$aptdir/sources.list"
APT_OPTS=(
    -o "Dir::Etc::sourcelist=$aptdir/sources.list" -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache"
    -o "APT::Get::List-Cleanup=0" -o "APT::Architecture=arm64" -o "APT::Architectures::=arm64"
)
[[ $(id -u) -eq 0 ]] && APT_OPTS+=(-o "APT::Sandbox::User=root")
acache() { apt-cache "${APT_OPTS[@]}" "$@"; }

update_index() {
    # Six hours, as tools/provision_python.sh: sid moves, but not by the minute.
    if [[ -z "$(find "$aptdir/lists/.updated" -mmin -360 2>/dev/null)" ]]; then
        say "updating the private arm64 apt index (bookworm, trixie, sid, experimental)"
        apt-get "${APT_OPTS[@]}" -q update >&2 || die "apt-get update of the private arm64 index failed"
        touch "$aptdir/lists/.updated"
    fi
}

# newest_version -> Debian version of python$ver-minimal (arm64), or "".
newest_version() {
    local v newest=""
    while read -r v; do
        [[ -n "$v" ]] || continue
        if [[ -z "$newest" ]] || dpkg --compare-versions "$v" gt "$newest"; then newest=$v; fi
    done < <(acache madison "python$ver-minimal" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}')
    printf '%s\n' "$newest"
}

# download PKG... -> the .debs into $aptdir/debs (kept: the cache of a rerun).
download() {
    (cd "$aptdir/debs" && apt-get "${APT_OPTS[@]}" -q download "$@" >&2) \
        || die "apt-get download $* failed"
}
deb_of() {
    local f=()
    shopt -s nullglob; f=("$aptdir/debs/${1}_"*_arm64.deb "$aptdir/debs/${1}_"*_all.deb); shopt -u nullglob
    (( ${#f[@]} )) && printf '%s\n' "${f[@]}" | sort -V | tail -1
}

# derive_pyconfig X86_PYCONFIG -> aarch64 pyconfig.h on stdout. On Debian's
# amd64/arm64 pairs of 3.11 and 3.14 the two differ in exactly these lines
# (the output equals Debian's arm64 file for both): the x87/x86-64
# inline-assembly switches, wchar_t being usable as Py_UNICODE (unsigned on
# aarch64), the support tier, and (3.14+) HACL*'s x86 SIMD switches. A header
# that lacks the x86 lines is not what this expects: fail rather than guess.
derive_pyconfig() {
    local src=$1
    grep -q '^#define HAVE_GCC_ASM_FOR_X64 1' "$src" \
        || die "$src has no '#define HAVE_GCC_ASM_FOR_X64 1': not an x86_64 pyconfig.h?"
    sed -E \
        -e 's|^#define (HAVE_GCC_ASM_FOR_X64\|HAVE_GCC_ASM_FOR_X87) 1$|/* #undef \1 */|' \
        -e 's|^/\* #undef HAVE_USABLE_WCHAR_T \*/$|#define HAVE_USABLE_WCHAR_T 1|' \
        -e 's|^#define PY_SUPPORT_TIER [0-9]+$|#define PY_SUPPORT_TIER 2|' \
        -e 's|^#define (_Py_HACL_CAN_COMPILE_VEC128\|_Py_HACL_CAN_COMPILE_VEC256) 1$|/* #undef \1 */|' \
        "$src"
}

headers() {
    local out="$root/$ver/headers" stage debver x86inc
    if [[ -f "$out/include/python$ver/Python.h" ]]; then printf '%s\n' "$out"; return; fi
    update_index
    stage="$root/$ver/.stage-headers.$$"
    rm -rf "$stage"; mkdir -p "$stage/x" "$stage/out/include"
    debver=$(newest_version)
    if [[ -n "$debver" ]]; then
        say "headers for aarch64 $ver: Debian libpython$ver-dev $debver (arm64)"
        download "libpython$ver-dev=$debver"
        dpkg-deb -x "$(deb_of "libpython$ver-dev")" "$stage/x"
        cp -a "$stage/x/usr/include/python$ver" "$stage/out/include/"
        # Debian's pyconfig.h only dispatches to <aarch64-linux-gnu/python$ver/pyconfig.h>
        # on the system include path; put the real one in its place.
        cp -f "$stage/x/usr/include/aarch64-linux-gnu/python$ver/pyconfig.h" \
            "$stage/out/include/python$ver/pyconfig.h"
        echo "Debian libpython$ver-dev $debver arm64" > "$stage/out/PROVENANCE"
    else
        x86inc=$("$("$here/find_python.sh" "$ver")" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
        say "headers for aarch64 $ver: Debian has no arm64 CPython $ver; deriving from $x86inc"
        cp -a "$x86inc" "$stage/out/include/python$ver"
        derive_pyconfig "$x86inc/pyconfig.h" > "$stage/out/include/python$ver/pyconfig.h"
        echo "derived from $x86inc (x86_64) by tools/arm64_cpython.sh derive_pyconfig" > "$stage/out/PROVENANCE"
    fi
    grep -q 'HAVE_GCC_ASM_FOR_X64 1' "$stage/out/include/python$ver/pyconfig.h" \
        && die "the aarch64 pyconfig.h for $ver still says HAVE_GCC_ASM_FOR_X64"
    rm -rf "$out"; mv "$stage/out" "$out"; rm -rf "$stage"
    printf '%s\n' "$out"
}

sysroot() {
    local out="$root/$ver/sysroot" stage debver deb l t
    if [[ -x "$out/usr/bin/python$ver" && -f "$out/.complete" ]]; then printf '%s\n' "$out"; return; fi
    update_index
    debver=$(newest_version)
    [[ -n "$debver" ]] || die "Debian (bookworm, trixie, sid, experimental) has no arm64 CPython $ver (no python$ver-minimal for arm64)" 3
    say "sysroot for aarch64 $ver: Debian python$ver $debver (arm64)"
    # The interpreter and its standard library, plus the closure of their
    # shared-library dependencies (lib*, zlib1g; the first of alternatives).
    # One apt-cache call per level of the breadth-first walk: each call
    # parses the four suites' indexes, which takes a second or two.
    local -A seen=()
    local level=("python$ver-minimal=$debver" "libpython$ver-minimal=$debver"
                 "libpython$ver-stdlib=$debver" libgcc-s1 libstdc++6)
    local pkgs=() next p name d
    while (( ${#level[@]} )); do
        next=()
        for p in "${level[@]}"; do
            name=${p%%=*}
            [[ -z "${seen[$name]:-}" ]] || continue
            seen[$name]=1
            pkgs+=("$p"); next+=("$p")
        done
        (( ${#next[@]} )) || break
        level=()
        while IFS= read -r d; do
            d=${d%%|*}; d=${d%%(*}; d=${d%%:*}; d=${d// /}
            [[ -n "$d" && -z "${seen[$d]:-}" ]] || continue
            case "$d" in
                *-dev|*-bin|*-common|*-data|*-doc) ;;
                lib*|zlib1g) level+=("$d") ;;
            esac
        done < <(acache show --no-all-versions "${next[@]}" 2>/dev/null \
                 | awk '/^(Pre-)?Depends:/{sub(/^[^:]*: /,""); print}' | tr ',' '\n')
    done
    say "downloading ${#pkgs[@]} arm64 packages"
    download "${pkgs[@]}"
    stage="$root/$ver/.stage-sysroot.$$"
    rm -rf "$stage"; mkdir -p "$stage"
    for p in "${pkgs[@]}"; do
        deb=$(deb_of "${p%%=*}")
        [[ -n "$deb" ]] || die "no .deb for $p after the download"
        dpkg-deb -x "$deb" "$stage"
    done
    # Merged /usr, as a Debian system has it: bookworm's libc6 ships
    # /lib/ld-linux-aarch64.so.1, sid's /usr/lib/...; the interpreter asks for
    # /lib/ld-linux-aarch64.so.1 either way.
    if [[ -d "$stage/lib" && ! -L "$stage/lib" ]]; then
        mkdir -p "$stage/usr/lib"
        cp -a "$stage/lib/." "$stage/usr/lib/"
        rm -rf "$stage/lib"
    fi
    ln -sfn usr/lib "$stage/lib"
    # qemu -L looks a guest path up in the sysroot, but the host kernel follows
    # symlinks: an absolute target (/lib/aarch64-linux-gnu/libz.so.1) would
    # leave the sysroot. Make every absolute link relative.
    while IFS= read -r -d '' l; do
        t=$(readlink "$l")
        ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$stage$t")" "$l"
    done < <(find "$stage" -type l -lname '/*' -print0)
    [[ -x "$stage/usr/bin/python$ver" ]] || die "python$ver missing from the unpacked packages"
    for p in "${pkgs[@]}"; do
        dpkg-deb --show --showformat='${Package} ${Version}\n' "$(deb_of "${p%%=*}")"
    done > "$stage/.provenance"
    touch "$stage/.complete"
    rm -rf "$out"; mv "$stage" "$out"
    printf '%s\n' "$out"
}

"$what"
