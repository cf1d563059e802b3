"""The blocked-loop watchdog: each way a loop can block is caught, attributed to
the line that blocked (sampled *while* it blocked), and an idle loop is never
flagged. Blocks here last 0.3-0.5 s against a 0.1 s threshold."""

import asyncio
import gc
import os
import re
import socket
import sys
import threading
import time

import pytest

import taskleak
from taskleak import _core
from taskleak.blocking import watchdog

HERE = os.path.abspath(__file__)
BLOCK = 0.3


def line_of(marker: str) -> int:
    with open(HERE) as f:
        for i, text in enumerate(f, 1):
            if text.rstrip().endswith(marker) and "line_of(" not in text:
                return i
    raise AssertionError(f"marker {marker!r} not found")


@pytest.fixture
def watch():
    watchdog.clear_block_episodes()
    w = taskleak.watch_blocking(0.1)
    assert w.stacks_available, watchdog.watchdog_status()
    try:
        yield w
    finally:
        w.stop()
    assert not watchdog.is_watching()
    assert not _core.watchdog_running()


def sites(episodes):
    return [(os.path.abspath(e.site.filename), e.site.lineno) for e in episodes if e.site is not None]


def samples_at(ep, lineno):
    """Samples whose innermost frame of this file is at `lineno`."""
    n = 0
    for s in ep.stacks:
        mine = [f for f in s.frames if os.path.abspath(f.filename) == HERE]
        if mine and mine[0].lineno == lineno:
            n += s.count
    return n


def only_episode(w):
    eps = w.episodes()
    assert len(eps) == 1, [str(e) for e in eps]
    return eps[0]


def test_stacks_are_read_through_the_interpreters_published_offsets(watch):
    # 3.13+ publishes _Py_DebugOffsets; the watchdog must use them rather
    # than its compiled-in mirror (which would go stale on a patch release).
    mode = watchdog.watchdog_status()["stacks"]
    if sys.version_info >= (3, 13):
        assert mode.startswith("debug-offsets"), mode
    else:
        assert mode.startswith("compiled"), mode


def test_time_sleep_in_a_coroutine(watch):
    async def main():
        await asyncio.sleep(0)
        time.sleep(BLOCK)  # BLOCK: sleep
        await asyncio.sleep(0)

    asyncio.run(main())
    ep = only_episode(watch)
    assert (HERE, line_of("# BLOCK: sleep")) in sites([ep])
    assert ep.duration >= BLOCK - 0.1
    assert ep.running is not None and ep.running.startswith("task ") and "main" in ep.running
    assert ep.ended == "resumed"
    assert ep.detection_latency is not None and ep.detection_latency < ep.duration
    assert samples_at(ep, line_of("# BLOCK: sleep")) >= 2


def test_busy_pure_python_loop(watch):
    async def spin():
        end = time.monotonic() + BLOCK
        n = 0
        while time.monotonic() < end:  # BLOCK: spin
            n += 1
        return n

    async def main():
        await asyncio.sleep(0)
        await spin()

    asyncio.run(main())
    ep = only_episode(watch)
    spin_lines = {line_of("# BLOCK: spin"), line_of("# BLOCK: spin") + 1}
    assert ep.site is not None and ep.site.lineno in spin_lines
    assert ep.site.function.endswith("spin")
    # The whole await chain is in the sample, innermost first.
    names = [f.function.rsplit(".", 1)[-1] for f in ep.stacks[0].frames]
    assert names.index("spin") < names.index("main")


def _regex_input_lasting(seconds: float) -> str:
    """A subject for (a+)+$ whose match fails after about `seconds` of
    backtracking inside the C regex engine (which holds the GIL throughout)."""
    pat = re.compile(r"(a+)+$")
    n = 14
    while True:
        s = "a" * n + "!"
        t = time.perf_counter()
        pat.match(s)
        took = time.perf_counter() - t
        if took >= seconds / 8:
            return "a" * (n + 3) + "!"  # each extra "a" doubles the time
        n += 1


def test_gil_holding_c_call_is_caught_while_it_runs(watch):
    subject = _regex_input_lasting(BLOCK)
    pat = re.compile(r"(a+)+$")

    async def parse():
        await asyncio.sleep(0)
        return pat.match(subject)  # BLOCK: regex

    asyncio.run(parse())
    ep = only_episode(watch)
    line = line_of("# BLOCK: regex")
    assert ep.site is not None and (os.path.abspath(ep.site.filename), ep.site.lineno) == (HERE, line)
    # Stacks were read during the C call, not after it: a Python-thread
    # watchdog could not run at all until the match returned.
    assert samples_at(ep, line) >= 2
    assert ep.detection_latency is not None and ep.detection_latency < ep.duration


def test_sorting_a_huge_list_is_caught_while_it_runs(watch):
    import random

    rnd = random.Random(7)
    data = [rnd.random() for _ in range(300_000)]
    t = time.perf_counter()
    sorted(data)
    per = max(time.perf_counter() - t, 1e-4)
    data = data * max(1, int(BLOCK / per) + 1)
    took = 0.0

    async def crunch():
        nonlocal took
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        out = sorted(data)  # BLOCK: sort
        took = time.perf_counter() - t0
        return out

    # The size is calibrated on one sort; on a loaded machine that sort can be
    # slow and the real one fast, so grow the list until the sort really
    # blocked for twice the threshold, then ask whether it was seen.
    for _ in range(4):
        asyncio.run(crunch())
        if took >= 2 * 0.1:
            break
        watchdog.clear_block_episodes()
        data = data * 2
    assert took >= 2 * 0.1, took
    eps = watch.episodes()
    assert eps, f"a sort that blocked the loop {took:.2f} s was not seen"
    assert samples_at(eps[0], line_of("# BLOCK: sort")) >= 1


def test_blocking_socket_read(watch):
    a, b = socket.socketpair()
    a.setblocking(True)

    def later():
        time.sleep(BLOCK)
        b.sendall(b"x")

    async def main():
        await asyncio.sleep(0)
        threading.Thread(target=later).start()
        return a.recv(1)  # BLOCK: recv

    try:
        assert asyncio.run(main()) == b"x"
    finally:
        a.close()
        b.close()
    ep = only_episode(watch)
    assert (HERE, line_of("# BLOCK: recv")) in sites([ep])
    assert ep.duration >= BLOCK - 0.1


def test_slow_call_soon_callback(watch):
    def slow_callback():
        time.sleep(BLOCK)  # BLOCK: callback

    async def main():
        asyncio.get_running_loop().call_soon(slow_callback)
        await asyncio.sleep(BLOCK + 0.1)

    asyncio.run(main())
    ep = only_episode(watch)
    assert (HERE, line_of("# BLOCK: callback")) in sites([ep])
    assert ep.running is not None and ep.running.startswith("callback ") and "slow_callback" in ep.running


def test_an_idle_loop_is_never_flagged(watch):
    # A low threshold, but not so low that the scheduler of a busy CI
    # machine pausing the loop thread (which is a block, by wall time) trips it.
    w2 = taskleak.watch_blocking(0.05)
    try:
        loop = asyncio.new_event_loop()
        fut = loop.create_future()
        timer = threading.Timer(0.6, lambda: loop.call_soon_threadsafe(fut.set_result, 1))
        timer.start()  # (starting a thread waits for it: not inside the loop)

        async def main():
            await asyncio.sleep(0.3)  # idle in select()
            await fut  # idle, woken from another thread
            for _ in range(200):  # busy, but in short steps
                await asyncio.sleep(0)

        try:
            loop.run_until_complete(main())
        finally:
            timer.join()
            loop.close()
        assert w2.episodes() == []
        assert watch.episodes() == []
    finally:
        w2.stop()


def test_a_loop_not_running_is_never_flagged(watch):
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.sleep(0))
        time.sleep(BLOCK)  # the loop is stopped: this blocks nothing
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert watch.episodes() == []


def test_several_loops_in_threads(watch):
    errors = []

    def blocker(seconds):
        time.sleep(seconds)  # BLOCK: threads

    def run(seconds):
        async def main():
            await asyncio.sleep(0)
            blocker(seconds)
            await asyncio.sleep(0)

        try:
            asyncio.run(main())
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(BLOCK + 0.05 * i,), name=f"loop-{i}") for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    eps = watch.episodes()
    assert sorted(e.thread for e in eps) == ["loop-0", "loop-1", "loop-2"]
    assert len({e.loop for e in eps}) == 3
    assert all(s == (HERE, line_of("# BLOCK: threads")) for s in sites(eps)) and len(sites(eps)) == 3


def test_uvloop():
    uvloop = pytest.importorskip("uvloop")  # DEV_DEPS installs it; skipped only outside the dev venvs
    watchdog.clear_block_episodes()
    with taskleak.watch_blocking(0.1) as w:

        async def main():
            await asyncio.sleep(0.2)  # idle first: the periodic beat must keep it unflagged
            time.sleep(BLOCK + 0.1)  # BLOCK: uvloop
            await asyncio.sleep(0)

        loop = uvloop.new_event_loop()
        try:
            loop.run_until_complete(main())
            time.sleep(BLOCK)  # stopped, not blocked
        finally:
            loop.close()
        eps = w.episodes()
    assert len(eps) == 1, [str(e) for e in eps]
    assert eps[0].loop == "MainThread"  # uvloop keeps no thread id: named on its own thread
    assert eps[0].running is not None and eps[0].running.startswith("task ") and "main" in eps[0].running
    assert (HERE, line_of("# BLOCK: uvloop")) in sites(eps)
    assert eps[0].duration >= BLOCK - 0.1


def test_loop_stopping_during_an_episode(watch):
    after_line = line_of("# BLOCK: after the loop")

    def stop_then_block(loop):
        loop.stop()
        time.sleep(BLOCK)  # BLOCK: stopping

    loop = asyncio.new_event_loop()
    try:
        loop.call_soon(stop_then_block, loop)
        loop.run_forever()  # returns right after the callback, with no select() in between
    finally:
        loop.close()
    time.sleep(BLOCK)  # BLOCK: after the loop
    ep = only_episode(watch)
    assert ep.ended == "loop stopped"
    assert (HERE, line_of("# BLOCK: stopping")) in sites([ep])
    # The episode ended with the loop: nothing after it was sampled.
    assert samples_at(ep, after_line) == 0


def test_watching_stops_during_an_episode():
    watchdog.clear_block_episodes()
    w = taskleak.watch_blocking(0.1)
    started = threading.Event()

    async def main():
        await asyncio.sleep(0)
        started.set()
        time.sleep(BLOCK * 2)  # BLOCK: unwatched

    t = threading.Thread(target=asyncio.run, args=(main(),))
    t.start()
    started.wait()
    time.sleep(BLOCK)
    w.stop()  # joins the watchdog thread; the open episode is closed
    assert not _core.watchdog_running()
    t.join()
    eps = taskleak.block_episodes()
    assert [e.ended for e in eps] == ["unwatched"]
    assert (HERE, line_of("# BLOCK: unwatched")) in sites(eps)


def test_code_object_gone_before_rendering(watch):
    # A callback whose code object dies right after it ran: the episode is
    # rendered without dereferencing it (or with it, if still alive).
    src = f"import time\ndef ephemeral():\n    time.sleep({BLOCK!r})\n"
    ns = {}
    exec(compile(src, "<ephemeral>", "exec"), ns)
    fn = ns.pop("ephemeral")
    del ns

    async def main():
        nonlocal fn
        asyncio.get_running_loop().call_soon(fn)
        fn = None
        await asyncio.sleep(BLOCK + 0.1)

    asyncio.run(main())
    gc.collect()
    ep = only_episode(watch)
    assert ep.stacks and ep.duration >= BLOCK - 0.1
    names = {f.function for s in ep.stacks for f in s.frames}
    assert "ephemeral" in names or "?" in names


def test_stacks_that_change_under_the_sampler(watch):
    # Frames come and go thousands of times per sample: torn reads must give
    # short or odd samples, never a crash.
    def rec(n):
        return 0 if n == 0 else 1 + rec(n - 1)

    async def churn():
        await asyncio.sleep(0)
        end = time.monotonic() + BLOCK
        depth = 0
        while time.monotonic() < end:
            rec(depth % 60)
            depth += 7

    asyncio.run(churn())
    ep = only_episode(watch)
    assert ep.samples >= 2
    assert max(len(s.frames) for s in ep.stacks) > min(len(s.frames) for s in ep.stacks)


def test_totals_count_every_episode(watch):
    before = watchdog.blocked_totals()

    async def main():
        for _ in range(2):
            await asyncio.sleep(0)
            time.sleep(0.15)

    asyncio.run(main())
    after = watchdog.blocked_totals()
    assert after.blocks - before.blocks == 2
    assert after.blocked_seconds - before.blocked_seconds >= 0.2
    # Per stable loop label (the thread's name): a new loop in the same
    # thread adds to the same counters, as a Prometheus counter must.
    blocks, seconds = after.per_loop["MainThread"]
    old_blocks, _ = before.per_loop.get("MainThread", (0, 0.0))
    assert blocks - old_blocks == 2


def test_no_thread_left_behind():
    def native_threads():
        return len(os.listdir("/proc/self/task"))

    before = native_threads()
    w = taskleak.watch_blocking(0.1)
    assert native_threads() == before + 1
    w.stop()
    assert native_threads() == before
    assert not _core.watchdog_running()


def test_bad_threshold():
    for bad in (0, -1, "0.1", True, None, 0.001):
        with pytest.raises(ValueError):
            taskleak.watch_blocking(bad)
    assert not watchdog.is_watching()


def test_selector_is_restored_after_watching():
    loop = asyncio.new_event_loop()
    try:
        poller = loop._selector._selector
        with taskleak.watch_blocking(0.1):
            loop.run_until_complete(asyncio.sleep(0))
            assert isinstance(loop._selector._selector, _core.PollerHeartbeat)
            assert loop._selector.fileno() == poller.fileno()
        assert loop._selector._selector is poller
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert poller.closed


def test_selector_without_a_poll_object_gets_a_select_wrapper(watch):
    import selectors

    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:

        async def main():
            await asyncio.sleep(0.2)  # idle in select.select(): not flagged
            time.sleep(BLOCK)  # BLOCK: select wrapper
            await asyncio.sleep(0)

        loop.run_until_complete(main())
        assert isinstance(loop._selector.__dict__.get("select"), _core.SelectHeartbeat)
        ep = only_episode(watch)
        assert (HERE, line_of("# BLOCK: select wrapper")) in sites([ep])
    finally:
        loop.close()


def _code_objects(mod):
    seen = []
    todo = [v.__code__ for v in vars(mod).values() if hasattr(v, "__code__")]
    for cls in [v for v in vars(mod).values() if isinstance(v, type)]:
        todo += [f.__code__ for f in vars(cls).values() if hasattr(f, "__code__")]
    while todo:
        co = todo.pop()
        seen.append(co)
        todo += [c for c in co.co_consts if hasattr(c, "co_code")]
    return seen


def test_remote_code_reading_matches_the_interpreter():
    # The watchdog copies filename, name and line table out of code objects
    # without the GIL and decodes lines itself; hold that against co_lines()
    # for every instruction of a few thousand real code objects.
    import asyncio.base_events
    import json.decoder
    import unicodedata  # noqa: F401  (C module: nothing to read, must not matter)

    mods = [asyncio.base_events, json.decoder, re, socket, threading]
    codes = [co for m in mods for co in _code_objects(m)]
    exec(compile("def f\u00e9\u4e2d():\n    return 1\n", "/tmp/\u00fcnicode-\U0001f600.py", "exec"), ns := {})
    codes.append(ns["f\u00e9\u4e2d"].__code__)
    assert len(codes) > 300
    for co in codes:
        info = _core.remote_code_info(co)
        assert info is not None, co
        filename, qualname, flags, lines = info
        assert filename == co.co_filename
        assert qualname == getattr(co, "co_qualname", co.co_name)
        assert flags == co.co_flags
        want = [None] * len(lines)
        for start, end, line in co.co_lines():
            for unit in range(start // 2, min(end // 2, len(lines))):
                want[unit] = line
        got = [None if ln == -1 else ln for ln in lines]
        assert got == want, (co, [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w][:5])


def test_fork_while_watching(tmp_path):
    # The child inherits no watchdog thread and no watched loop; it can watch
    # on its own. Run in a fresh interpreter: forking pytest itself is noisy.
    script = tmp_path / "forker.py"
    script.write_text(
        "import asyncio, os, time, taskleak\n"
        "from taskleak import _core\n"
        "async def block():\n"
        "    await asyncio.sleep(0)\n"
        "    time.sleep(0.3)\n"
        "w = taskleak.watch_blocking(0.1)\n"
        "asyncio.run(asyncio.sleep(0))\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    ok = not _core.watchdog_running() and len(os.listdir('/proc/self/task')) == 1\n"
        "    asyncio.run(block())          # not watched: no thread\n"
        "    with taskleak.watch_blocking(0.1) as w2:\n"
        "        asyncio.run(block())\n"
        "        ok = ok and len(w2.episodes()) == 1\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "asyncio.run(block())\n"
        "assert len(w.episodes()) == 1, w.episodes()\n"
        "w.stop()\n"
        "raise SystemExit(os.waitstatus_to_exitcode(status))\n"
    )
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_watching_again_after_the_tracking_hook_was_undone():
    # taskleak's installer wraps the same asyncio function; uninstalling it
    # may put the original back over the watchdog's hook. The next Watch
    # puts its hook back.
    taskleak.install()
    with taskleak.watch_blocking(0.1):
        taskleak.uninstall()
    watchdog.clear_block_episodes()
    with taskleak.watch_blocking(0.1) as w:

        async def main():
            await asyncio.sleep(0)
            time.sleep(BLOCK)

        asyncio.run(main())
        assert len(w.episodes()) == 1


def test_loop_labels_are_stable_and_bounded():
    """A loop's label is its thread's name; a second loop running at the same
    time in that thread gets "-2"; a closed loop's label is reused, so a
    thread that makes a loop per job keeps one series."""
    from taskleak.loop_label import loop_label

    first = asyncio.new_event_loop()
    second = asyncio.new_event_loop()
    try:
        assert loop_label(first, "worker") == "worker"
        assert loop_label(second, "worker") == "worker-2"
        assert loop_label(first) == "worker"  # remembered
    finally:
        first.close()
    third = asyncio.new_event_loop()
    try:
        assert loop_label(third, "worker") == "worker"  # the closed loop's label
    finally:
        second.close()
        third.close()
    labels = set()
    for _ in range(50):
        loop = asyncio.new_event_loop()
        labels.add(loop_label(loop, "jobs"))
        loop.close()
    assert labels == {"jobs"}


class _LoopThread:
    """An asyncio loop running for ever in a thread of its own."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        # A daemon: a failed test must not keep the interpreter from exiting.
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()
        while not self.loop.is_running():
            time.sleep(0.005)

    def run(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.loop.close()


async def _noop():
    return None


def _block_in(lt, seconds):
    async def blocker():
        time.sleep(seconds)  # BLOCK: running before watching

    lt.run(blocker())


def test_a_loop_already_running_in_another_thread_is_watched(tracked):
    # A service's loop runs in a thread (and tracking has seen it) before
    # anyone asks to watch: the next block is caught, named on its thread.
    lt = _LoopThread("service-loop")
    try:
        lt.run(_noop())  # a task: tracking adopts the loop
        watchdog.clear_block_episodes()
        with taskleak.watch_blocking(0.1) as w:
            lt.run(_noop())  # one iteration: the loop has attached itself
            _block_in(lt, BLOCK + 0.1)
            eps = w.episodes()
        assert len(eps) == 1, [str(e) for e in eps]
        assert eps[0].thread == "service-loop"
        assert (HERE, line_of("# BLOCK: running before watching")) in sites(eps)
    finally:
        lt.close()


def test_a_running_loop_first_seen_after_watching_starts_is_watched(tracked):
    # The loop was running before the watch, but created its first task
    # (tracking adopts it then) only after: it is watched from there on.
    lt = _LoopThread("late-loop")
    try:
        watchdog.clear_block_episodes()
        with taskleak.watch_blocking(0.1) as w:
            lt.run(_noop())  # first task: adopted, and asked to attach
            lt.run(_noop())
            _block_in(lt, BLOCK + 0.1)
            eps = w.episodes()
        assert [e.thread for e in eps] == ["late-loop"], [str(e) for e in eps]
    finally:
        lt.close()


def test_a_loop_watched_from_its_thread_stops_cleanly(tracked):
    # Its stop reaches the watchdog: a stopped loop is never taken for a
    # blocked one, and nothing is left watching it.
    lt = _LoopThread("stopping-loop")
    try:
        lt.run(_noop())
        watchdog.clear_block_episodes()
        with taskleak.watch_blocking(0.1) as w:
            lt.run(_noop())
            assert any("stopping-loop" in g[0] for g in watchdog.loop_gauges()), watchdog.loop_gauges()
            lt.close()
            time.sleep(BLOCK + 0.1)  # stopped, not blocked
            assert w.episodes() == []
            assert not any(blocked for _, blocked, _ in watchdog.loop_gauges())
    finally:
        if not lt.loop.is_closed():
            lt.close()
