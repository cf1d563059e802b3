"""check(blocking=...), LoopBlockedError, dump(), `taskleak run --blocking`
and the pytest plugin's --taskleak-blocking, on real blocking code."""

import asyncio
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
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


# ---- a block in the body's last loop iteration (issue 19) -------------------
# The scope exits in the same loop iteration as the block: the loop has not
# returned to poll(), so the episode is still open when the scope ends.

BLOCK = 0.4


def sleep_block():
    time.sleep(BLOCK)  # LAST BLOCK sleep


def _lines(line):
    """The lines a sample of `line`'s block may name: a busy loop's samples
    land on its `while` or on its body (more often the body under ASan)."""
    return {line, line + 1} if line == line_of("# LAST BLOCK busy") else {line}


def busy_block():
    end = time.monotonic() + BLOCK
    n = 0
    while time.monotonic() < end:  # LAST BLOCK busy
        n += 1
    return n


_REGEX_N: list[int] = []


def _backtracking(n: int) -> None:
    import re

    # Nested quantifiers on a string that cannot match: exponential
    # backtracking inside one C call that holds the GIL throughout.
    re.match(r"^(a+)+$", "a" * n + "b")  # LAST BLOCK regex


def regex_block():
    if not _REGEX_N:  # calibrated once, outside any check scope
        raise AssertionError("calibrate_regex() first")
    _backtracking(_REGEX_N[0])


def calibrate_regex() -> None:
    if _REGEX_N:
        return
    for n in range(14, 40):
        t0 = time.perf_counter()
        _backtracking(n)
        if time.perf_counter() - t0 >= BLOCK:
            _REGEX_N.append(n)
            return
    raise AssertionError("no backtracking regex took long enough")


_socket_pairs: list = []


def socket_block():
    import socket
    import threading

    a, b = socket.socketpair()
    _socket_pairs.append((a, b))
    threading.Timer(BLOCK, b.send, (b"x",)).start()
    a.settimeout(10)
    return a.recv(1)  # LAST BLOCK socket


KINDS = {"sleep": sleep_block, "busy": busy_block, "regex": regex_block, "socket": socket_block}


@pytest.fixture
def block_kind(request):
    if request.param == "regex":
        calibrate_regex()
    yield KINDS[request.param], line_of(f"# LAST BLOCK {request.param}")
    while _socket_pairs:
        for s in _socket_pairs.pop():
            s.close()


@pytest.mark.parametrize("block_kind", list(KINDS), indirect=True)
def test_async_check_catches_a_block_in_the_last_iteration(block_kind):
    block, line = block_kind

    async def main():
        with pytest.raises(taskleak.LoopBlockedError) as ei:
            async with taskleak.check(blocking=0.1):
                await asyncio.sleep(0)
                block()  # nothing awaited after this: the scope exits in the same iteration
        return ei.value.episodes

    eps = asyncio.run(main())
    assert len(eps) == 1
    ep = eps[0]
    assert ep.site is not None and os.path.abspath(ep.site.filename) == HERE and ep.site.lineno in _lines(line)
    assert ep.ended == "scope exit"
    assert 0.3 <= ep.duration < 2.0
    assert not watchdog.is_watching()


@pytest.mark.parametrize("block_kind", ["sleep", "regex"], indirect=True)
def test_sync_check_inside_a_running_loop_catches_a_last_block(block_kind):
    block, line = block_kind

    async def main():
        with pytest.raises(taskleak.LoopBlockedError) as ei:
            with taskleak.check(blocking=0.1):
                block()
        return ei.value.episodes

    eps = asyncio.run(main())
    assert [e.site.lineno in _lines(line) for e in eps if e.site is not None] == [True]


@pytest.mark.parametrize("block_kind", ["busy", "socket"], indirect=True)
def test_decorated_coroutine_ending_in_a_block_fails(block_kind):
    block, line = block_kind

    @taskleak.check(blocking=0.1)
    async def handler():
        await asyncio.sleep(0)
        block()

    with pytest.raises(taskleak.LoopBlockedError) as ei:
        asyncio.run(handler())
    assert [e.site.lineno in _lines(line) for e in ei.value.episodes if e.site is not None] == [True]


def test_an_idle_scope_still_passes_and_its_exit_is_not_counted():
    async def main():
        async with taskleak.check(blocking=0.1) as idle:
            await asyncio.sleep(BLOCK)  # waiting, not blocked
        # A last block just under the threshold, then the scope's own exit
        # work (grace for a pending task, the leak search): not a block.
        async with taskleak.check(blocking=0.1, grace=0.2) as short:
            t = asyncio.get_running_loop().create_task(asyncio.sleep(0.05))
            time.sleep(0.05)
        await t
        return idle.blocked, short.blocked

    assert asyncio.run(main()) == ([], [])


def test_the_loop_is_still_watched_after_an_inner_scope_ends_its_episode():
    # An outer watch (the pytest option's, say) keeps seeing this loop's
    # blocks after an inner scope ended one at its exit.
    async def main():
        with pytest.raises(taskleak.LoopBlockedError):
            async with taskleak.check(blocking=0.1):
                time.sleep(0.3)
        time.sleep(0.3)  # OUTER BLOCK
        await asyncio.sleep(0)

    with taskleak.watch_blocking(0.1) as w:
        asyncio.run(main())
        eps = w.episodes()
    assert [e.ended for e in eps] == ["scope exit", "resumed"]
    assert eps[1].site is not None and eps[1].site.lineno == line_of("# OUTER BLOCK")


LAST_BLOCK_SUITE = """
import asyncio
import time
import pytest
import taskleak


@pytest.mark.asyncio
async def test_ends_blocked():
    await asyncio.sleep(0)
    time.sleep(0.3)


@pytest.mark.asyncio
async def test_scope_ends_blocked():
    async with taskleak.check(blocking=0.1):
        await asyncio.sleep(0)
        time.sleep(0.3)
"""


def test_pytest_option_and_check_agree_on_a_last_block(pytester):
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=LAST_BLOCK_SUITE)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--taskleak-blocking=0.1")
    res.assert_outcomes(failed=2)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider")  # check() alone
    res.assert_outcomes(passed=1, failed=1)
    assert "LoopBlockedError" in res.stdout.str()


def test_async_check_catches_a_last_block_on_uvloop():
    uvloop = pytest.importorskip("uvloop")  # a dev dependency (make install)

    async def main():
        with pytest.raises(taskleak.LoopBlockedError) as ei:
            async with taskleak.check(blocking=0.1):
                await asyncio.sleep(0)
                sleep_block()
        return ei.value.episodes

    eps = uvloop.run(main())
    assert [e.site.lineno for e in eps if e.site is not None] == [line_of("# LAST BLOCK sleep")]


def test_an_inner_scope_counts_only_its_own_part_of_a_busy_iteration():
    # The loop is already watched (an outer watch): its heartbeat predates
    # the inner scope. Busy time before the scope, in the same iteration,
    # is not the scope's; the block inside it is.
    async def main():
        await asyncio.sleep(0)
        time.sleep(0.05)  # before the scope, same iteration
        with pytest.raises(taskleak.LoopBlockedError) as ei:
            async with taskleak.check(blocking=0.1):
                time.sleep(0.3)  # INNER BLOCK
        await asyncio.sleep(0)
        time.sleep(0.3)  # before the scope, same iteration: not the scope's
        async with taskleak.check(blocking=0.1) as quiet:
            time.sleep(0.03)
        await asyncio.sleep(0)
        return ei.value.episodes, quiet.blocked

    with taskleak.watch_blocking(0.1) as w:
        caught, quiet = asyncio.run(main())
        outer = w.episodes()
    assert [e.site.lineno for e in caught if e.site is not None] == [line_of("# INNER BLOCK")]
    assert quiet == []
    assert len(outer) == 2 and all(e.duration >= 0.3 for e in outer)


# ---- a watched loop in another thread, still blocked when the scope exits ----

OTHER_BLOCK = 1.0  # long past the scope's exit (its body ends ~0.3 s into it)


def other_sleep():
    time.sleep(OTHER_BLOCK)  # OTHER THREAD sleep


def other_busy():
    end = time.monotonic() + OTHER_BLOCK
    n = 0
    while time.monotonic() < end:  # OTHER THREAD busy
        n += 1
    return n


OTHER = {"sleep": other_sleep, "busy": other_busy}


def _wait_in_progress(loop: str) -> None:
    for _ in range(300):
        if any(e.loop == loop and e.samples >= 3 for e in watchdog.episodes_in_progress()):
            return
        time.sleep(0.01)
    raise AssertionError("no episode in progress on " + loop)


@pytest.mark.parametrize("kind", list(OTHER))
def test_sync_check_counts_a_block_still_going_on_in_another_threads_loop(kind):
    """`with check(blocking=0.1):` in this thread, the watched loop in
    another: a block there that spans the scope's exit counts by its part
    inside the scope (the loop is not interrupted: it is not the scope's)."""
    from live_service import Service

    line = line_of(f"# OTHER THREAD {kind}")
    svc = None
    t0 = time.monotonic()
    try:
        with pytest.raises(taskleak.LoopBlockedError) as ei:
            with taskleak.check(blocking=0.1):
                svc = Service()  # its loop starts inside the scope: watched
                svc.loop.call_soon_threadsafe(OTHER[kind])
                _wait_in_progress("service-loop")
                time.sleep(0.2)  # the body ends while that loop is still blocked
        exited = time.monotonic() - t0
    finally:
        if svc is not None:
            svc.stop()
    assert exited < OTHER_BLOCK  # (the scope did not wait for the block to end)
    [ep] = ei.value.episodes
    assert ep.loop == "service-loop" and ep.thread == "service-loop"
    assert ep.ended == "in progress at scope exit"
    assert ep.site is not None and os.path.abspath(ep.site.filename) == HERE
    assert ep.site.lineno in ({line, line + 1} if kind == "busy" else {line})
    assert 0.2 <= ep.duration < OTHER_BLOCK and ep.samples >= 3
    assert f"test_blocking_check.py:{ep.site.lineno} in other_{kind}" in str(ei.value)
    assert not watchdog.is_watching()


def test_only_the_part_inside_the_scope_of_another_threads_block_counts():
    """The other loop is watched from before the scope (an outer watch) and
    already blocked when the scope starts: a short scope is not failed for
    the block's earlier part, a longer one is; an idle other loop passes."""
    from live_service import Service

    with taskleak.watch_blocking(0.1):
        svc = Service()
        try:
            with taskleak.check(blocking=0.1) as idle:
                time.sleep(0.3)  # the other loop waits for I/O meanwhile
            assert idle.blocked == []
            svc.loop.call_soon_threadsafe(other_sleep)
            _wait_in_progress("service-loop")
            time.sleep(0.2)  # ~0.3 s into the block before the scopes start
            with taskleak.check(blocking=0.1) as short:
                time.sleep(0.03)
            assert short.blocked == []
            with pytest.raises(taskleak.LoopBlockedError) as ei:
                with taskleak.check(blocking=0.1):
                    time.sleep(0.15)
            [ep] = ei.value.episodes
            assert ep.ended == "in progress at scope exit" and ep.duration >= 0.35
        finally:
            svc.stop()


def test_another_threads_block_counts_only_up_to_the_body_end():
    """A block on another thread's loop that starts just before the body
    ends and goes on through the scope's exit work (here: until it is
    recorded whole) counts only by its part inside the body: too short."""
    from live_service import Service

    from taskleak.testing.loop_blocked import BlockingScope

    scope = BlockingScope(0.1)
    svc = Service()  # its loop starts while watched
    try:
        started = threading.Event()

        def block():
            started.set()
            time.sleep(0.4)  # OTHER THREAD short

        svc.loop.call_soon_threadsafe(block)
        assert started.wait(5)
        time.sleep(0.03)
        scope.body_ended()  # ~0.03 s into the block
        for _ in range(300):  # the exit work outlasts the block: it is recorded whole
            if any(e.loop == "service-loop" and e.duration >= 0.35 for e in watchdog.block_episodes()):
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the other loop's block was never recorded")
        assert scope.finish() == []
    finally:
        scope.finish()  # idempotent: the watch never outlives the test
        svc.stop()
