"""Cost of the pytest plugin on a suite of small async tests.

Generates N pytest-asyncio tests (each creates and awaits a couple of tasks)
in a temporary directory, then runs pytest on it with the plugin off and with
``--taskleak``, interleaved, and reports the median wall time of each and the
ratio (target: <= 1.3x).

    python bench/bench_pytest_plugin.py [-n 1000] [--repeats 5] [--profile]

``--profile`` also runs the --taskleak suite in-process under cProfile and
prints where the plugin's time goes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

TARGET = 1.3

HEADER = """
import asyncio
import pytest


async def work(x):
    await asyncio.sleep(0)
    return x

"""

TEST = """
@pytest.mark.asyncio
async def test_{i}():
    a = asyncio.create_task(work({i}))
    b = asyncio.create_task(work({i} + 1))
    assert await a + await b == 2 * {i} + 1
"""


def make_suite(root: str, n: int, per_file: int = 50) -> None:
    with open(os.path.join(root, "pytest.ini"), "w") as f:
        f.write("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    for start in range(0, n, per_file):
        with open(os.path.join(root, f"test_gen_{start // per_file:03d}.py"), "w") as f:
            f.write(HEADER + "".join(TEST.format(i=i) for i in range(start, min(n, start + per_file))))


def run_once(root: str, extra: list) -> float:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"pytest {' '.join(extra)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def profile(root: str) -> None:
    code = textwrap.dedent(f"""
        import cProfile, pstats, sys, os
        os.chdir({root!r})
        import pytest
        pr = cProfile.Profile()
        pr.enable()
        pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--taskleak"])
        pr.disable()
        st = pstats.Stats(pr)
        st.sort_stats("cumulative")
        st.print_stats(r"taskleak|gc|collect", 25)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    print("\n".join(line for line in out.splitlines() if line.strip() and "passed" not in line)[-6000:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1000, help="number of tests (default 1000)")
    ap.add_argument("--repeats", type=int, default=5, help="runs of each configuration (default 5)")
    ap.add_argument("--profile", action="store_true", help="cProfile the --taskleak run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="taskleak-bench-") as root:
        make_suite(root, args.n)
        run_once(root, [])  # warm up: bytecode caches, imports
        off, on = [], []
        for _ in range(args.repeats):
            off.append(run_once(root, []))
            on.append(run_once(root, ["--taskleak"]))
        m_off, m_on = statistics.median(off), statistics.median(on)
        ratio = m_on / m_off
        print(
            f"pytest plugin, {args.n} async tests, median of {args.repeats} interleaved runs "
            f"(Python {sys.version.split()[0]})"
        )
        print(f"  plugin off:  {m_off:6.2f} s   runs: {', '.join(f'{x:.2f}' for x in off)}")
        print(f"  --taskleak:  {m_on:6.2f} s   runs: {', '.join(f'{x:.2f}' for x in on)}")
        print(
            f"  ratio:       {ratio:6.2f}x  (target <= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'}); "
            f"{(m_on - m_off) / args.n * 1e3:.2f} ms per test"
        )
        if args.profile or ratio > TARGET:
            profile(root)


if __name__ == "__main__":
    main()
