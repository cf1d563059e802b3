"""Per-test cost of the pytest plugin against the size of the heap.

A clean test must pay nothing that grows with the heap: whether a finished
task of the test is still held is decided over what that task reaches, and a
holder search (a walk of the heap) runs only for a task really held after
teardown. This bench generates N tests whose tasks end in reference cycles
(failed and cancelled tasks: their tracebacks refer back to their frames, so
they stay alive until the collector runs, which is what used to trigger the
heap-wide searches), pads the heap with 0, 1M and 4M extra GC-tracked objects
in a session fixture, and prints the per-test overhead of ``--taskleak``
(median wall time with it, minus without, over N) at each size.

    python bench/bench_pytest_heap.py [-n 200] [--repeats 3] [--sizes 0 1000000 4000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

CONFTEST = '''
import os
import pytest

@pytest.fixture(autouse=True, scope="session")
def big_heap():
    n = int(os.environ.get("BENCH_EXTRA_OBJECTS", "0"))
    ballast = [[i] for i in range(n)]        # n GC-tracked lists
    yield ballast
'''

HEADER = '''
import asyncio
import pytest


async def fails():
    raise ValueError("expected")


async def sleeps():
    await asyncio.sleep(10)

'''

TEST = '''
@pytest.mark.asyncio
async def test_{i}():
    bad = asyncio.create_task(fails())
    slow = asyncio.create_task(sleeps())
    await asyncio.sleep(0)
    slow.cancel()
    with pytest.raises(ValueError):
        await bad
    with pytest.raises(asyncio.CancelledError):
        await slow
'''


def make_suite(root: str, n: int, per_file: int = 50) -> None:
    with open(os.path.join(root, "pytest.ini"), "w") as f:
        f.write("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    with open(os.path.join(root, "conftest.py"), "w") as f:
        f.write(CONFTEST)
    for start in range(0, n, per_file):
        with open(os.path.join(root, f"test_gen_{start // per_file:03d}.py"), "w") as f:
            f.write(HEADER + "".join(TEST.format(i=i) for i in range(start, min(n, start + per_file))))


def run_once(root: str, extra: list, objects: int) -> float:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *extra]
    env = dict(os.environ, BENCH_EXTRA_OBJECTS=str(objects))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"suite failed ({' '.join(extra) or 'plain'}):\n{proc.stdout[-3000:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="tests in the suite")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 1_000_000, 4_000_000])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        make_suite(root, args.n)
        print(f"{args.n} tests, medians of {args.repeats} runs")
        print(f"{'extra objects':>14}  {'plain s':>8}  {'taskleak s':>10}  {'ratio':>6}  {'overhead/test':>14}")
        for size in args.sizes:
            plain, tl = [], []
            for _ in range(args.repeats):  # interleaved: drift hits both alike
                plain.append(run_once(root, [], size))
                tl.append(run_once(root, ["--taskleak"], size))
            p, t = statistics.median(plain), statistics.median(tl)
            print(f"{size:>14,}  {p:>8.2f}  {t:>10.2f}  {t / p:>5.2f}x  {(t - p) / args.n * 1000:>11.2f} ms")


if __name__ == "__main__":
    main()
