"""taskleak.dump() of 100,000 pending tasks: full await chains, wait
classification, orphaned analysis, grouping, text.

Workload (taskleak installed, N pending tasks from 3 call sites, each run to
its first suspension point before timing):

  2/5  listeners:  handler -> wait_for_event -> Event.wait() on an Event held by a
                   module-level object (waiting, not orphaned)
  2/5  timers:     tick -> nap -> asyncio.sleep(3600) (waiting on a TimerHandle)
  1/5  pipelines:  stage_a -> stage_b -> stage_c -> await future nobody else
                   holds (orphaned: the analysis has to prove it)

Then REPEATS times (default 5), from inside the running loop, with gc.collect()
before each: ``taskleak.dump(file=io.StringIO())`` (snapshot, chains,
classification of each group, orphan analysis of every task, text), and the
JSON form. Prints the median (and min/max) in ms against the 300 ms target.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import statistics
import time

import taskleak

TARGET_MS = 300.0


class Service:
    def __init__(self) -> None:
        self.ready = asyncio.Event()


SERVICE: Service | None = None


async def wait_for_event(ev: asyncio.Event) -> None:
    await ev.wait()


async def handler(ev: asyncio.Event) -> None:
    await wait_for_event(ev)


async def nap() -> None:
    await asyncio.sleep(3600)


async def tick() -> None:
    await nap()


async def stage_c() -> None:
    await asyncio.get_running_loop().create_future()


async def stage_b() -> None:
    await stage_c()


async def stage_a() -> None:
    await stage_b()


def spawn(n: int) -> list:
    assert SERVICE is not None
    tasks = []
    for i in range(n):
        k = i % 5
        if k < 2:
            tasks.append(asyncio.create_task(handler(SERVICE.ready)))
        elif k < 4:
            tasks.append(asyncio.create_task(tick()))
        else:
            tasks.append(asyncio.create_task(stage_a()))
    return tasks


def timed(fn) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


async def main(n: int, repeats: int) -> None:
    global SERVICE
    SERVICE = Service()
    taskleak.install()
    tasks = spawn(n)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    out = io.StringIO()
    taskleak.dump(file=out, growth=False)
    text = out.getvalue()
    assert f"{n // 5} tasks, pending, stage_a(), waiting on a Future" in text, text[:2000]
    assert text.count("orphaned: nothing outside") == 1
    runs = [timed(lambda: taskleak.dump(file=io.StringIO(), growth=False)) for _ in range(repeats)]
    runs_json = [timed(lambda: taskleak.dump(file=io.StringIO(), json=True, growth=False)) for _ in range(repeats)]
    med = statistics.median(runs)
    print(f"dump() of {n:,} pending tasks (3 sites, chains 2-3 deep, {n // 5:,} orphaned), {repeats} runs:")
    print(
        f"  text: median {med:7.1f} ms (min {min(runs):.1f}, max {max(runs):.1f})  "
        f"target <= {TARGET_MS:.0f} ms: {'OK' if med <= TARGET_MS else 'OVER'}"
    )
    print(f"  json: median {statistics.median(runs_json):7.1f} ms (min {min(runs_json):.1f}, max {max(runs_json):.1f})")
    print(f"  text size: {len(text):,} bytes, {text.count(chr(10))} lines")
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    taskleak.uninstall()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    asyncio.run(main(a.n, a.repeats))
