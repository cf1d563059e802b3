"""Run public async projects' own test suites plain and with ``--taskleak``.

    make install && .venv/py3.11/bin/python bench/real_suites.py [--runs N] [--only NAME ...]

For each project: pip-download its pinned sdist (the sdists ship their tests),
make a scratch venv with the project and its pinned test dependencies, make the
taskleak installed in *this* interpreter importable there (a .pth file pointing
at a directory holding only taskleak and its dist-info, so pytest finds the
plugin and nothing else leaks in), run the suite plain and with --taskleak, and
print per suite: tests, tests failing only under taskleak, leaks reported, and
the wall-time ratio (medians over --runs).

Needs the network (PyPI) the first time; everything lands in
``bench/.real_suites/`` (delete it to start over). Takes minutes: it is not
part of ``make test`` or CI. Each run's terminal output is kept in
``bench/.real_suites/logs/`` - the taskleak summary there is what the closing
notes classify, report by report, as true leak or false failure.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import venv
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".real_suites"

COMMON = ["pytest==8.3.5", "pytest-asyncio==0.26.0"]


@dataclass
class Suite:
    name: str  # PyPI name
    version: str  # pinned sdist
    deps: list[str]  # pinned test dependencies
    tests: str = "tests"
    # pytest options that replace what needs plugins we do not install
    # (coverage, random order) or config the sdist does not ship.
    options: list[str] = field(default_factory=list)


SUITES = [
    Suite(
        "aiojobs",
        "1.4.0",
        COMMON + ["aiohttp==3.11.18", "pytest-aiohttp==1.1.0"],
        options=["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"],
    ),
    Suite(
        "aiostream",
        "0.6.4",
        COMMON,
        options=["-o", "addopts=--strict-markers", "-o", "asyncio_default_fixture_loop_scope=function"],
    ),
    Suite(
        "async-lru",
        "2.0.5",
        COMMON + ["pytest-timeout==2.3.1"],
        options=["-o", "addopts=", "-o", "asyncio_default_fixture_loop_scope=function"],
    ),
    Suite("janus", "2.0.0", COMMON, options=["-o", "addopts=", "--ignore=tests/test_benchmarks.py"]),
    Suite(
        "httpcore",
        "1.0.9",
        [
            "pytest==8.3.5",
            "anyio==4.9.0",
            "trio==0.30.0",
            "pytest-trio==0.8.0",
            "h2==4.2.0",
            "socksio==1.0.0",
            "certifi",
        ],
        options=["--ignore=tests/benchmark", "-p", "no:asyncio"],
    ),
    # threads and loops mixed (sync_to_async / async_to_sync)
    Suite("asgiref", "3.8.1", COMMON, options=["-o", "asyncio_default_fixture_loop_scope=function"]),
    # Happy Eyeballs: races connection attempts as tasks and cancels the losers
    Suite("aiohappyeyeballs", "2.6.1", COMMON, options=["-o", "addopts="]),
    # unittest.IsolatedAsyncioTestCase, a worker thread per connection
    Suite("aiosqlite", "0.21.0", ["pytest==8.3.5"], tests="aiosqlite/tests/smoke.py"),
    # its own pytest plugin, asyncio + uvloop + trio backends, warnings are errors
    Suite(
        "anyio",
        "4.9.0",
        [
            "pytest==8.3.5",
            "trio==0.30.0",
            "blockbuster==1.5.24",
            "exceptiongroup==1.3.0",
            "hypothesis==6.131.0",
            "psutil==7.0.0",
            "trustme==1.2.1",
            "truststore==0.10.1",
            "uvloop==0.21.0",
        ],
        options=["-m", "not network"],
    ),
    # a web framework whose tests run the app through anyio's blocking
    # portal: a TestClient per test, a fresh event loop in a thread each time
    Suite(
        "starlette",
        "0.46.2",
        [
            "pytest==8.3.5",
            "anyio==4.9.0",
            "trio==0.29.0",
            "httpx==0.28.1",
            "itsdangerous==2.2.0",
            "jinja2==3.1.6",
            "python-multipart==0.0.20",
            "pyyaml==6.0.2",
        ],
    ),
    # unittest.TestCase with hand-made loops: new_event_loop() /
    # run_until_complete() / close() per test (helpers.async_test)
    Suite(
        "aioitertools",
        "0.12.0",
        ["pytest==8.3.5"],
        tests="aioitertools/tests",
        options=["-o", "python_files=asyncio.py builtins.py helpers.py itertools.py more_itertools.py"],
    ),
    # a networking library with a session-scoped loop (asyncio_mode=auto,
    # fixture loop scope "session"), real servers in threads
    Suite(
        "python-socketio",
        "5.13.0",
        COMMON
        + [
            "python-engineio==4.12.0",
            "aiohttp==3.11.18",
            "msgpack==1.1.0",
            "requests==2.32.3",
            "simple-websocket==1.1.0",
            "uvicorn==0.34.2",
            "websocket-client==1.8.0",
            "pytest-timeout==2.3.1",
        ],
        options=["-p", "no:logging", "--timeout=60"],
    ),
    # SMTP client against a real aiosmtpd server on loopback, a session-scoped
    # loop shared by every test (asyncio_default_fixture_loop_scope=session)
    Suite(
        "aiosmtplib",
        "4.0.1",
        COMMON + ["aiosmtpd==1.4.6", "hypothesis==6.131.0", "trustme==1.2.1"],
        options=["-o", "addopts=--import-mode=importlib --strict-markers"],
    ),
    # cache decorators and locks over coroutines; the unit tests mock the
    # redis and memcached clients (the acceptance tests need the servers)
    Suite(
        "aiocache",
        "0.12.3",
        COMMON + ["pytest-mock==3.14.0", "redis==4.4.2", "aiomcache==0.8.2", "marshmallow==3.26.1", "msgpack==1.1.0"],
        tests="tests/ut",
        options=["-o", "addopts=--strict-markers", "-o", "asyncio_default_fixture_loop_scope=function"],
    ),
    # retry decorators around coroutines; asyncio.sleep between attempts
    Suite("tenacity", "9.1.2", ["pytest==8.3.5", "tornado==6.4.2", "typeguard==4.4.2"]),
    # file I/O handed to the default executor's threads
    Suite("aiofiles", "24.1.0", COMMON, options=["-o", "asyncio_default_fixture_loop_scope=function"]),
    # an ASGI server: real servers started per test, h11/httptools/websockets
    # protocols, anyio's pytest plugin
    Suite(
        "uvicorn",
        "0.34.2",
        [
            "pytest==8.3.5",
            "pytest-mock==3.14.0",
            "anyio==4.9.0",
            "httpx==0.28.1",
            "trustme==1.2.1",
            "cryptography==44.0.2",
            "a2wsgi==1.10.8",
            "wsproto==1.2.0",
            "websockets==13.1",
            "h11==0.16.0",
            "httptools==0.6.4",
            "uvloop==0.21.0",
            "watchfiles==1.0.5",
            "python-dotenv==1.1.0",
            "pyyaml==6.0.2",
        ],
        options=["-o", "addopts=--strict-markers"],
    ),
]


def sh(cmd: Sequence[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=True, **kw)


def taskleak_link_dir() -> Path:
    """A directory with only this interpreter's installed taskleak in it."""
    import taskleak

    pkg = Path(taskleak.__file__).resolve().parent
    site = pkg.parent
    infos = list(site.glob("taskleak-*.dist-info"))
    if not infos:
        sys.exit("taskleak is not installed as a distribution here: run `make install` first")
    out = WORK / "taskleak-only"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "taskleak").symlink_to(pkg)
    for info in infos:
        (out / info.name).symlink_to(info)
    return out


def prepare(s: Suite, link: Path) -> tuple[Path, Path]:
    """(python of the suite's venv, the unpacked sdist)."""
    dl = WORK / "sdists"
    dl.mkdir(parents=True, exist_ok=True)
    pattern = f"{s.name.replace('-', '_')}-{s.version}.tar.gz"
    found = list(dl.glob(pattern)) or list(dl.glob(f"{s.name}-{s.version}.tar.gz"))
    if not found:
        sh(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"{s.name}=={s.version}",
                "-d",
                str(dl),
            ]
        )
        found = list(dl.glob(pattern)) or list(dl.glob(f"{s.name}-{s.version}.tar.gz"))
    src_root = WORK / "src"
    with tarfile.open(found[0]) as tf:
        top = tf.getnames()[0].split("/")[0]
        if not (src_root / top).exists():
            tf.extractall(src_root)
    src = src_root / top
    # One venv per interpreter version: the linked taskleak is this
    # interpreter's build, whose _core does not load in another version.
    env_dir = WORK / "venvs" / f"py{sys.version_info[0]}.{sys.version_info[1]}" / s.name
    py = env_dir / "bin" / "python"
    stamp = env_dir / ".ready"
    if not stamp.exists():
        venv.create(env_dir, with_pip=True, clear=True)
        sh([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(src)] + s.deps)
        stamp.touch()
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "taskleak-bench.pth").write_text(str(link) + "\n")
    check = subprocess.run([str(py), "-c", "import taskleak._core"], capture_output=True, text=True)
    if check.returncode != 0:
        sys.exit(f"{s.name}: taskleak does not import in {env_dir}:\n{check.stderr}")
    return py, src


def outcomes(junit: Path) -> dict[str, str]:
    """test id -> passed | failed | skipped (an error in any phase counts as failed)."""
    out: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        tid = f"{case.get('classname')}::{case.get('name')}"
        state = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                state = "failed"
            elif child.tag == "skipped" and state == "passed":
                state = "skipped"
        if out.get(tid) != "failed":
            out[tid] = state
    return out


def run_suite(py: Path, src: Path, s: Suite, taskleak: bool, tag: str) -> tuple[float, dict[str, str], str]:
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    junit = logs / f"{s.name}-{tag}.xml"
    cmd = [str(py), "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", f"--junitxml={junit}", *s.options, s.tests]
    if taskleak:
        cmd.insert(-1, "--taskleak")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=src, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    (logs / f"{s.name}-{tag}.log").write_text(res.stdout + res.stderr)
    return wall, outcomes(junit) if junit.exists() else {}, res.stdout


def leaks_reported(stdout: str) -> int:
    n = 0
    for m in re.finditer(r"taskleak: (\d+) (?:leaked task\(s\)|late leak\(s\))", stdout):
        n += int(m.group(1))
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="runs per mode; wall times are medians")
    ap.add_argument("--only", nargs="*", help="suite names to run")
    args = ap.parse_args()
    link = taskleak_link_dir()
    rows = []
    for s in SUITES:
        if args.only and s.name not in args.only:
            continue
        print(f"== {s.name} {s.version}", flush=True)
        py, src = prepare(s, link)
        plain_w, tl_w = [], []
        plain: dict[str, str] = {}
        tl: dict[str, str] = {}
        out = ""
        for _ in range(args.runs):
            w, plain, _ = run_suite(py, src, s, False, "plain")
            plain_w.append(w)
            w, tl, out = run_suite(py, src, s, True, "taskleak")
            tl_w.append(w)
        only_tl = sorted(t for t, st in tl.items() if st == "failed" and plain.get(t) == "passed")
        rows.append(
            (
                s.name,
                len(plain),
                sum(1 for v in plain.values() if v == "failed"),
                len(only_tl),
                leaks_reported(out),
                statistics.median(tl_w) / statistics.median(plain_w),
                statistics.median(plain_w),
                statistics.median(tl_w),
            )
        )
        for t in only_tl:
            print(f"   failing only under taskleak: {t}")
    print()
    head = (
        "suite",
        "tests",
        "fail plain",
        "fail only w/ taskleak",
        "leaks reported",
        "wall ratio",
        "plain s",
        "taskleak s",
        "ms/test",
    )
    table = [head] + [
        (
            r[0],
            str(r[1]),
            str(r[2]),
            str(r[3]),
            str(r[4]),
            f"{r[5]:.2f}x",
            f"{r[6]:.1f}",
            f"{r[7]:.1f}",
            f"{(r[7] - r[6]) / max(r[1], 1) * 1000:+.1f}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    print(f"\nlogs (taskleak summaries to classify): {WORK / 'logs'}")


if __name__ == "__main__":
    main()
