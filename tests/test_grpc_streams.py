"""taskleak.Monitor on a real grpc.aio server whose clients keep server-streaming
RPCs open, all multiplexed over one HTTP/2 connection, on compressed time.

Without peer_streams.py this paged at sample 200 (bench/grpc_stream_service.py):
subscriptions arriving one by one look like a leak, and the open descriptors,
which excuse connections being kept, do not rise with HTTP/2 streams."""

import asyncio
import re
import sys
import threading

import grpc
import pytest

import taskleak

INTERVAL = 0.05
SAMPLES = 400  # twice the sample the false page came at


@pytest.fixture
def loop():
    taskleak.install()
    lp = asyncio.new_event_loop()
    th = threading.Thread(target=lp.run_forever, name="grpc-loop", daemon=True)
    th.start()
    yield lp
    lp.call_soon_threadsafe(lp.stop)
    th.join(10)
    lp.close()


def _ident(b: bytes) -> bytes:
    return b


LEAKED: list[asyncio.Task] = []
METRICS: list[str] = []  # the monitor's /metrics text as the client was stopped


async def stuck() -> None:
    await asyncio.get_running_loop().create_future()


CLIENT = """
import asyncio, sys, time
import grpc

async def main(port, interval):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    sub = channel.unary_stream("/svc/Subscribe", request_serializer=None, response_deserializer=None)
    call = channel.unary_unary("/svc/Work", request_serializer=None, response_deserializer=None)

    async def subscriber():
        async for _ in sub(b"topic"):
            pass

    kept = []
    started = time.monotonic()
    while True:
        if len(kept) <= (time.monotonic() - started) / (20 * interval):
            kept.append(asyncio.create_task(subscriber()))
        await call(b"job")
        await asyncio.sleep(interval)

asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
"""


async def serve(mon: taskleak.Monitor, *, leak: bool) -> None:
    """A grpc.aio server in this loop; its client, in another process (its
    own tasks are not this service's), keeps one channel and opens a new
    Subscribe stream every 20 samples, kept open (idle: no news after the
    first message), with a unary call every sample. With `leak`, each unary
    call also starts a task that waits on a Future nobody sets."""
    closing = asyncio.Event()

    async def subscribe(request: bytes, context: grpc.aio.ServicerContext):
        yield b"subscribed"
        await closing.wait()

    async def work(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if leak:
            LEAKED.append(asyncio.create_task(stuck()))  # LEAK-IN-HANDLER
        return b"done"

    handlers = grpc.method_handlers_generic_handler(
        "svc",
        {
            "Subscribe": grpc.unary_stream_rpc_method_handler(subscribe, _ident, _ident),
            "Work": grpc.unary_unary_rpc_method_handler(work, _ident, _ident),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, str(port), str(INTERVAL))
    try:
        while len(mon.samples()) < SAMPLES and not mon.alerts() and client.returncode is None:
            await asyncio.sleep(INTERVAL)
        assert client.returncode is None, "the client process ended"
    finally:
        METRICS.append(mon.metrics_text())
        if client.returncode is None:
            client.kill()
        await client.wait()
        closing.set()
        await server.stop(0.5)
        for t in LEAKED:
            t.cancel()
        await asyncio.gather(*LEAKED, return_exceptions=True)
        LEAKED.clear()


def test_subscribers_keeping_streams_open_on_one_connection_do_not_page(loop):
    mon = taskleak.Monitor(interval=INTERVAL, history=SAMPLES + 100, log_alerts=False)
    with mon:
        asyncio.run_coroutine_threadsafe(serve(mon, leak=False), loop).result(300)
    samples = mon.samples()
    if mon.alerts():  # what the rule read, shown with the failure
        print(mon.alerts()[0].text)
        for i, s in enumerate(samples):
            print(i, s.open_fds, s.peer_closed, s.peer_streams, [(g.coro, g.pending, g.stale) for g in s.groups])
    assert not mon.alerts(), (len(samples), mon.alerts()[0].text)
    assert len(samples) >= SAMPLES
    streams = [s.peer_streams for s in samples]
    # One stream every 20 samples, each known by grpc's task that waits for
    # its peer to close it; the descriptors barely move.
    assert max(streams) >= SAMPLES // 20 - 2, streams[::20]
    # ... and exported, for a dashboard to set beside the stale counts.
    shown = re.search(r"^taskleak_streams_peer_open (\S+)$", METRICS[-1], re.M)
    assert shown and float(shown.group(1)) >= max(streams) - 2, (shown, max(streams))
    fds = [s.open_fds for s in samples[20:] if s.open_fds is not None]
    assert max(fds) - min(fds) < max(streams) // 2, (fds[::20], streams[::20])
    # grpc's tasks are Cython coroutines: grouped and named by their function.
    coros = {g.coro for s in samples for g in s.groups}
    assert {"_schedule_rpc_coro", "_handle_exceptions"} <= coros, coros


def test_a_leak_inside_a_handler_still_pages_naming_its_line(loop):
    line = next(i for i, ln in enumerate(open(__file__), 1) if "# LEAK-IN-HANDLER" in ln and "create_task" in ln)
    mon = taskleak.Monitor(interval=INTERVAL, history=SAMPLES + 100, log_alerts=False)
    with mon:
        asyncio.run_coroutine_threadsafe(serve(mon, leak=True), loop).result(300)
    alerts = mon.alerts()
    assert alerts, [s.stale for s in mon.samples()][::10]
    a = alerts[0]
    assert a.signal == "stale" and a.groups[0].coro == "stuck", a.text
    # (3.10's code objects have no qualified name: "in work" there.)
    assert re.search(rf"test_grpc_streams\.py:{line} in (serve\.<locals>\.)?work$", a.groups[0].site), a.text
