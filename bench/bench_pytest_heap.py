"""Per-test cost of the pytest plugin against the size of the heap.

A clean test must pay nothing that grows with the heap: whether a finished
task of the test is still held is decided over what that task reaches, and a
holder search (a walk of the heap) runs only for a task really held after
teardown. This bench generates N tests whose tasks end in reference cycles
(failed and cancelled tasks: their tracebacks refer back to their frames, so
they stay alive until the collector runs, which is what used to trigger the
heap-wide searches), pads the heap with 0, 1M and 4M extra GC-tracked objects
in a session fixture, and prints the per-test overhead of ``--taskleak``
(median time with it, minus without, over N) at each size, in CPU time of the
pytest process (what to read on a loaded machine) and in wall time. A flat
CPU column is the target; the old plugin paid +0.11 s per test on a small
heap, +0.34 s at 1M and +1.04 s at 4M objects.

    python bench/bench_pytest_heap.py [-n 200] [--repeats 3] [--sizes 0 1000000 4000000]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

CONFTEST = """
import os
import pytest

@pytest.fixture(autouse=True, scope="session")
def big_heap():
    n = int(os.environ.get("BENCH_EXTRA_OBJECTS", "0"))
    ballast = [[i] for i in range(n)]        # n GC-tracked lists
    yield ballast
"""

HEADER = """
import asyncio
import pytest


async def fails():
    raise ValueError("expected")


async def sleeps():
    await asyncio.sleep(10)

"""

TEST = """
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
"""


def make_suite(root: str, n: int, per_file: int = 50) -> None:
    with open(os.path.join(root, "pytest.ini"), "w") as f:
        f.write("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    with open(os.path.join(root, "conftest.py"), "w") as f:
        f.write(CONFTEST)
    for start in range(0, n, per_file):
        with open(os.path.join(root, f"test_gen_{start // per_file:03d}.py"), "w") as f:
            f.write(HEADER + "".join(TEST.format(i=i) for i in range(start, min(n, start + per_file))))


def run_once(root: str, extra: list, objects: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the pytest process). CPU time is what to
    read on a shared machine: other processes' load inflates wall time only."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *extra]
    env = dict(os.environ, BENCH_EXTRA_OBJECTS=str(objects))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"suite failed ({' '.join(extra) or 'plain'}):\n{proc.stdout[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="tests in the suite")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 1_000_000, 4_000_000])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        make_suite(root, args.n)
        print(f"{args.n} tests, medians of {args.repeats} runs; per-test overhead = (taskleak - plain) / tests")
        print(
            f"{'extra objects':>14}  {'plain cpu s':>11}  {'taskleak cpu s':>14}  {'cpu/test':>9}  "
            f"{'plain wall s':>12}  {'taskleak wall s':>15}  {'wall/test':>9}"
        )
        for size in args.sizes:
            plain, tl = [], []
            for _ in range(args.repeats):  # interleaved: drift hits both alike
                plain.append(run_once(root, [], size))
                tl.append(run_once(root, ["--taskleak"], size))
            pw, tw = statistics.median(r[0] for r in plain), statistics.median(r[0] for r in tl)
            pc, tc = statistics.median(r[1] for r in plain), statistics.median(r[1] for r in tl)
            print(
                f"{size:>14,}  {pc:>11.2f}  {tc:>14.2f}  {(tc - pc) / args.n * 1000:>6.2f} ms  "
                f"{pw:>12.2f}  {tw:>15.2f}  {(tw - pw) / args.n * 1000:>6.2f} ms"
            )


if __name__ == "__main__":
    main()
