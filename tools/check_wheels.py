"""Check the manylinux wheels of make dist (run by tools/build_dist.sh).

For every wheel given: its platform tags are exactly manylinux_2_17_<arch> and
manylinux2014_<arch>; every ELF file in it is a 64-bit object for <arch>; no
symbol version it needs is newer than glibc 2.17, GLIBCXX 3.4.19 or CXXABI
1.3.7 (what CentOS 7's gcc 4.8 runtime provides, i.e. the manylinux2014
policy); and `auditwheel show` finds it consistent with manylinux_2_17 or an
older policy. Prints one line per wheel and exits 1 if any check failed.

    python tools/check_wheels.py dist/*.whl
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile

from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

# The newest symbol version each library may require under manylinux2014.
LIMITS = {"GLIBC": (2, 17), "GLIBCXX": (3, 4, 19), "CXXABI": (1, 3, 7)}
MACHINES = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}
TAG_RE = re.compile(r"^(?P<name>.+?)-(?P<ver>[^-]+)-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")
VERSION_RE = re.compile(r"^(GLIBC|GLIBCXX|CXXABI)_([0-9.]+)$")


def version_needs(elf: ELFFile) -> set[str]:
    needs: set[str] = set()
    for section in elf.iter_sections():
        if isinstance(section, GNUVerNeedSection):
            for _verneed, aux_iter in section.iter_versions():
                needs.update(aux.name for aux in aux_iter)
    return needs


def check(path: str) -> tuple[list[str], str]:
    problems: list[str] = []
    name = path.rsplit("/", 1)[-1]
    m = TAG_RE.match(name)
    if not m:
        return [f"{name}: not a wheel file name"], ""
    plats = set(m["plat"].split("."))
    arch = next((a for a in MACHINES if any(p.endswith("_" + a) for p in plats)), None)
    if arch is None:
        return [f"{name}: no x86_64/aarch64 platform tag in {sorted(plats)}"], ""
    want = {f"manylinux_2_17_{arch}", f"manylinux2014_{arch}"}
    if plats != want:
        problems.append(f"platform tags {sorted(plats)}, expected {sorted(want)}")

    newest: dict[str, tuple[int, ...]] = {}
    n_elf = 0
    with zipfile.ZipFile(path) as zf:
        for member in zf.namelist():
            data = zf.read(member)
            if not data.startswith(b"\x7fELF"):
                continue
            n_elf += 1
            elf = ELFFile(io.BytesIO(data))
            if elf.elfclass != 64 or elf["e_machine"] != MACHINES[arch]:
                problems.append(f"{member}: ELF{elf.elfclass} {elf['e_machine']}, expected ELF64 {MACHINES[arch]}")
            for need in version_needs(elf):
                vm = VERSION_RE.match(need)
                if not vm:
                    continue
                lib, ver = vm[1], tuple(int(x) for x in vm[2].split("."))
                newest[lib] = max(newest.get(lib, ()), ver)
                if ver > LIMITS[lib]:
                    problems.append(f"{member} needs {need} (limit {lib}_{'.'.join(map(str, LIMITS[lib]))})")
    if n_elf == 0:
        problems.append("no ELF file in the wheel")

    r = subprocess.run(["auditwheel", "show", path], capture_output=True, text=True)
    text = " ".join((r.stdout + r.stderr).split())
    am = re.search(r'consistent with the following platform tag: "manylinux_(\d+)_(\d+)_' + arch + '"', text)
    if r.returncode != 0 or not am:
        problems.append(f"auditwheel show did not name a manylinux policy:\n{r.stdout}{r.stderr}")
    elif (int(am[1]), int(am[2])) > (2, 17):
        problems.append(f"auditwheel show: consistent only with manylinux_{am[1]}_{am[2]}_{arch}")
    policy = f"manylinux_{am[1]}_{am[2]}" if am else "?"

    found = ", ".join(f"{lib}_{'.'.join(map(str, v))}" for lib, v in sorted(newest.items())) or "none"
    summary = f"{arch:8} {m['py']:6} auditwheel: {policy:15} newest needed: {found}"
    return [f"{name}: {p}" for p in problems], summary


def main(paths: list[str]) -> int:
    if not paths:
        print("check-wheels: no wheel given", file=sys.stderr)
        return 1
    failed = False
    for path in paths:
        problems, summary = check(path)
        print(f"check-wheels: {'FAIL' if problems else 'ok  '} {summary}")
        for p in problems:
            print(f"check-wheels:   {p}")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
