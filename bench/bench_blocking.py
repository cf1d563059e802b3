"""Blocked-loop detection: what the watchdog costs, and how soon it sees a block.

Part 1 - throughput. Task create+complete (``create_task(noop())``, then
await it) inside one event loop, per task, with:

  plain      asyncio as is
  watchdog   taskleak.watch_blocking(0.1): the C++ select() heartbeat on the
             loop and the native watchdog thread (idle unless blocked)
  pyleak     pyleak.no_event_loop_blocking(threshold=0.1, check_interval=0.01):
             a Python thread pinging the loop with call_soon_threadsafe
  debug      asyncio debug mode (slow_callback_duration=0.1)

Two shapes: batches of 1000 tasks (few loop iterations per task: the usual
"tasks per second" figure) and batches of 1 (about two loop iterations per
task: the heartbeat's worst case). Time is the process's CPU time
(time.process_time(): every thread, so the watchdog's and pyleak's threads
count, while time the machine gave to other jobs does not). Rounds are
interleaved with the order rotated; "paired" is the median over rounds of
variant/plain in the same round. The issue target is watchdog/plain within
2% (<= 1.02x).

Part 2 - detection latency: from the instant a coroutine starts blocking
the loop (``time.monotonic_ns()`` just before the call) to the first stack
captured, and whether that stack shows the blocking line:

  sleep      time.sleep(0.5)                           (GIL released)
  busy       a pure-Python loop for 0.5 s              (GIL held, bytecode)
  regex      catastrophic backtracking, ~0.5 s in C    (GIL held, no bytecode)

for taskleak (first sample of the episode), pyleak (its EventLoopBlock's
stack capture) and asyncio debug mode (its "Executing ... took N seconds"
report, logged after the callback returns). "line" counts the runs whose
report names the blocking line. pyleak is pip-installed on first use.

Run: python bench/bench_blocking.py [-n N] [--rounds R] [--latency-rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import taskleak
from taskleak.blocking import watchdog

TARGET = 1.02
_SILENT = logging.getLogger("bench_blocking.silent")  # pyleak reports, not printed
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False
BLOCK = 0.5
HERE = os.path.abspath(__file__)


def _ensure_pyleak() -> Any:
    try:
        import pyleak

        return pyleak
    except ImportError:
        pass
    print("  (installing pyleak with pip for the comparison)", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "pyleak"],
        check=False,
        stdout=subprocess.DEVNULL,
    )
    try:
        import pyleak

        return pyleak
    except ImportError:
        return None


# ---- part 1: throughput ---------------------------------------------------------


async def noop() -> None:
    pass


async def _workload(n: int, batch: int) -> float:
    create = asyncio.create_task
    t0 = time.process_time()
    done = 0
    while done < n:
        k = min(batch, n - done)
        tasks = [create(noop()) for _ in range(k)]
        for t in tasks:
            await t
        done += k
    return time.process_time() - t0


def _run_throughput(variant: str, n: int, batch: int, pyleak: Any) -> float:
    async def main() -> float:
        if variant == "pyleak":
            async with pyleak.no_event_loop_blocking(action="log", logger=_SILENT, threshold=0.1, check_interval=0.01):
                return await _workload(n, batch)
        if variant == "debug":
            asyncio.get_running_loop().slow_callback_duration = 0.1
        return await _workload(n, batch)

    watch = taskleak.watch_blocking(0.1) if variant == "watchdog" else None
    try:
        return asyncio.run(main(), debug=variant == "debug") / n
    finally:
        if watch is not None:
            watch.stop()
        gc.collect()


def throughput(args: argparse.Namespace, pyleak: Any) -> None:
    variants = ["plain", "watchdog"] + (["pyleak"] if pyleak else []) + ["debug"]
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # debug mode's own slow-callback lines
    logging.getLogger("pyleak").setLevel(logging.CRITICAL)
    for batch in (1000, 1):
        n = args.n if batch > 1 else max(1000, args.n // 4)
        times: dict[str, list[float]] = {v: [] for v in variants}
        for r in range(args.warmup + args.rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for v in order:
                per = _run_throughput(v, n if v != "debug" else max(1000, n // 5), batch, pyleak)
                if r >= args.warmup:
                    times[v].append(per)
        base = statistics.median(times["plain"])
        print(f"\n  throughput, batches of {batch} ({n} tasks/round, {args.rounds} rounds, CPU time):")
        print(f"    {'variant':<10} {'median us/task':>15} {'min':>8} {'max':>8} {'vs plain':>9} {'paired':>8}")
        for v in variants:
            ts = times[v]
            paired = statistics.median(t / p for t, p in zip(ts, times["plain"]))
            print(
                f"    {v:<10} {statistics.median(ts) * 1e6:>15.3f} {min(ts) * 1e6:>8.3f} {max(ts) * 1e6:>8.3f} "
                f"{statistics.median(ts) / base:>8.3f}x {paired:>7.3f}x"
            )
        paired_wd = statistics.median(t / p for t, p in zip(times["watchdog"], times["plain"]))
        verdict = "within" if paired_wd <= TARGET else "OVER"
        print(f"    watchdog/plain paired {paired_wd:.3f}x: {verdict} the {TARGET:.2f}x target")


# ---- part 2: detection latency -------------------------------------------------------

_REGEX = re.compile(r"(a+)+$")


def _regex_subject(seconds: float) -> str:
    n = 14
    while True:
        s = "a" * n + "!"
        t = time.perf_counter()
        _REGEX.match(s)
        if time.perf_counter() - t >= seconds / 16:
            return "a" * (n + 4) + "!"
        n += 1


def _blocker(kind: str, subject: str, mark: list[int]) -> Callable[[], Any]:
    async def sleep() -> None:
        mark.append(time.monotonic_ns())
        time.sleep(BLOCK)  # LINE: sleep

    async def busy() -> None:
        mark.append(time.monotonic_ns())
        end = time.monotonic() + BLOCK
        while time.monotonic() < end:  # LINE: busy
            pass

    async def regex() -> None:
        mark.append(time.monotonic_ns())
        _REGEX.match(subject)  # LINE: regex

    return {"sleep": sleep, "busy": busy, "regex": regex}[kind]


def _line(kind: str) -> int:
    with open(HERE) as f:
        for i, text in enumerate(f, 1):
            if text.rstrip().endswith(f"# LINE: {kind}"):
                return i
    raise AssertionError(kind)


def _run_scenario(tool: str, kind: str, subject: str, pyleak: Any) -> tuple[float | None, bool]:
    """(latency in seconds or None if not detected, report names the line)."""
    mark: list[int] = []
    fn = _blocker(kind, subject, mark)
    line = _line(kind)
    lines = {line, line + 1} if kind == "busy" else {line}

    async def around() -> None:
        await asyncio.sleep(0.05)
        await fn()
        await asyncio.sleep(0.05)

    if tool == "taskleak":
        with taskleak.watch_blocking(0.1) as w:
            asyncio.run(around())
            eps = w.episodes()
        if not eps:
            return None, False
        ep = eps[0]
        hit = ep.site is not None and os.path.abspath(ep.site.filename) == HERE and ep.site.lineno in lines
        return ((ep.first_sample_ns - mark[0]) / 1e9 if ep.first_sample_ns else None), hit

    if tool == "pyleak":
        # pyleak merges consecutive identical captures into one block and
        # keeps the time of the last: record each capture as it happens.
        from pyleak.eventloop import _EventLoopBlockDetector

        captures: list[tuple[int, Any]] = []
        original = _EventLoopBlockDetector._capture_main_thread_stack

        def capture(self: Any) -> Any:
            stack = original(self)
            if stack:
                captures.append((time.monotonic_ns(), stack))
            return stack

        async def main() -> None:
            async with pyleak.no_event_loop_blocking(action="log", logger=_SILENT, threshold=0.1, check_interval=0.01):
                await around()

        _EventLoopBlockDetector._capture_main_thread_stack = capture  # type: ignore[method-assign]
        try:
            asyncio.run(main())
        finally:
            _EventLoopBlockDetector._capture_main_thread_stack = original  # type: ignore[method-assign]
        after = [(t, st) for t, st in captures if t >= mark[0]]
        if not after:
            return None, False
        t, stack = after[0]
        hit = os.path.abspath(stack[-1].filename) == HERE and stack[-1].lineno in lines
        return (t - mark[0]) / 1e9, hit

    # asyncio debug mode: its slow-callback warning, logged when the step returns
    records: list[logging.LogRecord] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    h = Grab(logging.WARNING)
    lg = logging.getLogger("asyncio")
    lg.addHandler(h)
    t_wall0 = time.time() - time.monotonic_ns() / 1e9
    try:

        async def main() -> None:
            asyncio.get_running_loop().slow_callback_duration = 0.1
            await around()

        asyncio.run(main(), debug=True)
    finally:
        lg.removeHandler(h)
    slow = [r for r in records if "took" in r.getMessage()]
    if not slow:
        return None, False
    msg = slow[0].getMessage()
    hit = any(f"{os.path.basename(HERE)}:{ln}" in msg for ln in lines)
    return (slow[0].created - t_wall0 - mark[0] / 1e9), hit


def latency(args: argparse.Namespace, pyleak: Any) -> None:
    tools = ["taskleak"] + (["pyleak"] if pyleak else []) + ["debug"]
    subject = _regex_subject(BLOCK)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    logging.getLogger("pyleak").setLevel(logging.CRITICAL)
    print(
        f"\n  detection latency: block start -> first stack captured ({BLOCK} s blocks, threshold 0.1 s, "
        f"{args.latency_rounds} runs each; median [min-max], 'line' = runs naming the blocking line)"
    )
    print(f"    {'block':<7}" + "".join(f"{t:>38}" for t in tools))
    for kind in ("sleep", "busy", "regex"):
        cells = []
        for tool in tools:
            lat: list[float] = []
            hits = 0
            missed = 0
            for _ in range(args.latency_rounds):
                got, hit = _run_scenario(tool, kind, subject, pyleak)
                if got is None:
                    missed += 1
                else:
                    lat.append(got)
                hits += hit
            if lat:
                cell = f"{statistics.median(lat) * 1e3:.0f} ms [{min(lat) * 1e3:.0f}-{max(lat) * 1e3:.0f}]"
            else:
                cell = "never"
            cell += f", line {hits}/{args.latency_rounds}"
            if missed:
                cell += f" ({missed} missed)"
            cells.append(cell)
        print(f"    {kind:<7}" + "".join(f"{c:>38}" for c in cells))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-n", type=int, default=100_000, help="tasks per round, batches of 1000 (default 100000)")
    p.add_argument("--rounds", type=int, default=7, help="timed throughput rounds (default 7)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--latency-rounds", type=int, default=5, help="runs per block kind and tool (default 5)")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    args = p.parse_args(argv)

    pyleak = _ensure_pyleak()
    w = taskleak.watch_blocking(0.1)
    mode = watchdog.watchdog_status()["stacks"]
    w.stop()
    print("bench_blocking: blocked-loop detection")
    print(
        f"  python {sys.version.split()[0]}, taskleak {taskleak.__version__}, stacks read by {mode}, "
        f"pyleak {getattr(pyleak, '__version__', 'installed') if pyleak else 'unavailable'}"
    )
    if not args.skip_throughput:
        throughput(args, pyleak)
    if not args.skip_latency:
        latency(args, pyleak)


if __name__ == "__main__":
    main()
