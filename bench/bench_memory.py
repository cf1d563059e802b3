"""Memory taskleak keeps per live tracked task, and whether it all goes back.

Three parts:

1. Table accounting (this process). With taskleak installed, N pending tasks
   (default 100,000) are created from 3 call sites; taskleak.status() then
   gives the creation-record table's bytes (records + index, by capacity) and
   the interned stacks' bytes. Reported per live record:
       table_bytes / live_records                  (target: <= 64 bytes)
       (table_bytes + stack_bytes) / live_records  (record + share of stacks)

2. RSS, with vs without taskleak (fresh child processes). The C++ tables are
   allocated with malloc/new by C++, which tracemalloc cannot see, so the
   comparison uses the resident set size (/proc/self/statm) instead: each child
   takes RSS (after gc.collect()), creates the same N pending tasks, runs them
   to their first await, gc.collect()s, takes RSS again. Children alternate
   between "taskleak installed" and "not installed"; the median per-task RSS
   delta of each kind is reported, and their difference is what taskleak adds
   per task (record + index + stack share + allocator slack). Every run is a
   fresh process because a process that already created N tasks reuses the
   freed memory and would show a smaller delta the second time. RSS moves in
   whole pages and includes allocator effects: read it as +/- a few bytes a task.

3. "1M tasks return to baseline" (this process): status() before, then
   1,000,000 tasks created in batches that finish and are dropped,
   gc.collect(), status() after; live_records, stacks and their bytes are
   compared with the baseline and a "back to baseline: yes/no" line printed
   (counts must match exactly; bytes may stay up to 4 KiB above the baseline,
   bookkeeping capacity sized by the peak number of distinct stacks, and the
   line says whether they came back exactly).

status() counts the tables by capacity (std::vector reserve included), so
part 1 moves in steps with N (at commit 054f9c2: 48-57 bytes/task for N
between 30k and 200k); part 2 only sees pages actually touched, but also
allocator effects (e.g. a table being regrown), so the two need not agree to
the byte.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import taskleak

TARGET_BYTES = 64
BYTES_SLACK = 4096  # part 3: leftover bookkeeping bytes still counted as "back"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


# ---- the workload: N pending tasks from three call sites -----------------------


async def worker(ev: asyncio.Event) -> None:
    await ev.wait()


async def poller(ev: asyncio.Event) -> None:
    await ev.wait()


async def relay_inner(ev: asyncio.Event) -> None:
    await ev.wait()


async def relay(ev: asyncio.Event) -> None:
    await relay_inner(ev)


def start_workers(n: int, ev: asyncio.Event, out: list[Any]) -> None:
    for _ in range(n):
        out.append(asyncio.create_task(worker(ev)))


def start_pollers(n: int, ev: asyncio.Event, out: list[Any]) -> None:
    for _ in range(n):
        out.append(asyncio.create_task(poller(ev)))


def start_relays(n: int, ev: asyncio.Event, out: list[Any]) -> None:
    for _ in range(n):
        out.append(asyncio.create_task(relay(ev)))


async def make_pending(n: int, ev: asyncio.Event) -> list[Any]:
    tasks: list[Any] = []
    a = n // 2
    b = n // 4
    start_workers(a, ev, tasks)
    start_pollers(b, ev, tasks)
    start_relays(n - a - b, ev, tasks)
    for _ in range(2):
        await asyncio.sleep(0)  # every task runs to its first await
    return tasks


async def release(ev: asyncio.Event, tasks: list[Any]) -> None:
    ev.set()
    await asyncio.gather(*tasks)


# ---- part 1: status() accounting -------------------------------------------------


def part_tables(n: int) -> None:
    print(f"[1] table accounting: {n} pending tasks, taskleak installed (status())")
    base = taskleak.status()

    async def run() -> dict[str, Any]:
        ev = asyncio.Event()
        tasks = await make_pending(n, ev)
        st = taskleak.status()
        await release(ev, tasks)
        return st

    st = asyncio.run(run())
    gc.collect()
    live = st["live_records"]
    tb, sb = st["table_bytes"], st["stack_bytes"]
    print(
        f"    live_records={live}  table_bytes={tb}  stacks={st['stacks']}  stack_bytes={sb}  "
        f"record_size={st['record_size']}  stack_drops={st['stack_drops']}"
    )
    print(
        f"    (before: live_records={base['live_records']} table_bytes={base['table_bytes']} "
        f"stacks={base['stacks']} stack_bytes={base['stack_bytes']})"
    )
    if live:
        per = tb / live
        both = (tb + sb) / live
        print(
            f"    table_bytes / live_records                 = {per:6.1f} bytes/task   "
            f"(target <= {TARGET_BYTES}: {'met' if per <= TARGET_BYTES else 'NOT met'})"
        )
        print(
            f"    (table_bytes + stack_bytes) / live_records = {both:6.1f} bytes/task   "
            f"(record + its share of {st['stacks']} interned stacks)"
        )
        print(
            f"    minimum possible at this record size: {st['record_size']} bytes + index; "
            f"capacity slack = {tb - live * st['record_size']} bytes "
            f"({(tb - live * st['record_size']) / live:.1f} bytes/task)"
        )


# ---- part 2: RSS with vs without, in child processes ------------------------------


def child_rss(n: int, tracked: bool) -> None:
    """Runs in a child: prints one JSON line with the RSS delta."""
    if tracked:
        taskleak.install()

    async def run() -> dict[str, Any]:
        ev = asyncio.Event()
        await asyncio.sleep(0)
        gc.collect()
        r0 = rss_bytes()
        tasks = await make_pending(n, ev)
        gc.collect()
        r1 = rss_bytes()
        st = taskleak.status()
        await release(ev, tasks)
        return {
            "delta": r1 - r0,
            "rss0": r0,
            "rss1": r1,
            "live": st["live_records"],
            "table_bytes": st["table_bytes"],
            "stack_bytes": st["stack_bytes"],
        }

    print(json.dumps(asyncio.run(run())))


def part_rss(n: int, runs: int) -> None:
    print(
        f"[2] RSS per task, with vs without taskleak: {n} pending tasks, fresh child process per run, "
        f"median of {runs} runs each (RSS from /proc/self/statm; tracemalloc cannot see the C++ tables)"
    )
    res: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for r in range(runs):
        for tracked in (False, True) if r % 2 == 0 else (True, False):
            cmd = [sys.executable, os.path.abspath(__file__), "--child-rss", str(n)] + (
                ["--tracked"] if tracked else []
            )
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"    child failed ({out.returncode}): {out.stderr.strip()[-500:]}")
                continue
            res[tracked].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(
            f"    run {r + 1}: without {res[False][-1]['delta'] / n if res[False] else float('nan'):7.1f} B/task, "
            f"with {res[True][-1]['delta'] / n if res[True] else float('nan'):7.1f} B/task",
            flush=True,
        )
    if not res[False] or not res[True]:
        print("    not enough successful runs")
        return
    without = statistics.median(x["delta"] for x in res[False]) / n
    with_ = statistics.median(x["delta"] for x in res[True]) / n
    tb = statistics.median(x["table_bytes"] + x["stack_bytes"] for x in res[True]) / n
    print(f"    RSS delta per pending task, not installed: {without:7.1f} bytes (the task, its coroutine, ...)")
    print(f"    RSS delta per pending task, installed:     {with_:7.1f} bytes")
    print(
        f"    taskleak's share (difference of medians):  {with_ - without:7.1f} bytes/task "
        f"(+{(with_ - without) / without * 100:.1f}%); status() accounts for {tb:.1f} bytes/task"
    )


# ---- part 3: 1M tasks return to baseline -----------------------------------------


def _stat_line(st: dict[str, Any]) -> str:
    return (
        f"live_records={st['live_records']:<8} table_bytes={st['table_bytes']:<10} "
        f"stacks={st['stacks']:<4} stack_bytes={st['stack_bytes']:<8} buried={st['buried_records']} "
        f"tracked_total={st['tracked_total']}"
    )


def part_baseline(total: int, batch: int) -> None:
    print(f"[3] {total} tasks created in batches of {batch}, finished and dropped: back to baseline?")
    gc.collect()
    before = taskleak.status()
    rss0 = rss_bytes()
    peak = {"live_records": 0, "table_bytes": 0, "stacks": 0, "stack_bytes": 0}

    async def quick(i: int) -> int:
        return i

    def spawn_a(k: int, out: list[Any]) -> None:
        for i in range(k):
            out.append(asyncio.create_task(quick(i)))

    def spawn_b(k: int, out: list[Any]) -> None:
        for i in range(k):
            out.append(asyncio.create_task(quick(i)))

    async def run() -> None:
        done = 0
        while done < total:
            k = min(batch, total - done)
            tasks: list[Any] = []
            spawn_a(k // 2, tasks)
            spawn_b(k - k // 2, tasks)
            st = taskleak.status()
            for key in peak:
                peak[key] = max(peak[key], st[key])
            await asyncio.gather(*tasks)
            del tasks
            done += k

    t0 = time.perf_counter()
    asyncio.run(run())
    gc.collect()
    dt = time.perf_counter() - t0
    after = taskleak.status()
    rss1 = rss_bytes()
    print(f"    before: {_stat_line(before)}")
    print(
        f"    peak:   live_records={peak['live_records']:<8} table_bytes={peak['table_bytes']:<10} "
        f"stacks={peak['stacks']:<4} stack_bytes={peak['stack_bytes']}"
    )
    print(f"    after:  {_stat_line(after)}")
    print(
        f"    ({dt:.1f} s, {dt / total * 1e6:.2f} us/task; process RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB, "
        f"informational: the allocator keeps freed pages)"
    )
    same_counts = after["live_records"] == before["live_records"] and after["stacks"] == before["stacks"]
    d_table = after["table_bytes"] - before["table_bytes"]
    d_stack = after["stack_bytes"] - before["stack_bytes"]
    # Bytes: the tables may keep a little bookkeeping capacity (id/free lists
    # sized by the peak number of distinct stacks); allow BYTES_SLACK of it.
    same_bytes = d_table <= BYTES_SLACK and d_stack <= BYTES_SLACK
    exact = d_table <= 0 and d_stack <= 0
    print(
        f"    back to baseline: {'yes' if same_counts and same_bytes else 'no'} "
        f"(live_records {before['live_records']} -> {after['live_records']}, "
        f"stacks {before['stacks']} -> {after['stacks']}, "
        f"table_bytes {before['table_bytes']} -> {after['table_bytes']}, "
        f"stack_bytes {before['stack_bytes']} -> {after['stack_bytes']}; "
        f"bytes {'exactly back' if exact else f'within {BYTES_SLACK} bytes'})"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-n", type=int, default=100_000, help="pending tasks for parts 1 and 2 (default 100000)")
    p.add_argument("--runs", type=int, default=5, help="child processes per kind in part 2 (default 5)")
    p.add_argument("--total", type=int, default=1_000_000, help="tasks created in part 3 (default 1000000)")
    p.add_argument("--batch", type=int, default=10_000, help="batch size in part 3 (default 10000)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: 1,2,3")
    p.add_argument("--child-rss", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--tracked", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child_rss is not None:
        child_rss(args.child_rss, args.tracked)
        return

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    taskleak.install()
    st = taskleak.status()
    taskleak.uninstall()
    print("bench_memory: memory per live tracked task")
    print(
        f"  python {sys.version.split()[0]}, taskleak {taskleak.__version__}, mechanism={st['mechanism']}, "
        f"frame_walk={st['frame_walk']}, record_size={st['record_size']} bytes, page={PAGE}"
    )
    print()
    if "1" not in skip:
        taskleak.install()
        try:
            part_tables(args.n)
        finally:
            taskleak.uninstall()
        print()
    if "2" not in skip:
        part_rss(args.n, args.runs)
        print()
    if "3" not in skip:
        taskleak.install()
        try:
            part_baseline(args.total, args.batch)
        finally:
            taskleak.uninstall()


if __name__ == "__main__":
    main()
