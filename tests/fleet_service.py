"""One member of the small fleet that tests/test_fleet_alerts.py scrapes with
a real Prometheus: a plain asyncio service with taskleak's monitor and live
endpoint, in one of three shapes.

    python tests/fleet_service.py leak    # holds one never-finishing task every 0.1 s, from its start
    python tests/fleet_service.py lost    # drops a pending task every 0.2 s: the collector destroys it
    python tests/fleet_service.py clean   # a 20x request ramp and 60 keep-alive tasks; no leak
    python tests/fleet_service.py blocked # its loop blocked 0.5 s in every 0.7 s (a sync call in a handler)

The monitor samples every 50 ms (``interval=0.05``): its detectors count in
samples, so the process lives 200x faster than at the default 10 s, while
Prometheus and Alertmanager run on their own clocks. The first line on
stdout is the endpoint's URL; the process runs until it is killed (or
``--seconds`` pass).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time

import taskleak

INTERVAL = 0.05

held: set = set()
# The clean service's keep-alive connections: referenced for its whole life.
connections: set = set()


async def stuck(ev: asyncio.Event) -> None:
    await ev.wait()


async def request(cost: float) -> None:
    await asyncio.sleep(cost)


async def keep_alive(ev: asyncio.Event) -> None:
    # A long-lived connection: lives as long as the service, by design.
    await ev.wait()


async def leak(ev: asyncio.Event) -> None:
    # One task held forever every two samples, from the first moment: the
    # leak of issue 18's time-to-alert figure.
    while True:
        held.add(asyncio.create_task(stuck(ev)))  # LEAK-SITE
        await asyncio.sleep(2 * INTERVAL)


async def orphan() -> None:
    # Waits on a future that only this coroutine refers to: nothing can wake it.
    await asyncio.get_running_loop().create_future()


async def lose() -> None:
    # The task is dropped as soon as it is suspended: the collector destroys it
    # while pending ("Task was destroyed but it is pending!"), the loss the
    # monitor counts as gc-pending.
    while True:
        t = asyncio.create_task(orphan())  # LOST-SITE
        await asyncio.sleep(0)
        del t
        gc.collect()
        await asyncio.sleep(4 * INTERVAL)


async def clean(started: float) -> None:
    # Healthy traffic that climbs: from 5 to 100 requests a second over the
    # first 30 s (20x), each request a short task that nobody keeps, plus 60
    # keep-alive connections opened at once at start that then stay.
    ev = asyncio.Event()
    connections.update(asyncio.create_task(keep_alive(ev), name=f"conn-{i}") for i in range(60))
    pending: set = set()
    while True:
        age = time.monotonic() - started
        rate = 5.0 + 95.0 * min(1.0, age / 30.0)
        t = asyncio.create_task(request(0.05))
        pending.add(t)
        t.add_done_callback(pending.discard)
        await asyncio.sleep(1.0 / rate)


async def block() -> None:
    # A handler that calls blocking code on the loop: 0.5 s of every 0.7 s
    # (the watchdog, started in main, counts it as blocked time).
    while True:
        time.sleep(0.5)  # BLOCK-SITE
        await asyncio.sleep(0.2)


async def main(shape: str, seconds: float) -> None:
    started = time.monotonic()
    mon = taskleak.Monitor(interval=INTERVAL, log_alerts=False).start()
    srv = taskleak.serve(host="127.0.0.1", port=0, monitor=mon)
    print(srv.url, flush=True)
    ev = asyncio.Event()
    if shape == "blocked":
        # The blocked-loop counters are exported once the watchdog watches.
        taskleak.watch_blocking(0.1)
    work = {"leak": lambda: leak(ev), "lost": lose, "clean": lambda: clean(started), "blocked": block}[shape]
    job = asyncio.create_task(work(), name=f"fleet-{shape}")
    try:
        await asyncio.wait_for(asyncio.shield(job), seconds)
    except asyncio.TimeoutError:
        pass
    finally:
        job.cancel()
        srv.close()
        mon.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["leak", "lost", "clean", "blocked"])
    ap.add_argument("--seconds", type=float, default=600.0)
    args = ap.parse_args()
    try:
        asyncio.run(main(args.shape, args.seconds))
    except KeyboardInterrupt:
        sys.exit(0)
