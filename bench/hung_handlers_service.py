"""Request handlers that hang on a Future nobody will set, under taskleak's default monitor, on compressed time.

A server answers a request every sample; one request in ten (``--every``)
hangs its handler on ``loop.create_future()``. The clients (in this process)
give up after 0.25 s and close their sockets, unless ``--patient``.

* ``--server streams`` (default): ``asyncio.start_server``. A hung handler
  never closes its writer, so asyncio keeps the server side of each such
  socket open, in CLOSE_WAIT: the open descriptors rise one for one with the
  hung handlers. The handlers are held in a list (never "lost" to the
  collector). Expect a stale alert naming the ``start_server`` line and the
  line the handlers hang at; the monitor before CLOSE_WAIT was counted took
  the rise for connections being kept and stayed silent.
* ``--server aiohttp``: real aiohttp (needs it importable). aiohttp closes the
  socket when the client goes, and keeps the hung handler: expect alerts on
  ``RequestHandler.start`` (waiting on the hung ``_handle_request``) and on
  ``_handle_request`` (at the hang line), one page each.
* ``--patient``: clients that never give up. A hung handler whose client still
  waits on an open connection looks like a client that stays: no alert (the
  documented limit, docs/monitoring.md "Connections are not leaks").

    python bench/hung_handlers_service.py [--server streams|aiohttp] [--patient]

Prints the samples, the open descriptors and the sockets in CLOSE_WAIT it saw,
and every alert with the sample it came at.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from service_run import print_alerts

INTERVAL = 0.05
HUNG: list[asyncio.Task[Any]] = []


async def hang() -> None:
    HUNG.append(asyncio.current_task())  # type: ignore[arg-type]
    await asyncio.get_running_loop().create_future()  # HANG: nobody will ever set it


async def streams_server() -> tuple[int, Any]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (await reader.readline()).startswith(b"hang"):
            await hang()
        writer.write(b"ok\n")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)  # SERVER-SETUP
    return server.sockets[0].getsockname()[1], server.close


async def aiohttp_server() -> tuple[int, Any]:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        if request.query.get("hang"):
            await hang()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return site._server.sockets[0].getsockname()[1], runner.cleanup  # type: ignore[union-attr]


def _quiet_cancellations(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # 3.11's start_server logs each cancelled handler ("Exception in callback
    # ... CancelledError") when the run ends and cancels the hung ones.
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


async def drive(args: argparse.Namespace, mon: Any) -> None:
    asyncio.get_running_loop().set_exception_handler(_quiet_cancellations)
    port, close = await (aiohttp_server() if args.server == "aiohttp" else streams_server())
    timeout = None if args.patient else 0.25
    kept: list[Any] = []

    async def ask_streams(hung: bool) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"hang\n" if hung else b"get\n")
        try:
            await asyncio.wait_for(r.readline(), timeout)
        except asyncio.TimeoutError:
            pass
        w.close()

    session = None
    if args.server == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    async def ask_aiohttp(hung: bool) -> None:
        assert session is not None
        try:
            async with session.get(f"http://127.0.0.1:{port}/", params={"hang": "1"} if hung else {}) as r:
                await r.read()
        except asyncio.TimeoutError:
            pass

    ask = ask_aiohttp if session is not None else ask_streams
    k = 0
    try:
        while len(mon.samples()) < args.samples and (args.all or not mon.alerts()):
            n = len(mon.samples())
            for _ in range(3):
                k += 1
                t = asyncio.create_task(ask(k % (3 * args.every) == 0))
                kept.append(t)
                t.add_done_callback(kept.remove)
            while len(mon.samples()) == n:
                await asyncio.sleep(0.005)
    finally:
        for t in kept + HUNG:
            t.cancel()
        await asyncio.gather(*kept, *HUNG, return_exceptions=True)
        if session is not None:
            await session.close()
        done = close()
        if asyncio.iscoroutine(done):
            await done


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", choices=("streams", "aiohttp"), default="streams")
    p.add_argument("--patient", action="store_true", help="clients never give up")
    p.add_argument("--every", type=int, default=10, help="one request in this many hangs (3 requests a sample)")
    p.add_argument("--samples", type=int, default=700)
    p.add_argument("--all", action="store_true", help="run every sample, not only up to the first alert")
    args = p.parse_args()

    import taskleak

    taskleak.install()
    mon = taskleak.Monitor(interval=INTERVAL, history=args.samples + 100, log_alerts=False).start()
    try:
        asyncio.run(drive(args, mon))
    finally:
        mon.stop()
    samples = mon.samples()
    fds = [s.open_fds for s in samples if s.open_fds is not None]
    closed = [s.peer_closed for s in samples if s.peer_closed is not None]
    print(
        f"samples {len(samples)}; open descriptors {min(fds, default=0)} -> {max(fds, default=0)}; "
        f"sockets in CLOSE_WAIT at most {max(closed, default=0)}; handlers hung {len(HUNG)}"
    )
    print_alerts(mon, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
