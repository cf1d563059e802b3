#!/usr/bin/env bash
# Provide CPython X.Y (3.14 or 3.15) from Debian's binary packages (sid /
# experimental), unpacked into a private prefix outside the repo, together
# with the newer glibc/libssl/... those packages need (bookworm's are too old).
#
#   tools/provision_python.sh 3.14      # -> prints .../3.14/bin/python3.14
#
# Prefix: ${TASKLEAK_PYTHON_CACHE:-$HOME/.cache/taskleak/cpython}/X.Y
# A second run finds the working interpreter there and returns at once.
# Progress goes to stderr as "provision: ..." lines; the only line on stdout
# is the interpreter path (tools/find_python.sh relies on that).
# Nothing outside the cache is touched except: `apt-get install patchelf`
# from the machine's own (bookworm) sources if patchelf is missing.
# See docs/interpreters.md for why binaries, not a source build.
#
# Exit codes: 0 ok, 1 usage error, 2 provisioning failed, 3 not provided by
# Debian (free-threaded "X.Yt").
set -euo pipefail

SUPPORTED="3.14 3.15"
MIRROR="${TASKLEAK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ARCH_TRIPLET="x86_64-linux-gnu"

say() { echo "provision: $*" >&2; }
die() { echo "provision: error: $1" >&2; exit "${2:-2}"; }
usage() {
    echo "provision: $*" >&2
    echo "usage: tools/provision_python.sh X.Y   (X.Y one of: $SUPPORTED)" >&2
    exit 1
}

[[ $# -eq 1 ]] || usage "expected exactly one argument, got $#"
req="$1"
ver="${req%t}"
freethreaded=0; [[ "$req" == *t ]] && freethreaded=1
case " $SUPPORTED " in
    *" $ver "*) ;;
    *) usage "unsupported Python version '$req' (this script provides: $SUPPORTED)" ;;
esac

cache_root="${TASKLEAK_PYTHON_CACHE:-$HOME/.cache/taskleak/cpython}"
prefix="$cache_root/$req"
interp="$prefix/bin/python$req"

# works PATH -> 0 if PATH runs and is CPython $ver (free-threaded if asked).
works() {
    [[ -x "$1" ]] || return 1
    "$1" - "$ver" "$freethreaded" >/dev/null 2>&1 <<'EOF'
import platform, sys, sysconfig
ok = (platform.python_implementation() == "CPython"
      and "%d.%d" % sys.version_info[:2] == sys.argv[1]
      and bool(sysconfig.get_config_var("Py_GIL_DISABLED")) == (sys.argv[2] == "1"))
sys.exit(0 if ok else 1)
EOF
}

# --- fast path --------------------------------------------------------------
if works "$interp"; then
    say "cached: $interp ($(cat "$prefix/.taskleak-provenance" 2>/dev/null | head -1))"
    printf '%s\n' "$interp"
    exit 0
fi

[[ "$(uname -m)" == x86_64 ]] || die "only x86_64 is supported (got $(uname -m))"
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
    || die "needs apt-get and dpkg-deb (a Debian system)"

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock-$req"
if ! flock -n 9; then
    say "another provisioning of $req is running; waiting for it"
    flock 9
    if works "$interp"; then printf '%s\n' "$interp"; exit 0; fi
fi

# --- private apt configuration (never touches /etc/apt) ----------------------
aptdir="$cache_root/.apt"
mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
printf 'deb %s sid main\ndeb %s experimental main\n' "$MIRROR" "$MIRROR" \
    > "$aptdir/sources.list"
APT_OPTS=(
    -o "Dir::Etc::sourcelist=$aptdir/sources.list" -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache"
    -o "APT::Get::List-Cleanup=0" -o "APT::Architecture=amd64"
    -o "APT::Architectures::=amd64"
)
[[ $(id -u) -eq 0 ]] && APT_OPTS+=(-o "APT::Sandbox::User=root")
acache() { apt-cache "${APT_OPTS[@]}" "$@"; }

stamp="$aptdir/lists/.updated"
if [[ -z "$(find "$stamp" -mmin -360 2>/dev/null)" ]]; then
    say "updating private apt index for Debian sid/experimental (cache: $aptdir)"
    apt-get "${APT_OPTS[@]}" -q update >&2 || die "apt-get update of the private sid/experimental index failed"
    touch "$stamp"
fi

if (( freethreaded )); then
    ft=$(acache pkgnames "python$ver" 2>/dev/null | grep -E "^python${ver//./\\.}(t|-nogil|-freethreading|-ft)(\$|-)" || true)
    if [[ -z "$ft" ]]; then
        die "Debian (sid/experimental) has no free-threaded CPython $ver package (no python${ver}t / python${ver}-nogil; Debian packages named python$ver*: $(acache pkgnames "python$ver" | sort | tr '\n' ' '))" 3
    fi
    die "Debian now ships a free-threaded package ($ft), but this script does not know how to unpack it yet" 3
fi

# --- choose the newest Debian version of python$ver -------------------------
newest=""
while read -r v; do
    [[ -n "$v" ]] || continue
    if [[ -z "$newest" ]] || dpkg --compare-versions "$v" gt "$newest"; then newest="$v"; fi
done < <(acache madison "python$ver-minimal" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}')
[[ -n "$newest" ]] || die "Debian sid/experimental has no python$ver-minimal package"
say "using Debian python$ver $newest"

# Interpreter, stdlib, headers, venv/ensurepip wheels (all of one version)...
roots=("python$ver=$newest" "python$ver-minimal=$newest" "libpython$ver-minimal=$newest"
       "libpython$ver-stdlib=$newest" "libpython$ver=$newest" "libpython$ver-dev=$newest"
       "python$ver-dev=$newest" "python$ver-venv=$newest"
       python3-pip-whl python3-setuptools-whl
       # not a dependency of python, but C++ extensions and manylinux wheels
       # accepted for glibc 2.4x may need a libstdc++ newer than bookworm's.
       libstdc++6)

# ...plus the closure of their library dependencies (lib*, zlib1g; no -dev,
# no -data/-bin/-common tools). Alternatives: the first one.
declare -A seen=()
queue=("${roots[@]}")
pkgs=()
while (( ${#queue[@]} )); do
    p="${queue[0]}"; queue=("${queue[@]:1}")
    name="${p%%=*}"
    [[ -z "${seen[$name]:-}" ]] || continue
    seen[$name]=1
    pkgs+=("$p")
    deps=$(acache show --no-all-versions "$p" 2>/dev/null \
           | awk '/^$/{exit} /^(Pre-)?Depends:/{sub(/^[^:]*: /,""); print}' | tr ',' '\n') \
        || die "apt-cache show $p failed"
    while IFS= read -r d; do
        d="${d%%|*}"; d="${d%%(*}"; d="${d%%:*}"; d="${d// /}"
        [[ -n "$d" ]] || continue
        case "$d" in
            *-dev|*-bin|*-common|*-data|*-doc) continue ;;
            lib*|zlib1g) queue+=("$d") ;;
        esac
    done <<< "$deps"
done

debdir="$aptdir/debs/$req"
rm -rf "$debdir"; mkdir -p "$debdir"
say "downloading ${#pkgs[@]} packages: ${pkgs[*]}"
(cd "$debdir" && apt-get "${APT_OPTS[@]}" -q download "${pkgs[@]}" >&2) \
    || die "apt-get download failed (see above)"

# --- unpack into a staging dir, then move it into place ------------------------
stage="$cache_root/.stage-$req.$$"
trap 'rm -rf "$stage"' EXIT
rm -rf "$stage"; mkdir -p "$stage/root"
for deb in "$debdir"/*.deb; do
    dpkg-deb -x "$deb" "$stage/root" || die "dpkg-deb -x $deb failed"
done
[[ -x "$stage/root/usr/bin/python$ver" ]] || die "python$ver missing from the unpacked packages"
# Layout: <prefix>/{bin,lib,include,share,...} = the packages' /usr, <prefix>/etc.
mv "$stage/root/usr" "$stage/p"
[[ -d "$stage/root/etc" ]] && mv "$stage/root/etc" "$stage/p/etc"
P="$stage/p"

# Absolute symlinks (e.g. lib/python3.X/sitecustomize.py -> /etc/...) must
# point into the prefix, not at the host's files.
while IFS= read -r -d '' l; do
    t=$(readlink "$l")
    case "$t" in
        /usr/*) ln -sfn "$prefix/${t#/usr/}" "$l" ;;
        /etc/*) ln -sfn "$prefix/etc/${t#/etc/}" "$l" ;;
        /lib*/*) ln -sfn "$prefix/${t#/}" "$l" ;;
    esac
done < <(find "$P" -type l -lname '/*' -print0)

# The interpreter must run on the packaged glibc: its own loader, and libc /
# libssl / ... found through DT_RPATH (unlike RUNPATH it also covers the
# dependencies of dlopen()ed extension modules, and is not inherited by
# subprocesses the way LD_LIBRARY_PATH would be).
if ! command -v patchelf >/dev/null; then
    [[ $(id -u) -eq 0 ]] || die "patchelf is missing; run: sudo apt-get install patchelf"
    say "installing patchelf (bookworm)"
    apt-get install -y -q patchelf >&2 || { apt-get update -q >&2 && apt-get install -y -q patchelf >&2; } \
        || die "apt-get install patchelf failed"
fi
ld_so="$prefix/lib/$ARCH_TRIPLET/ld-linux-x86-64.so.2"
[[ -e "$P/lib/$ARCH_TRIPLET/ld-linux-x86-64.so.2" ]] || die "the libc6 package did not provide ld-linux-x86-64.so.2"
for exe in "$P/bin/python$ver"; do
    patchelf --set-interpreter "$ld_so" --force-rpath \
        --set-rpath "$prefix/lib/$ARCH_TRIPLET:$prefix/lib" "$exe" \
        || die "patchelf $exe failed"
done

# Debian's pyconfig.h is a multiarch dispatcher that #includes
# <x86_64-linux-gnu/python3.X/pyconfig.h> from the *system* include path;
# put the real one in its place so -I<prefix>/include/python3.X suffices.
real_cfg="$P/include/$ARCH_TRIPLET/python$ver/pyconfig.h"
[[ -f "$real_cfg" ]] && cp -f "$real_cfg" "$P/include/python$ver/pyconfig.h"

# sysconfig's build-time paths say /usr; point them into the prefix (the
# ensurepip wheel dir in particular, or `-m venv` finds no pip).
for f in "$P"/lib/python"$ver"/_sysconfigdata_*.py; do
    sed -i -E \
        -e "s#^(\s*'(BINDIR|BINLIBDEST|CONFINCLUDEDIR|CONFINCLUDEPY|DESTLIB|DESTSHARED|INCLUDEDIR|INCLUDEPY|LIBDEST|LIBDIR|LIBPC|LIBPL|MANDIR|SCRIPTDIR|WHEEL_PKG_DIR|datarootdir|exec_prefix|prefix)': ')/usr#\1$prefix#" \
        "$f"
done
rm -rf "$P"/lib/python"$ver"/__pycache__/_sysconfigdata_*

# Private Debian-layout site dirs, so nothing from the host's
# /usr/lib/python3/dist-packages can leak in (they are prefix-relative).
mkdir -p "$P/lib/python3/dist-packages"

{
    echo "Debian python$ver $newest (binary packages from $MIRROR sid/experimental, unpacked $(date -u +%Y-%m-%dT%H:%M:%SZ))"
    for deb in "$debdir"/*.deb; do dpkg-deb --show --showformat='${Package} ${Version}\n' "$deb"; done
} > "$P/.taskleak-provenance"

rm -rf "$prefix"
mv "$P" "$prefix"

# --- verify -------------------------------------------------------------------
say "verifying $interp"
"$interp" -c "import ssl, ctypes, sqlite3, zlib, lzma, bz2, _asyncio, venv, readline, _decimal, uuid, hashlib, zoneinfo, compression.zstd, sysconfig; print('provision:', 'CPython', __import__('sys').version.split()[0], ssl.OPENSSL_VERSION, 'sqlite', sqlite3.sqlite_version)" >&2 \
    || die "$interp cannot import the standard extension modules"
vtest="$stage/venv-test"
"$interp" -m venv "$vtest" >&2 || die "$interp -m venv failed"
"$vtest/bin/python" -m pip --version >&2 || die "pip does not work in a fresh venv"
rm -rf "$debdir"   # the prefix is the cache; the .debs are not needed again
say "ok: $(head -1 "$prefix/.taskleak-provenance")"
printf '%s\n' "$interp"
