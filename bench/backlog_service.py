"""A consumer whose burst exceeds its capacity, under taskleak's default monitor, on compressed time.

One task per message, each waiting its turn behind ``asyncio.Semaphore(4)``
for a 1-sample job: capacity 4 messages a sample. 200 samples at 2 a
sample, then ``--burst`` samples at 8 (twice the capacity: a backlog that
grows by 4 tasks a sample, thousands deep), then 900 samples at 2 while it
drains. The tasks waiting in the backlog age, but they finish, and the
lifetimes of those that did grow with them: load, not a leak. Expect no
alert.

    python bench/backlog_service.py [--burst 1200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from service_run import print_alerts

INTERVAL = 0.05


async def job(sem: asyncio.Semaphore) -> None:
    async with sem:
        await asyncio.sleep(INTERVAL)


async def consume(mon: Any, phases: list[tuple[int, int]]) -> None:
    sem = asyncio.Semaphore(4)
    backlog: set[asyncio.Task[None]] = set()
    for samples, per_sample in phases:
        start = len(mon.samples())
        while len(mon.samples()) < start + samples and not mon.alerts():
            n = len(mon.samples())
            for _ in range(per_sample):
                t = asyncio.create_task(job(sem))
                backlog.add(t)
                t.add_done_callback(backlog.discard)
            while len(mon.samples()) == n:
                await asyncio.sleep(0.005)
        print(f"after {per_sample} a sample: sample {len(mon.samples())}, {len(backlog)} tasks in the backlog")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--burst", type=int, default=1200, help="samples at twice the capacity")
    args = p.parse_args()

    import taskleak

    taskleak.install()
    mon = taskleak.Monitor(interval=INTERVAL, history=args.burst + 1200, log_alerts=False)
    with mon:
        asyncio.run(consume(mon, [(200, 2), (args.burst, 8), (900, 2)]))
    samples = mon.samples()
    print(
        f"samples {len(samples)}; most stale tasks in a group {max(max((g.stale for g in s.groups), default=0) for s in samples)}"
    )
    return print_alerts(mon, [])


if __name__ == "__main__":
    sys.exit(main())
