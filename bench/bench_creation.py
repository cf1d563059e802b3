"""Task create+complete throughput: what does taskleak's creation tracking cost?

Workload (identical for every variant): inside one event loop, create N tasks
of a trivial coroutine in batches (``asyncio.create_task(noop())`` x BATCH,
then await each task of the batch, or ``gather`` them with --gather).
``create_task`` is called from a helper nested DEPTH coroutine frames deep
inside the driver coroutine, so the creation stack looks like an application's
rather than a toy's; the output states the full Python stack depth at the
``create_task`` call. Only the create+complete loop is timed (loop start-up
and shutdown are not).

Variants, all in this one process:

  plain      asyncio as is, taskleak not installed
  taskleak   taskleak.install(stack_depth=32) before the variant, uninstall() after
  py-factory a pure-Python task factory (loop.set_task_factory) that walks
             sys._getframe() up to 32 frames, keeps (f_code, f_lasti) tuples in
             a WeakKeyDictionary: what a Python-only tool would do
  debug      asyncio debug mode (loop.set_debug(True)), which captures a
             creation traceback for every task (and every handle)

Optional variants (--variants), to see where taskleak's time goes:

  taskleak-d1    taskleak.install(stack_depth=1): hook + record, 1-frame stacks
  taskleak-hook  install(), then the private taskleak._core.disable(): asyncio's
                 WeakSet.add is still replaced by taskleak's C version, but no
                 record is made (the cost of the hook alone)

Each variant runs on a fresh event loop (asyncio.run) and gc.collect() runs
between variants. Repeats are interleaved: every round runs every variant once
(the order rotates from round to round), after WARMUP untimed rounds.

How to read the output: "median" is the median over rounds of the wall time
per task (create + run to completion + await), in microseconds; min/max show
the spread. "vs plain" is median(variant) / median(plain); "paired" is the
median over rounds of (variant / plain in the same round), which is less
sensitive to drift of a noisy machine. The goal is taskleak / plain <= 1.10x
on the paired median, on every CPython 3.10-3.15.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any

import taskleak

TARGET_RATIO = 1.10


async def noop() -> None:
    pass


# ---- the workload -------------------------------------------------------------


def _python_depth() -> int:
    """Python frames on the stack of this function's caller, the caller included."""
    f = sys._getframe(1)
    n = 0
    while f is not None:
        n += 1
        f = f.f_back
    return n


def _create_batch(count: int, out: list[asyncio.Task[None]], probe: list[int]) -> None:
    if probe and probe[0] < 0:
        # Depth as seen by create_task's caller (this function), counted once.
        probe[0] = _python_depth()
    create = asyncio.create_task
    for _ in range(count):
        out.append(create(noop()))


async def _nested(depth: int, count: int, gather: bool, probe: list[int]) -> None:
    # depth coroutine frames between the driver and the creating function
    if depth > 0:
        await _nested(depth - 1, count, gather, probe)
        return
    batch: list[asyncio.Task[None]] = []
    _create_batch(count, batch, probe)
    if gather:
        await asyncio.gather(*batch)
    else:
        for t in batch:
            await t


async def _driver(n: int, batch: int, depth: int, gather: bool, debug: bool, probe: list[int]) -> float:
    loop = asyncio.get_running_loop()
    if debug:
        # A 1000-task batch takes longer than debug mode's 0.1 s "slow
        # callback" threshold; don't let its warnings pollute the output.
        loop.slow_callback_duration = 1e9
    done = 0
    t0 = time.perf_counter()
    while done < n:
        k = min(batch, n - done)
        await _nested(depth, k, gather, probe)
        done += k
    return time.perf_counter() - t0


# ---- variants -----------------------------------------------------------------


def _make_py_factory(max_depth: int) -> Callable[..., asyncio.Task[Any]]:
    records: weakref.WeakKeyDictionary[asyncio.Task[Any], tuple] = weakref.WeakKeyDictionary()
    getframe = sys._getframe
    Task = asyncio.Task

    def py_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = Task(coro, loop=loop, **kwargs)
        f = getframe(1)
        stack = []
        for _ in range(max_depth):
            if f is None:
                break
            stack.append((f.f_code, f.f_lasti))
            f = f.f_back
        records[task] = tuple(stack)
        return task

    py_factory.records = records  # type: ignore[attr-defined]
    return py_factory


def run_variant(name: str, args: argparse.Namespace, probe: list[int]) -> float:
    """Seconds for the whole create+complete loop of one variant, fresh loop."""
    debug = name == "debug"

    async def main() -> float:
        if name == "py-factory":
            asyncio.get_running_loop().set_task_factory(_make_py_factory(args.stack_depth))
        return await _driver(args.n, args.batch, args.depth, args.gather, debug, probe)

    tracked = name.startswith("taskleak")
    if tracked:
        taskleak.install(stack_depth=1 if name == "taskleak-d1" else args.stack_depth)
        if name == "taskleak-hook":
            from taskleak import _core

            _core.disable()  # private: keeps the registry hook, records nothing
    try:
        return asyncio.run(main(), debug=debug)
    finally:
        if tracked:
            taskleak.uninstall()
        gc.collect()


VARIANTS = ("plain", "taskleak", "py-factory", "debug", "taskleak-d1", "taskleak-hook")
DEFAULT_VARIANTS = VARIANTS[:4]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-n", type=int, default=100_000, help="tasks per variant per round (default 100000)")
    p.add_argument("--batch", type=int, default=1000, help="tasks created before awaiting them (default 1000)")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument(
        "--depth",
        type=int,
        default=8,
        help="recursion levels of the coroutine helper that creates the tasks (default 8)",
    )
    p.add_argument(
        "--stack-depth", type=int, default=32, help="frames recorded per task by taskleak and py-factory (default 32)"
    )
    p.add_argument(
        "--gather", action="store_true", help="await each batch with asyncio.gather (default: await each task)"
    )
    p.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated subset of {','.join(VARIANTS)} (plain is always run)",
    )
    p.add_argument(
        "--debug-n",
        type=int,
        default=None,
        help="tasks per round for the (slow) debug variant; default n/5 (the result is per task)",
    )
    args = p.parse_args(argv)

    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in chosen:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}")
    if "plain" not in chosen:
        chosen.insert(0, "plain")
    chosen.sort(key=VARIANTS.index)
    debug_n = args.debug_n if args.debug_n is not None else max(args.batch, args.n // 5)

    # Report the setting before anything runs.
    taskleak.install(stack_depth=args.stack_depth)
    st = taskleak.status()
    taskleak.uninstall()
    probe = [-1]
    asyncio.run(_driver(args.batch, args.batch, args.depth, args.gather, False, probe))

    print("bench_creation: task create+complete throughput")
    print(
        f"  python {sys.version.split()[0]} ({sys.implementation.name}), taskleak {taskleak.__version__}, "
        f"mechanism={st['mechanism']}, frame_walk={st['frame_walk']}"
    )
    print(
        f"  {args.n} tasks/round in batches of {args.batch} ({'gather' if args.gather else 'await each'}), "
        f"{args.rounds} rounds + {args.warmup} warm-up, order rotated per round"
    )
    print(
        f"  create_task() is called from a plain function under {args.depth + 1} nested coroutine frames: "
        f"{probe[0]} Python frames on the stack at the call, plus asyncio's own create_task "
        f"frames (taskleak and py-factory keep up to {args.stack_depth})"
    )
    if "debug" in chosen:
        print(f"  debug variant runs {debug_n} tasks/round (per-task time is comparable)")
    print()

    times: dict[str, list[float]] = {v: [] for v in chosen}
    for r in range(args.warmup + args.rounds):
        order = chosen[r % len(chosen) :] + chosen[: r % len(chosen)]
        line = []
        for v in order:
            saved_n = args.n
            if v == "debug":
                args.n = debug_n
            try:
                dt = run_variant(v, args, [0])
            finally:
                n_run, args.n = args.n, saved_n
            us = dt / n_run * 1e6
            if r >= args.warmup:
                times[v].append(us)
            line.append(f"{v}={us:.2f}")
        tag = "warm-up" if r < args.warmup else f"round {r - args.warmup + 1}"
        print(f"  {tag:>9}: " + "  ".join(line) + "  (us/task)", flush=True)

    if taskleak.is_installed():  # never expected; the table below would be wrong
        print("WARNING: taskleak still installed after the runs")

    plain = statistics.median(times["plain"])
    print()
    print(f"  {'variant':<14}{'median us/task':>13}{'min':>9}{'max':>9}{'vs plain':>10}{'paired':>9}")
    for v in chosen:
        ts = times[v]
        med = statistics.median(ts)
        paired = statistics.median(a / b for a, b in zip(ts, times["plain"]))
        print(f"  {v:<14}{med:>13.2f}{min(ts):>9.2f}{max(ts):>9.2f}{med / plain:>9.2f}x{paired:>8.2f}x")
    print()
    for v in chosen:
        if v != "plain":
            print(f"  {v}/plain = {statistics.median(times[v]) / plain:.2f}x")
    if "taskleak" in chosen:
        # The goal is read on the paired median (each round's taskleak over
        # the same round's plain): on a shared machine the load drifts
        # between rounds far more than taskleak costs.
        ratio = statistics.median(times["taskleak"]) / plain
        paired = statistics.median(a / b for a, b in zip(times["taskleak"], times["plain"]))
        verdict = "met" if paired <= TARGET_RATIO else "NOT met"
        print(
            f"  goal: creation taskleak/plain <= {TARGET_RATIO:.2f}x (median of paired rounds): {verdict} "
            f"({paired:.2f}x paired, {ratio:.2f}x of medians, "
            f"{statistics.median(times['taskleak']) - plain:+.2f} us/task)"
        )
        if st["mechanism"] == "registry":
            print("  note: installed, taskleak replaces the registry WeakSet's add() (Python) with its own C")
            print("  function, which alone is a little faster than plain.")
        else:
            print("  note: factory mode (3.14+): BaseEventLoop.create_task runs in C and calls taskleak's")
            print("  factory directly; task deaths arrive through asyncio.Task's finalizer (no weakref per task).")
        print("  --variants plain,taskleak,taskleak-d1,taskleak-hook separates the hook from the recording")
        print("  and the stack walk.")


if __name__ == "__main__":
    main()
