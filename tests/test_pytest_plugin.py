"""The pytest plugin (taskleak.testing.pytest_plugin), driven through pytester in
subprocesses: taskleak's tracking is process-wide, so every scenario gets a
fresh interpreter."""

import json
import sys
import textwrap

import pytest

import taskleak
from taskleak.frame import Frame
from taskleak.testing.baseline import Baseline, BaselineError, leak_key

pytest_plugins = ["pytester"]

# Python 3.10: anyio's backported asyncio.Runner and IsolatedAsyncioTestCase
# cancel leftover tasks with code of their own rather than asyncio.runners'
# _cancel_all_tasks, so taskleak records no "pending-at-shutdown" event for
# them (a gap of tracking/loss_events.py, reported).
OWN_SHUTDOWN_CANCELS = sys.version_info < (3, 11)

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
"""

COMMON = """
import asyncio
import pytest
import pytest_asyncio


async def heartbeat():
    while True:
        await asyncio.sleep(0.01)
"""


def run(pytester, source, *args, ini=INI, name="test_suite"):
    pytester.makeini(ini)
    pytester.makepyfile(**{name: COMMON + textwrap.dedent(source)})
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def line_of(pytester, needle, name="test_suite.py"):
    for i, line in enumerate((pytester.path / name).read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


LEAKY = """
@pytest.mark.asyncio
async def test_leaks_heartbeat():
    asyncio.create_task(heartbeat())  # LEAK
    await asyncio.sleep(0)
"""


# ---- enabling -------------------------------------------------------------------


def test_off_by_default_and_on_with_the_flag(pytester):
    res = run(pytester, LEAKY)
    res.assert_outcomes(passed=1)
    assert "leaked task" not in res.stdout.str()

    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--taskleak")
    res.assert_outcomes(passed=1, errors=1)
    out = res.stdout.str()
    # The check ran at the end of the call phase, before pytest-asyncio's
    # loop teardown cancelled the task: it saw it pending.
    assert "[pending] 1 task still pending when the scope ended: heartbeat()" in out
    assert f"test_suite.py:{line_of(pytester, '# LEAK')} in test_leaks_heartbeat" in out
    assert "in heartbeat" in out
    assert "pytest_plugin.py" not in out  # the report, not the plugin's traceback
    res.stdout.fnmatch_lines(
        [
            "*taskleak: 1 leaked task(s) in 1 test(s)*",
            "count*kind*status*created at*suspended at*tests",
            "1*pending*failed*heartbeat()*test_suite.py:*test_suite.py::test_leaks_heartbeat",
        ]
    )


def test_ini_enables(pytester):
    res = run(pytester, LEAKY, ini=INI + "taskleak = true\n")
    res.assert_outcomes(passed=1, errors=1)


def test_markers_enable_tune_and_skip(pytester):
    res = run(
        pytester,
        """
        @pytest.mark.taskleak
        @pytest.mark.asyncio
        async def test_marked_leak():
            asyncio.create_task(heartbeat())
            await asyncio.sleep(0)

        @pytest.mark.asyncio
        async def test_unmarked_leak():   # not checked: no --taskleak
            asyncio.create_task(heartbeat())
            await asyncio.sleep(0)

        @pytest.mark.taskleak(ignore=["heartbeat"])
        @pytest.mark.asyncio
        async def test_ignored_by_coro_name():
            asyncio.create_task(heartbeat())
            await asyncio.sleep(0)

        async def finishes_soon():
            await asyncio.sleep(0.05)

        @pytest.mark.taskleak(grace=1.0)
        @pytest.mark.asyncio
        async def test_grace_lets_it_finish():
            asyncio.create_task(finishes_soon())

        @pytest.mark.taskleak(grace=0)
        @pytest.mark.asyncio
        async def test_no_grace():
            asyncio.create_task(finishes_soon())

        @pytest.mark.taskleak(kinds=["done-retained"])
        @pytest.mark.asyncio
        async def test_pending_not_counted():
            asyncio.create_task(heartbeat())
            await asyncio.sleep(0)

        @pytest.mark.taskleak(ignore=["*heartbeat*"])
        class TestClass:
            @pytest.mark.taskleak(grace=0.2)   # the closest marker wins; ignore lists add up
            @pytest.mark.asyncio
            async def test_in_class(self):
                asyncio.create_task(heartbeat())
                await asyncio.sleep(0)
        """,
    )
    res.assert_outcomes(passed=7, errors=2)
    res.stdout.fnmatch_lines(["ERROR *::test_marked_leak*", "ERROR *::test_no_grace*"])


def test_no_taskleak_marker_and_module_pytestmark(pytester):
    res = run(
        pytester,
        """
        pytestmark = pytest.mark.taskleak(grace=0.05)

        @pytest.mark.asyncio
        async def test_module_marked_leak():
            asyncio.create_task(heartbeat())
            await asyncio.sleep(0)

        @pytest.mark.no_taskleak
        @pytest.mark.asyncio
        async def test_exempt():
            asyncio.create_task(heartbeat())
            await asyncio.sleep(0)
        """,
        "--taskleak",
    )
    res.assert_outcomes(passed=2, errors=1)
    res.stdout.fnmatch_lines(["ERROR *::test_module_marked_leak*"])


def test_markers_are_registered(pytester):
    res = run(pytester, "def test_x(): pass", "--strict-markers", "--markers")
    res.stdout.fnmatch_lines(["@pytest.mark.taskleak(**options):*", "@pytest.mark.no_taskleak:*"])


# ---- bad configuration ------------------------------------------------------------


@pytest.mark.parametrize(
    "ini_line, message",
    [
        ("taskleak = maybe", "ini option taskleak must be true or false, got 'maybe'"),
        ("taskleak_grace = soon", "taskleak_grace must be a number of seconds >= 0, got 'soon'"),
        ("taskleak_grace = -1", "taskleak_grace must be a number of seconds >= 0"),
        ("taskleak_mode = loud", "taskleak_mode must be fail or warn, got 'loud'"),
        ("taskleak_kinds = pending leaky", "taskleak_kinds: unknown or missing kind(s) ['leaky']"),
    ],
)
def test_bad_ini_values_are_usage_errors(pytester, ini_line, message):
    res = run(pytester, "def test_x(): pass", ini=INI + ini_line + "\n")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert message in res.stderr.str()
    assert "Traceback" not in res.stderr.str() + res.stdout.str()


def test_bad_marker_options_fail_that_test_only(pytester):
    res = run(
        pytester,
        """
        @pytest.mark.taskleak(graze=1)
        def test_typo():
            pass

        @pytest.mark.taskleak(grace="long")
        def test_bad_value():
            pass

        @pytest.mark.taskleak(on_leak="explode")
        def test_bad_on_leak():
            pass

        @pytest.mark.taskleak
        def test_fine():
            pass
        """,
    )
    res.assert_outcomes(passed=1, errors=3)  # at setup: the test scope is a fixture
    out = res.stdout.str()
    assert "unknown option(s) ['graze']; options are grace, ignore, kinds, on_leak, collect" in out
    assert "grace must be a number of seconds >= 0, got 'long'" in out
    assert "on_leak must be one of raise, warn, log, cancel, got 'explode'" in out
    assert "Traceback" not in out


def test_baseline_options_need_a_file(pytester):
    res = run(pytester, "def test_x(): pass", "--taskleak-update-baseline")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "need --taskleak-baseline FILE" in res.stderr.str()


# ---- modes ---------------------------------------------------------------------------


@pytest.mark.parametrize("filterwarnings", ["", "filterwarnings = error\n"])
def test_warn_mode_never_fails_a_test(pytester, filterwarnings):
    # Many suites turn every warning into an error; warn mode reports in the
    # terminal summary instead, so it never fails a test either way.
    res = run(pytester, LEAKY, "--taskleak", ini=INI + "taskleak_mode = warn\n" + filterwarnings)
    res.assert_outcomes(passed=1)
    assert res.ret == 0
    out = res.stdout.str()
    assert "warnings summary" not in out and "Traceback" not in out
    res.stdout.fnmatch_lines(
        [
            "*1*pending*warned*heartbeat()*",
            "*taskleak: reports of leaks that did not fail their test*",
            "taskleak: 1 leaked task in test_suite.py::test_leaks_heartbeat",
        ]
    )


def test_warning_category_is_exported():
    from taskleak.testing.pytest_plugin import TaskLeakPytestWarning

    assert taskleak.TaskLeakWarning is TaskLeakPytestWarning
    assert "TaskLeakWarning" in taskleak.__all__


def test_cancel_on_leak_cancels_then_fails(pytester):
    res = run(
        pytester,
        """
        CANCELLED = []

        async def tracked_heartbeat():
            try:
                await heartbeat()
            except asyncio.CancelledError:
                CANCELLED.append(1)
                raise

        @pytest.mark.taskleak(on_leak="cancel")
        @pytest.mark.asyncio(loop_scope="module")
        async def test_leak():
            asyncio.create_task(tracked_heartbeat())
            await asyncio.sleep(0)

        def test_it_was_cancelled_by_the_check():
            assert CANCELLED == [1]
        """,
    )
    res.assert_outcomes(passed=2, errors=1)
    assert "(the pending tasks were cancelled)" in res.stdout.str()


def test_failing_test_keeps_its_error_and_gets_a_report_section(pytester):
    res = run(
        pytester,
        """
        @pytest.mark.asyncio
        async def test_fails_and_leaks():
            asyncio.create_task(heartbeat())
            await asyncio.sleep(0)
            assert 1 + 1 == 3, "the real failure"
        """,
        "--taskleak",
    )
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "AssertionError: the real failure" in out
    res.stdout.fnmatch_lines(["*taskleak: reports of*", "taskleak: 1 leaked task in *test_fails_and_leaks"])
    assert "done-retained" not in out  # the test's own (failed) task is the runner's, not a leak


def test_a_failing_tests_own_traceback_is_not_a_holder(pytester):
    """pytest keeps a failing test's traceback in sys.last_value for post-mortem
    debugging; the tasks in that test's locals are not leaked through it. A
    task a failing test really left held (a module global) still is."""
    res = run(
        pytester,
        """
        KEPT = []

        async def boom():
            await asyncio.sleep(0)
            raise RuntimeError("boom")

        @pytest.mark.asyncio
        async def test_awaits_a_failing_task():
            t = asyncio.ensure_future(boom())
            await t

        @pytest.mark.asyncio
        @pytest.mark.xfail(raises=TimeoutError, strict=True)
        async def test_xfail_with_a_task_in_its_locals():
            t = asyncio.ensure_future(boom())
            try:
                raise TimeoutError
            finally:
                with pytest.raises(RuntimeError):
                    await t

        @pytest.mark.asyncio
        async def test_fails_and_keeps_a_task():
            t = asyncio.ensure_future(boom())
            KEPT.append(t)
            await t
        """,
        "--taskleak",
    )
    res.assert_outcomes(failed=2, xfailed=1)
    out = res.stdout.str()
    assert "last_value" not in out and "last_exc" not in out
    reports = out.split("taskleak: ", 1)[1].split("short test summary info", 1)[0]
    assert "test_awaits_a_failing_task" not in reports
    assert "test_xfail_with_a_task_in_its_locals" not in reports
    res.stdout.fnmatch_lines(["taskleak: 1 leaked task in *test_fails_and_keeps_a_task"])
    assert "held by:\n    module test_suite['KEPT'][0]\n" in out


def test_garbage_from_an_earlier_test_is_not_charged_to_the_test_being_checked(pytester):
    """The check's gc.collect() frees all waiting garbage: an unclosed socket
    an earlier test dropped warns from its finalizer, which -W error makes an
    exception pytest would charge to the test running now (anyio's suite)."""
    res = run(
        pytester,
        """
        import gc
        import socket
        gc.disable()  # the socket's cycle waits for the check's collection

        def test_drops_an_unclosed_socket():
            cycle = [socket.socket()]
            cycle.append(cycle)

        class Node:
            pass

        @pytest.mark.asyncio
        async def test_a_finished_task_in_a_garbage_cycle():
            t = asyncio.ensure_future(asyncio.sleep(0))
            await t
            n = Node()
            n.me, n.task = n, t  # held from outside until collected: the check collects
        """,
        "--taskleak",
        "-W",
        "error",
    )
    res.assert_outcomes(passed=2)
    out = res.stdout.str()
    res.stdout.fnmatch_lines(
        [
            "*taskleak: exceptions raised by garbage its collections freed*",
            "taskleak: while checking *test_a_finished_task_in_a_garbage_cycle*",
            "*ResourceWarning: unclosed <socket.socket*",
        ]
    )
    assert "leaked task" not in out


# ---- attribution ------------------------------------------------------------------


def test_pytest_asyncio_loop_scopes(pytester):
    """Session/module-scoped fixtures with long-lived background tasks (which
    also spawn short-lived children during tests) are never charged to tests;
    a leak in any loop scope is charged to its own test only."""
    res = run(
        pytester,
        """
        async def ticker(children):
            while True:
                children.append(asyncio.create_task(asyncio.sleep(0.001)))
                del children[:-2]
                await asyncio.sleep(0.005)

        @pytest_asyncio.fixture(scope="session", loop_scope="session")
        async def session_bg():
            t = asyncio.create_task(ticker([]), name="session-bg")
            yield t
            t.cancel()

        @pytest_asyncio.fixture(scope="module", loop_scope="module")
        async def module_bg():
            t = asyncio.create_task(heartbeat(), name="module-bg")
            yield t
            t.cancel()

        @pytest_asyncio.fixture
        async def function_bg():
            t = asyncio.create_task(heartbeat(), name="function-bg")
            yield t
            t.cancel()

        @pytest.mark.asyncio(loop_scope="session")
        async def test_session_clean(session_bg):
            await asyncio.sleep(0.03)
            assert not session_bg.done()

        @pytest.mark.asyncio(loop_scope="module")
        async def test_module_clean(module_bg):
            await asyncio.sleep(0.03)

        @pytest.mark.asyncio
        async def test_function_clean(function_bg):
            await asyncio.sleep(0.03)

        @pytest.mark.asyncio(loop_scope="session")
        async def test_session_leak(session_bg):
            asyncio.create_task(heartbeat(), name="leak-session")
            await asyncio.sleep(0.01)

        @pytest.mark.asyncio(loop_scope="module")
        async def test_module_leak(module_bg):
            asyncio.create_task(heartbeat(), name="leak-module")
            await asyncio.sleep(0.01)

        @pytest.mark.asyncio(loop_scope="session")
        async def test_session_clean_after(session_bg):
            await asyncio.sleep(0.03)
        """,
        "--taskleak",
    )
    res.assert_outcomes(passed=6, errors=2)
    out = res.stdout.str()
    res.stdout.fnmatch_lines_random(["ERROR *::test_session_leak*", "ERROR *::test_module_leak*"])
    assert "leak-session" in out and "leak-module" in out
    for name in ("session-bg", "module-bg", "function-bg", "ticker"):
        assert name not in out
    # Each leak is charged once, to its own test: tasks cancelled later by
    # pytest-asyncio's loop teardown are not reported again as late leaks.
    assert "late leak" not in out
    assert res.ret == 1


def test_anyio_plugin(pytester):
    res = run(
        pytester,
        """
        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.fixture
        async def bg(anyio_backend):
            t = asyncio.create_task(heartbeat(), name="fixture-bg")
            yield
            t.cancel()

        @pytest.mark.anyio
        async def test_clean():
            t = asyncio.create_task(heartbeat())
            await asyncio.sleep(0)
            t.cancel()

        @pytest.mark.anyio
        async def test_leak():
            asyncio.create_task(heartbeat(), name="anyio-leak-1")
            await asyncio.sleep(0)

        @pytest.mark.anyio
        async def test_clean_with_fixture(bg):
            await asyncio.sleep(0.02)

        @pytest.mark.anyio
        async def test_leak_with_fixture(bg):
            asyncio.create_task(heartbeat(), name="anyio-leak-2")
            await asyncio.sleep(0.02)
        """,
        "--taskleak",
        "-p",
        "no:asyncio",
    )
    out = res.stdout.str()
    # Without an async fixture, anyio's runner closes its loop inside the
    # call (on 3.10 with the backported Runner's own _cancel_all_tasks, which
    # taskleak hooks too): the leak is a pending-at-shutdown of the test.
    res.assert_outcomes(passed=4, errors=2)
    res.stdout.fnmatch_lines(["ERROR *::test_leak -*"])
    assert "anyio-leak-1" in out
    res.stdout.fnmatch_lines(["ERROR *::test_leak_with_fixture*"])
    assert "anyio-leak-2" in out
    assert "fixture-bg" not in out and "TestRunner._run_tests_and_fixtures()" not in out


def test_anyio_worker_process_pool_is_not_a_leak_of_the_test_that_started_it(pytester):
    """anyio.to_process starts one task per loop that shuts the worker
    processes down when the loop closes (it is cancelled then, by design).
    A task the same test really leaks next to it is still reported."""
    res = run(
        pytester,
        """
        from anyio import to_process

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_runs_in_a_worker_process():
            assert await to_process.run_sync(abs, -3) == 3

        @pytest.mark.anyio
        async def test_worker_process_and_a_leak():
            assert await to_process.run_sync(abs, -4) == 4
            asyncio.create_task(heartbeat(), name="real-leak")
            await asyncio.sleep(0)
        """,
        "--taskleak",
        "-p",
        "no:asyncio",
    )
    out = res.stdout.str()
    res.assert_outcomes(passed=2, errors=1)
    res.stdout.fnmatch_lines(["ERROR *::test_worker_process_and_a_leak*"])
    assert "real-leak" in out and "_shutdown_process_pool_on_exit" not in out


def test_sync_tests_with_asyncio_run(pytester):
    res = run(
        pytester,
        """
        def test_leak_cancelled_at_shutdown():
            async def main():
                asyncio.create_task(heartbeat(), name="run-leak")
                await asyncio.sleep(0)
            asyncio.run(main())

        def test_clean():
            async def main():
                t = asyncio.create_task(heartbeat())
                await asyncio.sleep(0)
                t.cancel()
            asyncio.run(main())

        def test_thread_with_its_own_loop():
            import threading
            def worker():
                async def main():
                    asyncio.create_task(heartbeat(), name="thread-leak")
                    await asyncio.sleep(0)
                asyncio.run(main())
            th = threading.Thread(target=worker)
            th.start()
            th.join()
        """,
        "--taskleak",
    )
    res.assert_outcomes(passed=3, errors=2)
    out = res.stdout.str()
    assert "run-leak" in out and "thread-leak" in out
    res.stdout.fnmatch_lines_random(
        ["ERROR *::test_leak_cancelled_at_shutdown*", "ERROR *::test_thread_with_its_own_loop*"]
    )


def test_isolated_asyncio_test_case(pytester):
    res = run(
        pytester,
        """
        import unittest

        class T(unittest.IsolatedAsyncioTestCase):
            async def asyncSetUp(self):
                self.bg = asyncio.create_task(heartbeat())   # kept on self, cancelled in tearDown

            async def asyncTearDown(self):
                self.bg.cancel()

            async def test_clean(self):
                self.done = asyncio.create_task(asyncio.sleep(0))
                await self.done

            async def test_leak(self):
                asyncio.create_task(heartbeat(), name="unittest-leak")
                await asyncio.sleep(0.01)
        """,
        "--taskleak",
    )
    if OWN_SHUTDOWN_CANCELS:
        # 3.10's IsolatedAsyncioTestCase cancels leftover tasks in its own
        # _tearDownAsyncioLoop, which taskleak does not hook (yet): the leak
        # is lost, but the clean test must still pass.
        res.assert_outcomes(passed=2)
        return
    res.assert_outcomes(passed=2, errors=1)
    res.stdout.fnmatch_lines(["ERROR *::T::test_leak*"])
    assert "unittest-leak" in res.stdout.str()


CROSS_TEST = """
GLOBAL = []

async def forever():
    await asyncio.Event().wait()

async def slow():
    await asyncio.sleep(0.3)

@pytest.mark.asyncio(loop_scope="module")
async def test_a_leaks_into_global():
    GLOBAL.append(asyncio.create_task(forever(), name="in-global"))
    await asyncio.sleep(0)

@pytest.mark.asyncio(loop_scope="module")
async def test_b_drops_global():
    GLOBAL.clear()          # the task of test A is destroyed while pending, now
    import gc; gc.collect()
    await asyncio.sleep(0.01)

@pytest.mark.asyncio(loop_scope="module")
async def test_c_leaks_slow_task():
    asyncio.create_task(slow(), name="slow-one")

@pytest.mark.asyncio(loop_scope="module")
async def test_d_while_it_finishes():
    await asyncio.sleep(0.5)

def test_e_sync_with_global_loop():
    loop = asyncio.new_event_loop()
    GLOBAL.append(loop.create_task(forever(), name="on-idle-loop"))

def test_f_closes_that_loop():
    GLOBAL[-1].get_loop().close()
    GLOBAL.clear()
    import gc; gc.collect()
"""


def test_a_leak_is_never_blamed_on_a_later_test(pytester):
    res = run(pytester, CROSS_TEST, "--taskleak")
    res.assert_outcomes(passed=6, errors=3)
    res.stdout.fnmatch_lines_random(
        [
            "ERROR *::test_a_leaks_into_global*",
            "ERROR *::test_c_leaks_slow_task*",
            "ERROR *::test_e_sync_with_global_loop*",
        ]
    )
    out = res.stdout.str()
    assert "late leak" not in out  # destroyed / finished later, but already reported


def test_xdist(pytester):
    pytester.makepyfile(
        test_other=COMMON
        + textwrap.dedent("""
        @pytest.mark.asyncio
        async def test_g_plain_leak():
            asyncio.create_task(heartbeat(), name="xdist-leak")
            await asyncio.sleep(0)

        @pytest.mark.asyncio
        async def test_h_clean():
            t = asyncio.create_task(heartbeat())
            await asyncio.sleep(0)
            t.cancel()
        """)
    )
    # One file per worker: the cross-test scenario needs its tests in order.
    res = run(pytester, CROSS_TEST, "--taskleak", "-n", "2", "--dist", "loadfile")
    res.assert_outcomes(passed=8, errors=4)
    # The controller aggregates what the workers attached to their reports.
    res.stdout.fnmatch_lines(["*taskleak: 4 leaked task(s) in 4 test(s)*"])
    table = res.stdout.str().split("leaked task(s) in 4 test(s)")[1]
    for name in (
        "test_suite.py::test_a_leaks_into_global",
        "test_suite.py::test_c_leaks_slow_task",
        "test_suite.py::test_e_sync_with_global_loop",
        "test_other.py::test_g_plain_leak",
    ):
        assert name in table
    assert "late leak" not in table


LATE = """
async def boom():
    raise RuntimeError("nobody reads this")

@pytest.mark.asyncio(loop_scope="module")
async def test_hands_failed_task_to_the_loop():
    t = asyncio.create_task(boom(), name="late-one")
    await asyncio.sleep(0)
    # Only the loop holds it now (a timer handle), which is not a leak yet;
    # when the timer fires during the next test, it is freed unread.
    asyncio.get_running_loop().call_later(0.2, t.get_name)
    del t

@pytest.mark.asyncio(loop_scope="module")
async def test_next():
    await asyncio.sleep(0.5)
"""


@pytest.mark.parametrize("xdist", [(), ("-n", "1")], ids=["no-xdist", "xdist"])
def test_late_leak_is_charged_to_its_creator_and_fails_the_session(pytester, xdist):
    res = run(pytester, LATE, "--taskleak", *xdist)
    res.assert_outcomes(passed=2)
    assert res.ret == 1
    out = res.stdout.str()
    res.stdout.fnmatch_lines(
        [
            "*taskleak: 1 late leak(s)*",
            "Found after their test had ended*",
            "*1*never-retrieved*failed*boom()*test_suite.py::test_hands_failed_task_to_the_loop",
            "taskleak: exit status set to 1: 1 late leak(s) found after their test had passed*",
        ]
    )
    assert "test_suite.py::test_next" not in out.split("late leak(s)")[1]


def test_late_leak_in_warn_mode_does_not_fail(pytester):
    res = run(pytester, LATE, "--taskleak", ini=INI + "taskleak_mode = warn\n")
    res.assert_outcomes(passed=2)
    assert res.ret == 0
    res.stdout.fnmatch_lines(["*taskleak: 1 late leak(s)*", "*never-retrieved*warned*"])


def test_clean_suite_has_no_false_positives(pytester):
    res = run(
        pytester,
        """
        import sys

        async def work(x):
            await asyncio.sleep(0.001)
            return x

        @pytest_asyncio.fixture(scope="module", loop_scope="module")
        async def server():
            async def handle(reader, writer):
                writer.write(await reader.readline())
                await writer.drain()
                writer.close()
            srv = await asyncio.start_server(handle, "127.0.0.1", 0)
            yield srv.sockets[0].getsockname()[1]
            srv.close()
            await srv.wait_closed()

        @pytest.mark.asyncio
        async def test_awaited():
            assert await asyncio.create_task(work(1)) == 1

        @pytest.mark.asyncio
        async def test_gather_and_local_variables():
            tasks = [asyncio.create_task(work(i)) for i in range(10)]
            done = tasks[0]
            assert await asyncio.gather(*tasks) == list(range(10))
            assert done.result() == 0

        @pytest.mark.asyncio
        async def test_cancelled():
            t = asyncio.create_task(heartbeat())
            await asyncio.sleep(0)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t

        @pytest.mark.asyncio
        async def test_wait_for_timeout():
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(heartbeat(), 0.01)

        @pytest.mark.asyncio
        async def test_wait_first_completed_then_cancel():
            a, b = asyncio.create_task(work(1)), asyncio.create_task(heartbeat())
            done, pending = await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        @pytest.mark.asyncio
        async def test_taskgroup_and_timeout():
            if sys.version_info >= (3, 11):
                async with asyncio.TaskGroup() as tg:
                    for i in range(5):
                        tg.create_task(work(i))
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.01):
                        await heartbeat()
            else:
                assert await asyncio.gather(*(work(i) for i in range(5))) == list(range(5))

        @pytest.mark.asyncio
        async def test_exception_retrieved():
            async def boom():
                raise ValueError("x")
            t = asyncio.create_task(boom())
            with pytest.raises(ValueError):
                await t

        @pytest.mark.asyncio(loop_scope="module")
        async def test_long_lived_fixture(server):
            r, w = await asyncio.open_connection("127.0.0.1", server)
            w.write(b"hi\\n")
            assert await r.readline() == b"hi\\n"
            w.close()
            await w.wait_closed()

        @pytest.mark.asyncio
        async def test_to_thread_and_executor():
            assert await asyncio.to_thread(lambda: 3) == 3

        def test_sync_asyncio_run():
            assert asyncio.run(work(5)) == 5
        """,
        "--taskleak",
    )
    res.assert_outcomes(passed=10)
    assert "leaked task" not in res.stdout.str() and "late leak" not in res.stdout.str()
    assert res.ret == 0


# ---- baseline ---------------------------------------------------------------------------

BASELINE_SUITE = """
async def forever():
    await asyncio.Event().wait()

@pytest.mark.asyncio
async def test_old_leak():
    asyncio.create_task(heartbeat())
    await asyncio.sleep(0)

@pytest.mark.asyncio
async def test_other_old_leak():
    asyncio.create_task(forever())
    await asyncio.sleep(0)
"""

NEW_LEAK = """
@pytest.mark.asyncio
async def test_new_leak():
    asyncio.create_task(forever())   # same coroutine, different creation site
    await asyncio.sleep(0)
"""


def _baseline_keys(path):
    return {(e["kind"], e["created"], e["suspended"]) for e in json.loads(path.read_text())["entries"]}


def test_baseline_round_trip(pytester):
    bl = pytester.path / "taskleak-baseline.json"
    args = ["--taskleak", f"--taskleak-baseline={bl}"]
    res = run(pytester, BASELINE_SUITE, *args, "--taskleak-update-baseline")
    res.assert_outcomes(passed=2)  # creating the file records every leak
    assert res.ret == 0
    data = json.loads(bl.read_text())
    assert data["version"] == 1
    assert _baseline_keys(bl) == {
        ("pending", "test_suite:test_old_leak", "test_suite:heartbeat"),
        ("pending", "test_suite:test_other_old_leak", "test_suite:forever"),
    }
    assert [e["tests"] for e in data["entries"]] == [
        ["test_suite.py::test_old_leak"],
        ["test_suite.py::test_other_old_leak"],
    ]

    # Tolerated, even after unrelated edits move every line.
    res = run(pytester, "\n\n# shifted\n" + BASELINE_SUITE + NEW_LEAK, *args)
    res.assert_outcomes(passed=3, errors=1)
    res.stdout.fnmatch_lines(
        [
            "*1*pending*baseline*heartbeat()*test_suite.py::test_old_leak",
            "*1*pending*baseline*forever()*test_suite.py::test_other_old_leak",
            "*1*pending*failed*forever()*test_suite.py::test_new_leak",
            "ERROR *::test_new_leak*",
        ]
    )

    # Updating without force refuses to add the new leak...
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, "--taskleak-update-baseline")
    res.assert_outcomes(passed=3, errors=1)
    res.stdout.fnmatch_lines(
        ["*wrote baseline*2 entries (0 dropped; 1 new leak(s) NOT added, use --taskleak-baseline-force*"]
    )
    assert len(_baseline_keys(bl)) == 2
    # ... force adds it.
    res = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", *args, "--taskleak-update-baseline", "--taskleak-baseline-force"
    )
    res.assert_outcomes(passed=3)
    assert ("pending", "test_suite:test_new_leak", "test_suite:forever") in _baseline_keys(bl)

    # Fix one leak: a partial run (-k) keeps entries of tests that did not run,
    # the full run drops the fixed one.
    fixed = BASELINE_SUITE.replace("asyncio.create_task(heartbeat())", "await asyncio.sleep(0)") + NEW_LEAK
    res = run(pytester, fixed, *args, "--taskleak-update-baseline", "-k", "new_leak")
    assert len(_baseline_keys(bl)) == 3
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, "--taskleak-update-baseline")
    res.assert_outcomes(passed=3)
    res.stdout.fnmatch_lines(["*wrote baseline*2 entries (1 dropped)*"])
    assert ("pending", "test_suite:test_old_leak", "test_suite:heartbeat") not in _baseline_keys(bl)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ('{"version": 99, "entries": []}', "unsupported version 99"),
        ('{"version": 1, "entries": {}}', "'entries' must be a list"),
        ('{"version": 1, "entries": [{"kind": "pending"}]}', "entry 0 needs non-empty strings"),
        ("[]", "expected a JSON object"),
    ],
)
def test_malformed_baseline_is_a_usage_error(pytester, content, message):
    bl = pytester.path / "bl.json"
    bl.write_text(content)
    res = run(pytester, "def test_x(): pass", "--taskleak", f"--taskleak-baseline={bl}")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert message in res.stderr.str()


def test_missing_baseline_is_a_usage_error_unless_updating(pytester):
    res = run(pytester, "def test_x(): pass", "--taskleak", "--taskleak-baseline=nope.json")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "does not exist" in res.stderr.str()


def test_leak_key_has_no_line_numbers(tmp_path):
    root = str(tmp_path)
    asyncio_tasks = sys.modules["asyncio"].__file__.replace("__init__.py", "tasks.py")
    created = [
        Frame(asyncio_tasks, 10, "create_task"),
        Frame(f"{root}/pkg/test_mod.py", 12, "TestX.test_y"),
        Frame(f"{root}/pkg/helpers.py", 40, "start"),
    ]
    stack = [
        Frame(f"{root}/pkg/svc.py", 7, "Service.run"),
        Frame(f"{root}/pkg/svc.py", 30, "Service._tick"),
        Frame(asyncio_tasks, 600, "sleep"),
    ]
    key = leak_key("pending", created, stack, root)
    assert key == ("pending", "pkg.test_mod:TestX.test_y", "pkg.svc:Service._tick")
    moved = [Frame(f.filename, f.lineno + 5, f.function) for f in created]
    assert leak_key("pending", moved, stack, root) == key
    assert leak_key("done-retained", None, [], root) == ("done-retained", "?", "-")


def test_baseline_update_rules(tmp_path):
    path = tmp_path / "b.json"
    a, b, c = ("pending", "m:a", "m:x"), ("pending", "m:b", "m:x"), ("gc-pending", "m:c", "-")
    Baseline.write(str(path), {a: {"t::a"}, b: {"t::b"}})
    bl = Baseline.load(str(path))
    assert bl.tolerates(a) and not bl.tolerates(c)
    entries, dropped, refused = bl.updated({a: {"t::a"}, c: {"t::c"}}, ran={"t::a", "t::c"}, force=False)
    assert set(entries) == {a, b} and dropped == [] and refused == [c]  # b's test did not run
    entries, dropped, refused = bl.updated({a: {"t::a"}}, ran={"t::a", "t::b"}, force=False)
    assert set(entries) == {a} and dropped == [b]
    entries, _, _ = bl.updated({c: {"t::c"}}, ran=set(), force=True)
    assert set(entries) == {c}
    with pytest.raises(BaselineError, match="does not exist"):
        Baseline.load(str(tmp_path / "missing.json"))


def test_baseline_pending_and_gc_pending_are_one_leak(tmp_path):
    # A pending task only a cycle keeps is "pending" or "gc-pending" by the
    # collector's timing alone (seen as a flaky baseline run on 3.10).
    path = tmp_path / "b.json"
    pending, collected = ("pending", "m:a", "m:x"), ("gc-pending", "m:a", "m:x")
    Baseline.write(str(path), {pending: {"t::a"}})
    bl = Baseline.load(str(path))
    assert bl.tolerates(collected) and not bl.tolerates(("gc-pending", "m:b", "m:x"))
    assert not bl.tolerates(("done-retained", "m:a", "m:x"))
    entries, dropped, refused = bl.updated({collected: {"t::a"}}, ran={"t::a"}, force=False)
    assert entries == {pending: {"t::a"}} and dropped == [] and refused == []
