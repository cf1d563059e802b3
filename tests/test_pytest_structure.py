"""The pytest plugin on patterns a clock cannot catch and on what the grace
must never leave behind, driven through pytester in subprocesses: an
abandoned gather branch, an async generator a unittest-style test left
unclosed on its own loop, and a test whose task stops the loop during the
grace."""

import textwrap

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
"""


def run(pytester, source, *args, ini=INI, name="test_suite"):
    pytester.makeini(ini)
    pytester.makepyfile(**{name: textwrap.dedent(source)})
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def line_of(pytester, needle, name="test_suite.py"):
    for i, line in enumerate((pytester.path / name).read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


ABANDONED = """
import asyncio
import pytest


async def ends_at_once():
    raise StopAsyncIteration


async def slow():
    # Counted in loop iterations, not time: still running when the test
    # returns (two iterations after the gather raised) and done within the
    # grace's first millisecond. A sleep(0.01) could elapse inside the test
    # itself on a loaded machine (a full collection takes that long), and
    # the branch then finished before the scope ended.
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_zip_like():
    try:
        await asyncio.gather(ends_at_once(), slow())  # GATHER
    except StopAsyncIteration:
        pass


@pytest.mark.asyncio
async def test_clean_cancels_its_branch():
    branch = asyncio.ensure_future(slow())
    try:
        await asyncio.gather(ends_at_once(), branch)
    except StopAsyncIteration:
        branch.cancel()
"""


def test_abandoned_gather_branch_fails_at_default_settings(pytester):
    res = run(pytester, ABANDONED, "--taskleak")
    res.assert_outcomes(passed=2, errors=1)
    out = res.stdout.str()
    assert "[abandoned] 1 task abandoned: still running, but nothing can consume its result any more: slow()" in out
    assert f"asyncio.gather() at test_suite.py:{line_of(pytester, '# GATHER')} in test_zip_like" in out
    assert "finished during taskleak's grace only because the grace ran its loop" in out
    assert "Fix: when gather() raises, cancel and await the branches still running" in out
    assert "test_clean_cancels_its_branch" not in out.split("short test summary")[-1]


UNCLOSED_GENERATOR = """
import asyncio
import unittest


async def ticker():
    try:
        while True:
            yield 1  # SUSPENDED
            await asyncio.sleep(0)
    finally:
        pass


class TestOwnLoop(unittest.TestCase):
    def test_abandons_generator(self):
        loop = asyncio.new_event_loop()

        async def main():
            async for _ in ticker():
                break

        loop.run_until_complete(main())
        loop.close()  # without shutdown_asyncgens()
"""


def test_unclosed_async_generator_is_reported_not_failed(pytester):
    res = run(pytester, UNCLOSED_GENERATOR, "--taskleak")
    res.assert_outcomes(passed=1)
    out = res.stdout.str()
    assert "leaked task" not in out and "gc-pending" not in out
    res.stdout.fnmatch_lines(
        [
            "*taskleak: 1 async generator(s) never closed in 1 test(s)*",
            "Not task leaks: their finally blocks never ran*--taskleak-asyncgens=fail makes them.",
            "Fix: close the generator: `async with contextlib.aclosing(gen) as g:`*shutdown_asyncgens()*",
            "count*kind*status*",
            f"1*asyncgen*reported*async generator ticker()*test_suite.py:{line_of(pytester, '# SUSPENDED')} in ticker*"
            "test_suite.py::TestOwnLoop::test_abandons_generator",
        ]
    )


def test_unclosed_async_generator_fails_when_asked(pytester):
    res = run(pytester, UNCLOSED_GENERATOR, "--taskleak", "--taskleak-asyncgens=fail")
    res.assert_outcomes(passed=1, errors=1)
    out = res.stdout.str()
    assert "[asyncgen] 1 async generator never closed (its finally block never ran): ticker()" in out
    start = out.index("taskleak: 1 async generator never closed in")
    report = out[start : out.index("In pytest:", start)]  # (asyncio's own log line follows it)
    assert "async_generator_athrow" not in report and "await or cancel" not in report
    res = run(pytester, UNCLOSED_GENERATOR, "--taskleak", ini=INI + "taskleak_asyncgens = fail\n")
    res.assert_outcomes(passed=1, errors=1)
    res = run(pytester, UNCLOSED_GENERATOR, "--taskleak", "--taskleak-asyncgens=ignore")
    res.assert_outcomes(passed=1)
    assert "async generator" not in res.stdout.str()
    res = run(pytester, UNCLOSED_GENERATOR, "--taskleak", ini=INI + "taskleak_asyncgens = sometimes\n")
    assert res.ret != 0
    assert "taskleak_asyncgens must be report, fail, ignore" in res.stderr.str()


STOPS_THE_LOOP = """
import asyncio
import pytest


async def stopper():
    await asyncio.sleep(0.01)
    asyncio.get_running_loop().stop()


async def forever():
    await asyncio.sleep(3600)


@pytest.mark.asyncio
async def test_stopper_only():
    asyncio.create_task(stopper())
    await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_stopper_and_a_leak():
    asyncio.create_task(stopper())
    asyncio.create_task(forever())  # LEAK
    await asyncio.sleep(0)
"""


def test_loop_stopped_during_the_grace_leaves_nothing_of_taskleak(pytester):
    res = run(pytester, STOPS_THE_LOOP, "--taskleak", "-p", "no:randomly")
    res.assert_outcomes(passed=2, errors=1)
    out = res.stdout.str()
    # taskleak's own wait is never reported
    assert "still pending when the scope ended: sleep()" not in out and "run_until_complete" not in out
    # (Whether stopper() fires inside the grace or in pytest-asyncio's own
    # last run of the loop depends on the machine's load: the note saying so
    # is checked on a deterministic loop in test_check_structure.py.)
    assert "ERROR test_suite.py::test_stopper_and_a_leak" in out
    assert "test_stopper_only" not in out.split("short test summary")[-1]
    assert "forever()" in out
    assert f"test_suite.py:{line_of(pytester, '# LEAK')} in test_stopper_and_a_leak" in out
