"""check(blocking=...), LoopBlockedError, dump(), `taskleak run --blocking`
and the pytest plugin's --taskleak-blocking, on real blocking code."""

import asyncio
import io
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import taskleak
from taskleak.blocking import watchdog

pytest_plugins = ["pytester"]
HERE = os.path.abspath(__file__)


def line_of(marker: str) -> int:
    with open(HERE) as f:
        for i, text in enumerate(f, 1):
            if text.rstrip().endswith(marker) and "line_of(" not in text:
                return i
    raise AssertionError(marker)


async def blocks(seconds):
    await asyncio.sleep(0)
    time.sleep(seconds)  # BLOCKS HERE
    await asyncio.sleep(0)


def test_check_raises_loop_blocked_error():
    with pytest.raises(taskleak.LoopBlockedError) as ei:
        with taskleak.check(blocking=0.1):
            asyncio.run(blocks(0.3))
    err = ei.value
    assert isinstance(err, AssertionError)
    assert len(err.episodes) == 1
    ep = err.episodes[0]
    assert isinstance(ep, taskleak.Episode)
    assert (os.path.abspath(ep.site.filename), ep.site.lineno) == (HERE, line_of("# BLOCKS HERE"))
    msg = str(err)
    assert f"test_blocking_check.py:{line_of('# BLOCKS HERE')} in blocks" in msg
    assert "blocked 1 time for longer than 0.1 s" in msg
    assert not watchdog.is_watching()


def test_check_passes_when_nothing_blocks_longer_than_the_threshold():
    with taskleak.check(blocking=0.5) as lc:
        asyncio.run(blocks(0.15))  # blocked, but less than 0.5 s
    assert lc.blocked == []


def test_async_check_inside_a_running_loop():
    async def main():
        with pytest.raises(taskleak.LoopBlockedError) as ei:
            async with taskleak.check(blocking=0.1):
                await blocks(0.3)
        return ei.value.episodes

    eps = asyncio.run(main())
    assert [e.site.lineno for e in eps] == [line_of("# BLOCKS HERE")]


def test_check_as_a_decorator():
    @taskleak.check(blocking=0.1)
    async def handler():
        await blocks(0.3)

    with pytest.raises(taskleak.LoopBlockedError):
        asyncio.run(handler())


def test_leaks_are_reported_before_blocks():
    async def main():
        asyncio.get_running_loop().create_task(asyncio.sleep(10))
        await blocks(0.3)

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(taskleak.TaskLeakError):
            with taskleak.check(blocking=0.1, grace=0):
                loop.run_until_complete(main())
    finally:
        for t in asyncio.all_tasks(loop):
            t.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def test_check_warn_mode_warns_instead():
    with pytest.warns(taskleak.TaskLeakWarning, match="event loop was blocked"):
        with taskleak.check(blocking=0.1, on_leak="warn"):
            asyncio.run(blocks(0.3))


@pytest.mark.parametrize("bad", [0, -0.1, "0.1", True, 0.001])
def test_check_rejects_a_bad_blocking_value(bad):
    with pytest.raises(ValueError, match="blocking"):
        taskleak.check(blocking=bad)


def test_body_error_is_not_masked():
    with pytest.raises(ZeroDivisionError):
        with taskleak.check(blocking=0.1):
            asyncio.run(blocks(0.3))
            1 / 0
    assert not watchdog.is_watching()


def test_dump_lists_recent_episodes():
    with taskleak.watch_blocking(0.1):
        asyncio.run(blocks(0.25))
    buf = io.StringIO()
    taskleak.dump(buf, growth=False)
    text = buf.getvalue()
    assert "blocked event loops (most recent)" in text
    assert f"test_blocking_check.py:{line_of('# BLOCKS HERE')} in blocks" in text
    buf = io.StringIO()
    taskleak.dump(buf, json=True, growth=False)
    d = json.loads(buf.getvalue())
    assert d["blocked_loops"] and d["blocked_loops"][-1]["site"]["lineno"] == line_of("# BLOCKS HERE")


def test_block_episodes_since():
    with taskleak.watch_blocking(0.1):
        asyncio.run(blocks(0.2))
        last = taskleak.block_episodes()[-1].seq
        asyncio.run(blocks(0.2))
        newer = taskleak.block_episodes(since=last)
    assert len(newer) == 1 and newer[0].seq > last


def test_taskleak_run_blocking(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(
        textwrap.dedent("""
        import asyncio, time

        async def handler():
            time.sleep(0.3)   # BLOCKING CALL

        async def main():
            await asyncio.gather(handler(), asyncio.sleep(0.35))

        asyncio.run(main())
    """)
    )
    out = tmp_path / "r.json"
    res = subprocess.run(
        [sys.executable, "-m", "taskleak", "run", "--blocking", "0.1", "--json", str(out), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "event loops blocked longer than 0.1 s: 1 episode(s)" in res.stderr
    assert "prog.py:5 in handler" in res.stderr
    assert "running task handler()" in res.stderr
    data = json.loads(out.read_text())
    assert data["blocked_loops"][0]["site"]["lineno"] == 5


def test_taskleak_run_rejects_bad_blocking(tmp_path):
    script = tmp_path / "p.py"
    script.write_text("pass\n")
    res = subprocess.run(
        [sys.executable, "-m", "taskleak", "run", "--blocking", "0", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "--blocking" in res.stderr


SUITE = """
import asyncio
import time
import pytest


@pytest.mark.asyncio
async def test_blocks():
    await asyncio.sleep(0)
    time.sleep(0.3)  # THE BLOCK
    await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_fine():
    await asyncio.sleep(0.3)


@pytest.mark.no_taskleak
@pytest.mark.asyncio
async def test_exempt():
    time.sleep(0.3)


@pytest.mark.taskleak(blocking=1.0)
@pytest.mark.asyncio
async def test_tolerant_marker():
    time.sleep(0.3)


def test_sync_uses_asyncio_run():
    async def main():
        time.sleep(0.3)
    asyncio.run(main())
"""

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
"""


def test_pytest_option(pytester):
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--taskleak-blocking=0.1")
    res.assert_outcomes(passed=3, failed=2)
    out = res.stdout.str()
    assert "test_suite.py::test_blocks" in out and "test_suite.py::test_sync_uses_asyncio_run" in out
    lines = (pytester.path / "test_suite.py").read_text().splitlines()
    block_line = next(i for i, text in enumerate(lines, 1) if text.endswith("# THE BLOCK"))
    assert f"test_suite.py:{block_line} in test_blocks" in out
    # pytest repeats the message in its short summary ("FAILED ... - <message>"), untruncated
    # when it detects CI (the CI environment variable); count only the failure sections.
    sections = "\n".join(line for line in out.splitlines() if not line.startswith("FAILED "))
    assert sections.count("the event loop was blocked 1 time for longer than 0.1 s") == 2


def test_pytest_ini_and_marker(pytester):
    pytester.makeini(INI + "taskleak_blocking = 0.1\n")
    pytester.makepyfile(test_suite=SUITE)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "blocks or tolerant or fine")
    res.assert_outcomes(passed=2, failed=1)
    # Off by default: nothing fails without the option.
    pytester.makeini(INI)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    res.assert_outcomes(passed=5)


def test_pytest_marker_alone(pytester):
    pytester.makeini(INI)
    pytester.makepyfile(
        test_suite="""
        import asyncio, time, pytest

        @pytest.mark.taskleak(blocking=0.1)
        @pytest.mark.asyncio
        async def test_marked():
            time.sleep(0.3)
    """
    )
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    res.assert_outcomes(failed=1)
    assert "blocked 1 time for longer than 0.1 s" in res.stdout.str()


def test_pytest_bad_option(pytester):
    pytester.makeini(INI)
    pytester.makepyfile(test_suite="def test_x():\n    pass\n")
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--taskleak-blocking=soon")
    assert res.ret != 0
    assert "taskleak" in res.stderr.str() and "blocking" in res.stderr.str()
