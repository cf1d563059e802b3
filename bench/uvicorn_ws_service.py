"""A real uvicorn + Starlette service under taskleak's default monitor, on compressed time.

The server (this process) runs a Starlette app on uvicorn (uvloop, httptools,
the websockets protocol) with taskleak.Monitor(interval=0.05) and its live
endpoint; a client process (this script, ``client`` mode) drives it:

* HTTP requests at a rate ramping 20x (5 -> 100 a second over the first 30 s),
  through one pooled aiohttp session;
* persistent WebSocket clients that arrive one a second (one every 20
  samples, the pace of a slow leak) and stay connected for the whole run:
  with ``--chatty`` (the default) each sends a message a second and reads the
  echo; with ``--silent`` they say nothing after connecting (the websockets
  library's own keepalive pings still flow, below the app);
* a thread polls the dashboard's /api/tasks every 0.2 s.

With ``--leak`` the service also leaks: a /subscribe handler (hit every 0.1 s,
one leaked task every two samples) starts a watcher that waits on an event
nobody sets.

    python bench/uvicorn_ws_service.py             # expect: no alert
    python bench/uvicorn_ws_service.py --leak      # expect: a stale alert naming the line

Needs uvicorn[standard], starlette, websockets and aiohttp in the
interpreter that runs it, with taskleak importable (not part of make test).
Prints the alerts, the sample each came at, and the largest stale count per
group.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time

from service_run import print_alerts, print_stale, run_polled, service_main

INTERVAL = 0.05


async def client(url: str, chatty: bool) -> None:
    import aiohttp
    import websockets

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

    async def member(i: int) -> None:
        async with websockets.connect(url.replace("http", "ws") + "/ws") as ws:
            while True:
                if chatty:
                    await ws.send(f"hello {i}")
                    await ws.recv()
                await asyncio.sleep(1.0)

    async def arrivals() -> None:
        members: list[asyncio.Task[None]] = []
        for i in range(10_000):
            members.append(asyncio.create_task(member(i)))
            await asyncio.sleep(20 * INTERVAL)

    async def subscribe() -> None:
        async with aiohttp.ClientSession() as s:
            while True:
                async with s.get(f"{url}/subscribe") as r:
                    await r.read()
                await asyncio.sleep(2 * INTERVAL)

    await asyncio.gather(ramp(), arrivals(), subscribe())


SUBSCRIPTIONS: dict[int, asyncio.Task[None]] = {}


async def watch_updates(event: asyncio.Event) -> None:
    await event.wait()  # nobody ever sets it


async def server(args: argparse.Namespace) -> int:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    import taskleak

    mon = taskleak.Monitor(interval=INTERVAL, history=args.samples + 100, log_alerts=False).start()
    live = taskleak.serve(host="127.0.0.1", port=0, monitor=mon)
    first_leak: list[int] = []

    async def work(request):  # type: ignore[no-untyped-def]
        await asyncio.sleep(random.uniform(0.005, 0.04))
        return PlainTextResponse("ok")

    async def subscribe(request):  # type: ignore[no-untyped-def]
        if args.leak:
            sub = len(SUBSCRIPTIONS)
            if sub == 0:
                first_leak.append(len(mon.samples()))
            SUBSCRIPTIONS[sub] = asyncio.create_task(watch_updates(asyncio.Event()))  # LEAK-SITE
        return PlainTextResponse("subscribed")

    async def ws_echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send_text(await ws.receive_text())
        except WebSocketDisconnect:
            pass

    app = Starlette(routes=[Route("/work", work), Route("/subscribe", subscribe), WebSocketRoute("/ws", ws_echo)])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, loop="none", http="httptools", ws="websockets", log_level="warning"
    )
    srv = uvicorn.Server(config)
    serving = asyncio.create_task(srv.serve())
    while not srv.started:
        await asyncio.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    drv = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "client", url, "chatty" if args.chatty else "silent"]
    )
    started = time.monotonic()
    try:
        polls = await run_polled(mon, live.url, args.samples, args.leak, drv)
    finally:
        mon.stop()
        live.close()
        srv.should_exit = True
        await serving
    print_stale(mon, polls, time.monotonic() - started)
    return print_alerts(mon, first_leak)


def main() -> int:
    import uvloop

    def more(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--silent", dest="chatty", action="store_false", help="WebSocket clients say nothing")

    return service_main(
        __doc__,
        lambda argv: uvloop.run(client(argv[0], argv[1] == "chatty")),
        lambda a: uvloop.run(server(a)),
        more,
    )


if __name__ == "__main__":
    sys.exit(main())
