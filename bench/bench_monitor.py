"""What a running taskleak.Monitor costs.

1. GIL held per sample at N live tasks (default 100,000 pending tasks, 100
   creation sites): the native task count (`_core.tally_tasks`) with the GIL
   dropped every 0.5 ms (the monitor's setting) and with no bound on a hold
   (and its wall time: the state reads of unchanged tasks run without the
   GIL), and a whole `Monitor.sample_now()` (count + groups + allow-list +
   detectors, all the Python work of one sample). Target: <= 1 ms of GIL per sample in total
   (count's holds + Python part), printed with the goal.
2. Task create+complete throughput with the monitor off and on, side by
   side, in one process: `taskleak` (install() only: the tracking a
   monitor needs), `monitor-10s` (the default interval), `monitor-1s` and
   `monitor-0.1s` (far more often than production, to make its cost
   visible). Rounds are interleaved and the order rotates. Target: a running
   monitor costs <= 2% of throughput (monitor-10s / taskleak).

Medians over rounds; "paired" is the median of per-round ratios.

    .venv/py3.11/bin/python bench/bench_monitor.py [--tasks 100000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time

import taskleak
from taskleak import _core


async def _park(ev: asyncio.Event) -> None:
    await ev.wait()


def _sites(n_sites: int):
    # Distinct creation sites: one small function per site.
    fns = []
    for i in range(n_sites):
        ns: dict = {}
        exec(f"def spawn_{i}(loop, coro):\n    return loop.create_task(coro)\n", ns)
        fns.append(ns[f"spawn_{i}"])
    return fns


GIL_GOAL_MS = 1.0  # GIL per sample in total at 100,000 pending tasks (issue 19)


def gil_per_sample(n_tasks: int, n_sites: int, rounds: int) -> None:
    taskleak.install()
    loop = asyncio.new_event_loop()
    ev = asyncio.Event() if hasattr(asyncio.Event, "_get_loop") else None
    spawners = _sites(n_sites)

    async def setup():
        e = asyncio.Event()
        tasks = [spawners[i % n_sites](loop, _park(e)) for i in range(n_tasks)]
        await asyncio.sleep(0)
        return e, tasks

    e, tasks = loop.run_until_complete(setup())
    del ev
    mon = taskleak.Monitor()
    mon.sample_now()  # probe + caches
    chunked, single, walls, total, maxhold, samples = [], [], [], [], [], []
    for _ in range(rounds):
        r = _core.tally_tasks(500_000)
        chunked.append(r["gil_ns"] / 1e6)
        maxhold.append(r["max_hold_ns"] / 1e6)
        r1 = _core.tally_tasks(0)
        single.append(r1["gil_ns"] / 1e6)
        walls.append(r1["wall_ns"] / 1e6)
        t0 = time.perf_counter()
        s = mon.sample_now()
        wall = (time.perf_counter() - t0) * 1e3
        # The Python part of a sample (groups, allow-list, detectors) holds
        # the GIL in one stretch: the wall time minus the count's.
        samples.append(wall - mon._last_tally["wall_ns"] / 1e6)
        # All the GIL one sample holds: the count's holds plus the Python part.
        total.append(s.gil_s * 1e3 + samples[-1])
    assert r["pending"] >= n_tasks, r["pending"]
    print(
        f"GIL per sample at {n_tasks:,} live pending tasks, {n_sites} creation sites "
        f"(task state read by: {_core.tally_mode()}), medians of {rounds}:"
    )
    print(
        f"  task count, GIL dropped every 0.5 ms: longest hold {statistics.median(maxhold):.3f} ms, "
        f"sum of holds {statistics.median(chunked):.3f} ms"
    )
    print(
        f"  task count, no bound on holds:         GIL {statistics.median(single):.3f} ms "
        f"(wall {statistics.median(walls):.3f} ms: unchanged tasks' states are read without the GIL)"
    )
    print(
        f"  Monitor.sample_now() besides the count (groups, allow-list, detectors; one hold): "
        f"{statistics.median(samples):.3f} ms"
    )
    per_sample = statistics.median(total)
    print(
        f"  GIL per Monitor.sample_now() in total (count + Python):         {per_sample:.3f} ms   "
        f"goal <= {GIL_GOAL_MS:.1f} ms: {'met' if per_sample <= GIL_GOAL_MS else 'NOT met'}"
    )
    print(
        f"  => GIL share of a monitor sampling every 10 s at this size: {per_sample / 10_000 * 100:.4f}% "
        f"(every 1 s: {per_sample / 1_000 * 100:.3f}%)"
    )
    e.set()
    loop.run_until_complete(asyncio.gather(*tasks))
    mon.stop()
    del tasks
    loop.close()
    gc.collect()


async def _noop() -> None:
    return None


async def _workload(n: int, batch: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n // batch):
        ts = [asyncio.create_task(_noop()) for _ in range(batch)]
        for t in ts:
            await t
    return (time.perf_counter() - t0) / n * 1e6


def throughput(n: int, batch: int, rounds: int) -> None:
    variants = {"taskleak": None, "monitor-10s": 10.0, "monitor-1s": 1.0, "monitor-0.1s": 0.1}
    names = list(variants)
    res = {k: [] for k in names}
    taskleak.install()
    for r in range(rounds + 1):  # first round is warm-up
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            interval = variants[name]
            mon = taskleak.Monitor(interval=interval) if interval else None
            if mon is not None:
                mon.start()
            gc.collect()
            us = asyncio.run(_workload(n, batch))
            if mon is not None:
                mon.stop()
            if r > 0:
                res[name].append(us)
    base = statistics.median(res["taskleak"])
    print(
        f"\ntask create+complete throughput, {n:,} tasks per round (batches of {batch}), "
        f"{rounds} rounds, medians (us per task):"
    )
    for name in names:
        med = statistics.median(res[name])
        paired = statistics.median(a / b for a, b in zip(res[name], res["taskleak"]))
        print(f"  {name:13s} {med:7.3f} us   vs monitor off {med / base:6.3f}x   paired {paired:6.3f}x")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--sites", type=int, default=100)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--throughput-tasks", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=100)
    a = p.parse_args()
    gil_per_sample(a.tasks, a.sites, a.rounds)
    throughput(a.throughput_tasks, a.batch, a.rounds)


if __name__ == "__main__":
    main()
