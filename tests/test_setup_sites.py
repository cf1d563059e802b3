"""A server's connection handler that leaks is reported with the line that
set the server up (tracking.setup_sites), not only "a loop callback"."""

import asyncio

import pytest

import taskleak
from taskleak.model import Snapshot
from taskleak.monitor.lost_tasks import site_of
from taskleak.tracking.loss_events import describe_task


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # until the client goes away: never, here


def _line_of(marker: str) -> int:
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if marker in line and "_line_of" not in line)


def test_a_leaked_handler_names_the_start_server_line():
    async def main() -> None:
        with pytest.raises(taskleak.TaskLeakError) as err:
            async with taskleak.check(grace=0.05):
                server = await asyncio.start_server(_handle, "127.0.0.1", 0)  # SETUP
                port = server.sockets[0].getsockname()[1]
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                await asyncio.sleep(0.05)  # the handler starts, and waits
                server.close()
        for leak in err.value.leaks:
            leak.task.task.cancel()
        writer.close()
        report = str(err.value)
        assert "_handle()" in report, report
        assert f"test_setup_sites.py:{_line_of('# SETUP')} in " in report, report

    asyncio.run(main())


def test_a_handler_of_a_protocol_server_names_the_create_server_line():
    class Protocol(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.task = asyncio.get_running_loop().create_task(self.serve())

        async def serve(self) -> None:
            await asyncio.sleep(3600)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Protocol, "127.0.0.1", 0)  # PROTOCOL SETUP
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        [handler] = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__.endswith("serve")]
        info = Snapshot.of_tasks([handler]).tasks[0]
        assert info.created_at is not None
        # its own connection_made is user code: that line stays the creation site
        assert info.site is not None and info.site.function.endswith("connection_made"), info.created_at
        handler.cancel()
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_the_monitor_and_a_loss_report_name_a_handler_by_the_start_server_line():
    """The monitor's groups (and so its alerts and metric labels) and the
    loss events name a handler as reports do: by the start_server line, not
    by the line that started the loop, which every such group shared."""
    taskleak.install()

    async def main() -> None:
        server = await asyncio.start_server(_handle, "127.0.0.1", 0)  # MONITOR SETUP
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        [handler] = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "_handle"]
        try:
            mon = taskleak.Monitor(interval=3600, log_alerts=False)
            group = next(g for g in mon.sample_now().groups if g.coro == "_handle")
            event = describe_task(handler, "destroyed-pending")
        finally:
            handler.cancel()
            writer.close()
            server.close()  # not wait_closed(): on 3.12+ it waits for the handler's side, never closed here
            await asyncio.gather(handler, return_exceptions=True)
        want = f"test_setup_sites.py:{_line_of('# MONITOR SETUP')} in "
        assert want in group.site, group.site
        assert site_of(event) == group.site, (site_of(event), group.site)

    asyncio.run(main())
