"""The plugin's teardown rule and ownership attribution, on the patterns real
suites use: fixtures that close what the test started, servers whose
connection handlers are born from loop callbacks, abandoned async generators,
virtual-clock loops, state hung on the event loop."""

from __future__ import annotations

import sys

import pytest
from test_pytest_plugin import INI, line_of, run

pytest_plugins = ["pytester"]

# A function fixture that starts a background "scheduler" and closes it at
# teardown (aiojobs' scheduler, an aiohttp client's keep-alive connections).
CLOSED_AT_TEARDOWN = """
class Scheduler:
    def __init__(self):
        self.jobs = []

    def spawn(self, coro):
        self.jobs.append(asyncio.create_task(coro))

    async def close(self):
        for job in self.jobs:
            job.cancel()
        await asyncio.gather(*self.jobs, return_exceptions=True)


@pytest_asyncio.fixture
async def scheduler():
    s = Scheduler()
    yield s
    await s.close()


@pytest.mark.asyncio
async def test_job_closed_by_the_fixture(scheduler):
    scheduler.spawn(heartbeat())
    await asyncio.sleep(0)
"""


def test_tasks_a_fixture_closes_at_teardown_are_not_leaks(pytester):
    res = run(pytester, CLOSED_AT_TEARDOWN, "--taskleak")
    res.assert_outcomes(passed=1)
    assert "taskleak:" not in res.stdout.str()


def test_phase_call_keeps_the_old_rule(pytester):
    # Checked when the call ends, the fixture has not closed the job yet.
    res = run(pytester, CLOSED_AT_TEARDOWN, "--taskleak", ini=INI + "taskleak_phase = call\n")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*1*pending*failed*heartbeat()*"])


def test_bad_phase_is_a_usage_error(pytester):
    res = run(pytester, "def test_x(): pass", ini=INI + "taskleak_phase = later\n")
    assert res.ret == 4
    res.stderr.fnmatch_lines(["*taskleak_phase must be teardown or call, got 'later'*"])


def test_a_task_still_running_after_teardown_is_the_tests(pytester):
    res = run(
        pytester,
        """
        @pytest_asyncio.fixture
        async def forgetful():
            tasks = []
            yield tasks
            # teardown forgets to cancel

        @pytest.mark.asyncio(loop_scope="module")
        async def test_leaks_through_its_fixture(forgetful):
            forgetful.append(asyncio.create_task(heartbeat()))  # LEAK
            await asyncio.sleep(0)
        """,
        "--taskleak",
    )
    res.assert_outcomes(passed=1, errors=1)
    line = line_of(pytester, "# LEAK")
    res.stdout.fnmatch_lines([f"*1*pending*failed*heartbeat()*test_suite.py:{line} in test_leaks_through_its_fixture*"])


SERVER = """
async def handle(reader, writer):
    await reader.read()          # until the client closes
    writer.close()

@pytest_asyncio.fixture({scope})
async def server():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield srv.sockets[0].getsockname()[1]
    srv.close()
    {close_clients}
    await srv.wait_closed()

@pytest.mark.asyncio(loop_scope="{loop}")
async def test_talks_to_the_server(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"hi")
    await writer.drain()
    {client_close}
"""


@pytest.mark.parametrize("scope, loop", [("", "function"), ("scope='module', loop_scope='module'", "module")])
def test_server_handler_tasks_belong_to_the_fixture_that_started_the_server(pytester, scope, loop):
    # The handler task is created from a loop callback (an accepted
    # connection): it is the server fixture's, not the test's.
    close_clients = "srv.close_clients()" if sys.version_info >= (3, 13) else ""
    src = SERVER.format(
        scope=scope, loop=loop, close_clients=close_clients, client_close="writer.close(); await writer.wait_closed()"
    )
    res = run(pytester, src, "--taskleak")
    res.assert_outcomes(passed=1)
    assert "leaked" not in res.stdout.str()


def test_handler_left_running_by_a_module_server_is_not_the_tests(pytester):
    # The test leaves its connection open: the handler keeps running, but it
    # belongs to the module fixture's server, which outlives the test.
    src = SERVER.format(scope="scope='module', loop_scope='module'", loop="module", close_clients="", client_close="")
    res = run(
        pytester,
        src
        + """
@pytest.mark.asyncio(loop_scope="module")
async def test_after():
    pass
""",
        "--taskleak",
    )
    res.assert_outcomes(passed=2)
    assert "leaked task" not in res.stdout.str()


def test_abandoned_async_generator_finalizer_is_housekeeping(pytester):
    res = run(
        pytester,
        """
        async def numbers():
            try:
                for i in range(10):
                    yield i
                    await asyncio.sleep(0)
            finally:
                await asyncio.sleep(0)

        @pytest.mark.asyncio(loop_scope="module")
        async def test_takes_two():
            async for i in numbers():
                if i == 2:
                    break                 # the generator is dropped unfinished
        """,
        "--taskleak",
    )
    res.assert_outcomes(passed=1)
    assert "async_generator_athrow" not in res.stdout.str()


VIRTUAL_CLOCK = """
class TimeJumpingLoop(asyncio.SelectorEventLoop):
    # Like aiostream's test loop or looptime: when nothing is ready, time
    # jumps to the next timer instead of sleeping.
    def __init__(self):
        super().__init__()
        self._now = 0.0

    def time(self):
        return self._now

    def _run_once(self):
        if not self._ready and self._scheduled:
            self._now = max(self._now, self._scheduled[0]._when)
        super()._run_once()


class Policy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self):
        return TimeJumpingLoop()


@pytest.fixture(scope="session")
def event_loop_policy():
    return Policy()


async def sleeps_long():
    await asyncio.sleep(30)


@pytest.mark.asyncio(loop_scope="module")
async def test_leaves_a_long_sleep():
    assert isinstance(asyncio.get_running_loop(), TimeJumpingLoop)
    asyncio.create_task(sleeps_long())  # LEAK
    await asyncio.sleep(0)
"""


def test_grace_is_bounded_in_loop_time_too(pytester):
    # Without a bound in loop time, the 0.1 s grace lets the virtual clock
    # run 30 s ahead and the task "finishes in grace".
    res = run(pytester, VIRTUAL_CLOCK, "--taskleak", "-W", "ignore::DeprecationWarning")
    res.assert_outcomes(passed=1, errors=1)
    res.stdout.fnmatch_lines(["*1*pending*failed*sleeps_long()*"])


def test_finished_tasks_kept_on_the_loop_are_done_retained(pytester):
    res = run(
        pytester,
        """
        async def quick():
            return 1

        @pytest.mark.asyncio(loop_scope="session")
        async def test_registers_on_the_loop():
            loop = asyncio.get_running_loop()
            app = loop.__dict__.setdefault("app", {"tasks": []})
            t = asyncio.create_task(quick())  # LEAK
            await t
            app["tasks"].append(t)
        """,
        "--taskleak",
    )
    res.assert_outcomes(passed=1, errors=1)
    res.stdout.fnmatch_lines(["*[done-retained]*quick()", "*held by:", "    loop.__dict__['app']['tasks'][0]"])


def test_framework_frames_are_not_creation_sites(pytester):
    # A test that fails holds its own task (the runner's) in the traceback:
    # never reported, and no report shows pytest-asyncio's frames.
    res = run(
        pytester,
        """
        @pytest.mark.asyncio
        async def test_fails():
            raise RuntimeError("boom")
        """,
        "--taskleak",
    )
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "leaked" not in out and "pytest_asyncio/plugin.py" not in out


def test_handler_left_running_by_a_function_server_names_the_server_fixtures_line(pytester):
    # The fixture closes its server but not the connection the test left
    # open: the handler is still running after teardown, and is the test's.
    # No frame of the test's code created it (an accepted connection did):
    # the report names the line that started the server, not asyncio frames.
    src = SERVER.format(scope="", loop="function", close_clients="", client_close="KEEP.append(writer)")
    src = src.replace("    await srv.wait_closed()\n", "") + "\nKEEP = []  # the client connection stays open\n"
    res = run(pytester, src, "--taskleak")
    res.assert_outcomes(passed=1, errors=1)
    out = res.stdout.str()
    setup = line_of(pytester, "asyncio.start_server(handle")
    res.stdout.fnmatch_lines(
        ["*task still pending when the scope ended: handle()", "*created at:", f"*test_suite.py:{setup} in server"]
    )
    assert "BaseEventLoop.create_task" not in out  # not asyncio's plumbing


def test_a_task_a_bare_loop_callback_made_names_the_callback_and_the_coroutine(pytester):
    # No frame of the test's code created it, and no server was set up: the
    # report says it came from a loop callback, and what the task runs,
    # instead of a page of asyncio frames.
    res = run(
        pytester,
        """
        async def forever():
            await asyncio.Event().wait()

        @pytest.mark.asyncio
        async def test_schedules():
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.create_task, forever())
            await asyncio.sleep(0.01)
        """,
        "--taskleak",
    )
    res.assert_outcomes(passed=1, errors=1)
    out = res.stdout.str()
    res.stdout.fnmatch_lines(
        [
            "*created at: a loop callback, asyncio/*(no frame of your code on the creation stack)",
            "*runs: forever() of test_suite.py:*",
        ]
    )
    assert "BaseEventLoop.create_task" not in out  # not asyncio's plumbing
