"""A real aiohttp service under taskleak's default monitor, on compressed time.

The server (this process) runs aiohttp.web with taskleak.Monitor(interval=0.05)
and its live endpoint; a client process (this script, ``client`` mode) drives
it: a request rate ramping 20x (5 -> 100 requests a second over the first
30 s) through one pooled session, 60 keep-alive connections opened at once
that each send a request every second, and a thread polls the dashboard's
/api/tasks every 0.2 s. With ``--leak`` the service also leaks from its
start: a /subscribe handler (hit every 0.1 s, i.e. one leaked task every two
samples) starts a watcher task that waits on an event nobody sets.

    .venv/py3.11/bin/python bench/aiohttp_stale_service.py            # expect: no alert
    .venv/py3.11/bin/python bench/aiohttp_stale_service.py --leak     # expect: a stale alert naming the line

Runs until the monitor has ``--samples`` samples (1400 by default: 70 s at
best; more on a loaded machine) or, with ``--leak``, until the first alert.
Prints the alerts, the sample each came at, the largest stale count per
group and the top group's low-water marks over blocks of 160 samples;
``--dump PATH`` writes each group's stale count per sample as JSON, to replay
through a detector. Needs aiohttp (``pip install aiohttp``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time

from service_run import print_alerts, print_stale, run_polled, service_main

INTERVAL = 0.05


async def client(url: str) -> None:
    import aiohttp

    async def keep_alive(i: int) -> None:
        # One connection each (its own session): opened at once, kept.
        async with aiohttp.ClientSession() as s:
            while True:
                async with s.get(f"{url}/work") as r:
                    await r.read()
                await asyncio.sleep(1.0)

    async def ramp() -> None:
        started = time.monotonic()
        inflight: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as s:

            async def one() -> None:
                async with s.get(f"{url}/work") as r:
                    await r.read()

            while True:
                rate = 5.0 + 95.0 * min(1.0, (time.monotonic() - started) / 30.0)
                t = asyncio.create_task(one())
                inflight.add(t)
                t.add_done_callback(inflight.discard)
                await asyncio.sleep(1.0 / rate)

    async def subscribe() -> None:
        async with aiohttp.ClientSession() as s:
            while True:
                async with s.get(f"{url}/subscribe") as r:
                    await r.read()
                await asyncio.sleep(2 * INTERVAL)

    await asyncio.gather(*(keep_alive(i) for i in range(60)), ramp(), subscribe())


SUBSCRIPTIONS: dict[int, asyncio.Task[None]] = {}


async def watch_updates(event: asyncio.Event) -> None:
    await event.wait()  # nobody ever sets it


async def server(args: argparse.Namespace) -> int:
    from aiohttp import web

    import taskleak

    mon = taskleak.Monitor(interval=INTERVAL, history=args.samples + 100, log_alerts=False).start()
    live = taskleak.serve(host="127.0.0.1", port=0, monitor=mon)

    first_leak: list[int] = []  # the sample at which the first task leaked

    async def work(request: web.Request) -> web.Response:
        await asyncio.sleep(random.uniform(0.005, 0.04))
        return web.Response(text="ok")

    async def subscribe(request: web.Request) -> web.Response:
        if args.leak:
            sub = len(SUBSCRIPTIONS)
            if sub == 0:
                first_leak.append(len(mon.samples()))
            SUBSCRIPTIONS[sub] = asyncio.create_task(watch_updates(asyncio.Event()))  # LEAK-SITE
        return web.Response(text="subscribed")

    app = web.Application()
    app.router.add_get("/work", work)
    app.router.add_get("/subscribe", subscribe)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    drv = subprocess.Popen([sys.executable, os.path.abspath(__file__), "client", url])
    started = time.monotonic()
    try:
        polls = await run_polled(mon, live.url, args.samples, args.leak, drv)
    finally:
        mon.stop()
        live.close()
        await runner.cleanup()
    stale = print_stale(mon, polls, time.monotonic() - started)
    samples = mon.samples()
    series = {label: [next((g.stale for g in s.groups if g.label == label), 0) for s in samples] for label in stale}
    if stale and len(samples) >= 160:
        # What the rise rule saw on its longest blocks, for the top group.
        top = max(stale, key=lambda k: stale[k])
        marks = [min(series[top][i : i + 160]) for i in range(0, len(samples) - 159, 160)]
        print(f"  its low-water marks over blocks of 160 samples: {', '.join(map(str, marks))}")
    if args.dump:
        with open(args.dump, "w") as f:
            json.dump(series, f)
    return print_alerts(mon, first_leak)


def main() -> int:
    def more(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--dump", metavar="PATH", help="write each group's stale count per sample (JSON) to PATH")

    return service_main(__doc__, lambda argv: asyncio.run(client(argv[0])), lambda a: asyncio.run(server(a)), more)


if __name__ == "__main__":
    sys.exit(main())
