"""A real grpc.aio server with long-lived server-streaming RPCs, all multiplexed
over ONE HTTP/2 connection, under taskleak's default monitor, on compressed time.

The server (this process) runs a grpc.aio server (asyncio's own loop: grpc.aio
does not run on uvloop) with taskleak.Monitor(interval=0.05) and its live
endpoint; a client process (this script, ``client`` mode) opens one
grpc.aio channel, hence one TCP connection, and drives it:

* unary ``/svc/Work`` calls at a rate ramping 10x (5 -> 50 a second over the
  first 30 s), all on that channel;
* ``/svc/Subscribe`` server-streaming RPCs that arrive one a second (one every
  20 samples, the pace of a slow leak) and stay open for the whole run, each
  a new HTTP/2 stream on the same connection: the process's open descriptors
  do not rise with them, unlike one WebSocket per client
  (uvicorn_ws_service.py). With ``--active`` (the default) each stream's
  handler yields a message every 0.5 s; with ``--idle`` it sends one
  acknowledgement and then waits on an asyncio.Event set only at shutdown
  (a subscription with no news);
* a thread polls the dashboard's /api/tasks every 0.2 s.

With ``--leak`` the service also leaks: a unary ``/svc/Watch`` handler (hit
every 0.1 s, one leaked task every two samples) starts a watcher that waits
on a Future nobody sets.

    python bench/grpc_stream_service.py            # a healthy service: no alert
    python bench/grpc_stream_service.py --idle     # a healthy service: no alert
    python bench/grpc_stream_service.py --leak     # expect: a stale alert naming the line

The subscriptions are connections being kept, but not one descriptor each:
the open descriptors, which excuse a stale rise of connections being kept,
stay level. Before the monitor counted the streams peers keep open
(``Sample.peer_streams``, monitor/peer_streams.py) both modes paged at
sample 200; a page on the streaming handlers' group is a false one.

Needs grpcio in the interpreter that runs it (no grpcio-tools: the service
is a generic handler on raw bytes), with taskleak importable (not part of
make test). Prints the alerts, the sample each came at, the largest stale
count per group, and the open descriptors over the run.
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
ACTIVE_PERIOD = 0.5  # seconds between an active stream's messages


def _ident(b: bytes) -> bytes:
    return b


async def client(target: str) -> None:
    import grpc

    async with grpc.aio.insecure_channel(target) as channel:
        work = channel.unary_unary("/svc/Work", request_serializer=None, response_deserializer=None)
        watch = channel.unary_unary("/svc/Watch", request_serializer=None, response_deserializer=None)
        subscribe = channel.unary_stream("/svc/Subscribe", request_serializer=None, response_deserializer=None)
        await channel.channel_ready()

        async def ramp() -> None:
            started = time.monotonic()
            inflight: set[asyncio.Task[None]] = set()

            async def one() -> None:
                await work(b"w")

            while True:
                rate = 5.0 + 45.0 * min(1.0, (time.monotonic() - started) / 30.0)
                t = asyncio.create_task(one())
                inflight.add(t)
                t.add_done_callback(inflight.discard)
                await asyncio.sleep(1.0 / rate)

        async def member(i: int) -> None:
            async for _ in subscribe(b"sub %d" % i):
                pass

        async def arrivals() -> None:
            members: list[asyncio.Task[None]] = []
            for i in range(10_000):
                members.append(asyncio.create_task(member(i)))
                await asyncio.sleep(20 * INTERVAL)

        async def watcher() -> None:
            while True:
                await watch(b"w")
                await asyncio.sleep(2 * INTERVAL)

        await asyncio.gather(ramp(), arrivals(), watcher())


SUBSCRIPTIONS: dict[int, asyncio.Task[None]] = {}


async def watch_updates(fut: asyncio.Future[None]) -> None:
    await fut  # nobody ever sets it


async def server(args: argparse.Namespace) -> int:
    import grpc

    import taskleak

    mon = taskleak.Monitor(interval=INTERVAL, history=args.samples + 100, log_alerts=False).start()
    live = taskleak.serve(host="127.0.0.1", port=0, monitor=mon)
    first_leak: list[int] = []
    shutdown = asyncio.Event()
    first_stream: list[int] = []

    async def work(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(random.uniform(0.005, 0.04))
        return b"ok"

    async def watch(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if args.leak:
            sub = len(SUBSCRIPTIONS)
            if sub == 0:
                first_leak.append(len(mon.samples()))
            loop = asyncio.get_running_loop()
            SUBSCRIPTIONS[sub] = asyncio.create_task(watch_updates(loop.create_future()))  # LEAK-SITE
        return b"watching"

    async def subscribe(request: bytes, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        if not first_stream:
            first_stream.append(len(mon.samples()))
        yield b"subscribed " + request
        if args.active:
            n = 0
            while not shutdown.is_set():
                await asyncio.sleep(ACTIVE_PERIOD)
                n += 1
                yield b"news %d" % n
        else:
            await shutdown.wait()  # no news until shutdown

    handler = grpc.method_handlers_generic_handler(
        "svc",
        {
            "Work": grpc.unary_unary_rpc_method_handler(work, _ident, _ident),
            "Watch": grpc.unary_unary_rpc_method_handler(watch, _ident, _ident),
            "Subscribe": grpc.unary_stream_rpc_method_handler(subscribe, _ident, _ident),
        },
    )
    srv = grpc.aio.server()
    srv.add_generic_rpc_handlers((handler,))
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    drv = subprocess.Popen([sys.executable, os.path.abspath(__file__), "client", f"127.0.0.1:{port}"])
    started = time.monotonic()
    try:
        polls = await run_polled(mon, live.url, args.samples, args.leak, drv)
    finally:
        mon.stop()
        live.close()
        shutdown.set()
        await srv.stop(0.5)
    print_stale(mon, polls, time.monotonic() - started)
    fds = [(i, s.open_fds) for i, s in enumerate(mon.samples()) if s.open_fds is not None]
    if fds:
        at = first_stream[0] if first_stream else 0
        after = [n for i, n in fds if i >= at]
        print(
            f"open descriptors: {fds[0][1]} at sample 0, {after[0] if after else '?'} at the first stream "
            f"(sample {at}), {fds[-1][1]} at the end; {min(after or [0])}..{max(after or [0])} after it"
        )
    streams = [s.peer_streams for s in mon.samples()]
    print(f"streams peers keep open (Sample.peer_streams): up to {max(streams or [0])}")
    return print_alerts(mon, first_leak)


def main() -> int:
    def more(ap: argparse.ArgumentParser) -> None:
        mode = ap.add_mutually_exclusive_group()
        mode.add_argument(
            "--active", dest="active", action="store_true", default=True, help="streams yield every 0.5 s"
        )
        mode.add_argument("--idle", dest="active", action="store_false", help="streams wait for shutdown, silent")

    return service_main(__doc__, lambda argv: asyncio.run(client(argv[0])), lambda a: asyncio.run(server(a)), more)


if __name__ == "__main__":
    sys.exit(main())
