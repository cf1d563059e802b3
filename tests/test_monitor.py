"""taskleak.Monitor on live loops: leaks caught and attributed, allow-list
budgets, done-retained growth, RSS-only growth, uvloop, loops in threads,
and a clean stop."""

import asyncio
import gc
import json
import logging
import mmap
import os
import re
import subprocess
import sys
import threading
import time

import pytest

import taskleak

# Small windows so a test needs tens of samples, not hundreds; the rules are
# the production ones (tests/test_detector.py covers the defaults), and the
# seed's count rules are on (count_rules=True) where a test is about them.
FAST = dict(window=5, detector_options=dict(trend_blocks=3, min_rise=3, horizon=60), count_rules=True)


class LoopThread:
    """An event loop running in a thread of its own."""

    def __init__(self, factory=asyncio.new_event_loop, name="loop-thread"):
        if factory is not asyncio.new_event_loop and hasattr(asyncio, "Runner"):
            # How uvloop.run() builds its loop; tracking adopts loops made by a
            # Runner (a bare uvloop loop + run_forever() is not seen on 3.14+).
            self.runner = asyncio.Runner(loop_factory=factory)
            self.loop = self.runner.get_loop()
        else:
            self.loop = factory()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        async def cancel_all():
            me = asyncio.current_task()
            ts = [t for t in asyncio.all_tasks() if t is not me]
            for t in ts:
                t.cancel()
            await asyncio.gather(*ts, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def lt():
    taskleak.install()
    t = LoopThread()
    yield t
    t.close()


HELD = []


async def stuck():
    await asyncio.Event().wait()


async def spawn_leak(n):
    for _ in range(n):
        HELD.append(asyncio.create_task(stuck()))  # LEAK-SITE


async def finish_and_keep(n):
    async def work():
        return 1

    for _ in range(n):
        t = asyncio.create_task(work())
        HELD.append(t)
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def churn():
    # Load that comes and goes: tasks that finish.
    await asyncio.gather(*(asyncio.sleep(0) for _ in range(20)))


LEAK_LINE = next(i for i, line in enumerate(open(__file__), 1) if "# LEAK-SITE" in line and "HELD" in line)


@pytest.fixture(autouse=True)
def clear_held():
    yield
    HELD.clear()
    gc.collect()


def drive(mon, lt, steps, step):
    """Take `steps` samples, running `step(i)` on the loop before each."""
    for i in range(steps):
        lt.run(step(i))
        mon.sample_now()


def test_steady_leak_is_caught_and_attributed_to_its_line(lt):
    mon = taskleak.Monitor(**FAST)
    drive(mon, lt, 20, lambda i: churn())
    assert mon.alerts() == []
    drive(mon, lt, 60, lambda i: spawn_leak(2))
    alerts = mon.alerts()
    assert alerts, [s.pending for s in mon.samples()]
    signals = {a.signal for a in alerts}
    assert "pending" in signals
    a = next(a for a in alerts if a.signal == "pending")
    assert a.anomaly.kind in ("spike", "trend")
    g = a.groups[0]
    assert g.site.endswith(f"test_monitor.py:{LEAK_LINE} in spawn_leak"), g
    assert g.coro == "stuck" and g.growth > 0 and g.pending >= 6
    assert g.orphaned is True and "Event.wait" in (g.waiting_on or "")
    assert f"test_monitor.py:{LEAK_LINE} in spawn_leak" in a.text
    # One alert per signal per episode, not one per sample.
    assert sum(1 for a in alerts if a.signal == "pending") == 1
    s = mon.latest()
    assert s.pending >= 120 and s.groups[0].label.startswith(g.site)


def test_allowlist_budget_hides_one_heartbeat_not_a_leaking_one(lt):
    async def heartbeat():
        await asyncio.Event().wait()

    async def connect(i):
        HELD.append(asyncio.create_task(heartbeat(), name=f"heartbeat-{i}"))

    mon = taskleak.Monitor(allow=[{"heartbeat-*": 1}], **FAST)
    lt.run(connect(0))
    drive(mon, lt, 25, lambda i: churn())
    s = mon.latest()
    assert s.allowlisted_pending == 1 and s.pending >= 1
    assert mon.alerts() == []
    # Only this test's group: other tests' finished heartbeats may still be alive.
    hb = next(g for g in s.groups if g.coro.endswith("heartbeat") and "test_monitor.py" in g.site)
    assert hb.allowlisted
    assert 'allowlisted="true"' in mon.metrics_text()
    # Now a heartbeat per connection: over budget, and it is caught.
    drive(mon, lt, 60, lambda i: connect(i + 1))
    assert any("heartbeat" in a.text for a in mon.alerts()), [a.text for a in mon.alerts()]
    assert mon.latest().allowlisted_pending == 1


def test_allowlist_without_budget_excludes_the_tasks(lt):
    mon = taskleak.Monitor(allow=("*stuck*",), **FAST)
    drive(mon, lt, 60, lambda i: spawn_leak(2))
    assert mon.latest().allowlisted_pending >= 100
    assert not any(a.signal in ("pending",) for a in mon.alerts())


def test_bad_allowlist_entries_are_refused():
    with pytest.raises(TypeError):
        taskleak.Monitor(allow=[42])
    with pytest.raises(ValueError):
        taskleak.Monitor(allow=[{"x*": -1}])
    with pytest.raises(ValueError):
        taskleak.Monitor(interval=0)


def test_done_retained_growth(lt):
    mon = taskleak.Monitor(**FAST)
    drive(mon, lt, 15, lambda i: churn())
    drive(mon, lt, 60, lambda i: finish_and_keep(3))
    s = mon.latest()
    assert s.done_retained >= 150
    assert any(a.signal == "done_retained" for a in mon.alerts()), [a.signal for a in mon.alerts()]
    a = next(a for a in mon.alerts() if a.signal == "done_retained")
    assert "finished tasks still referenced" in a.text


def test_rss_growth_without_tasks_is_memory_growth(lt):
    mon = taskleak.Monitor(rss_min_rise=8 << 20, **FAST)
    ballast = []
    drive(mon, lt, 15, lambda i: churn())

    def grow(i):
        # Fresh pages from the kernel, touched: they count in RSS whatever
        # the allocator holds from earlier tests (under ASan, a quarantine
        # of freed memory that a bytearray would be carved from).
        ballast.append(mmap.mmap(-1, 4 << 20))
        ballast[-1][::4096] = b"x" * len(ballast[-1][::4096])
        return churn()

    drive(mon, lt, 60, grow)
    rss = [a for a in mon.alerts() if a.signal == "rss"]
    assert rss, [s.rss_bytes for s in mon.samples()]
    assert "not a task leak" in rss[0].text
    assert not any(a.signal in ("pending", "done_retained") for a in mon.alerts())


def test_uvloop_loop():
    uvloop = pytest.importorskip("uvloop")
    taskleak.install()
    t = LoopThread(uvloop.new_event_loop, name="uv")
    try:
        mon = taskleak.Monitor(**FAST)
        drive(mon, t, 60, lambda i: spawn_leak(2))
        s = mon.latest()
        assert s.pending >= 120
        assert any(a.signal == "pending" for a in mon.alerts())
        assert "uv" in s.loop_lags
    finally:
        t.close()


def test_several_loops_in_threads_are_counted_and_probed():
    taskleak.install()
    loops = [LoopThread(name=f"worker-{i}") for i in range(3)]
    try:
        for t in loops:
            t.run(spawn_leak(5))
        mon = taskleak.Monitor(**FAST)
        mon.sample_now()
        s = mon.sample_now()
        assert s.pending >= 15
        assert {"worker-0", "worker-1", "worker-2"} <= set(s.loop_lags)
        assert all(0 <= v < 5 for v in s.loop_lags.values())
    finally:
        for t in loops:
            t.close()


def _native_threads():
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None


def test_start_stop_leaves_no_thread_behind(lt, caplog):
    before_native, before_py = _native_threads(), set(threading.enumerate())
    mon = taskleak.Monitor(interval=0.01, **FAST)
    with mon:
        assert mon.running
        lt.run(spawn_leak(3))
        deadline = time.monotonic() + 20
        while len(mon.samples()) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(mon.samples()) >= 5
        if before_native is not None:
            assert _native_threads() == before_native + 1
    assert not mon.running
    n = len(mon.samples())
    time.sleep(0.1)
    assert len(mon.samples()) == n  # no sampling after stop()
    assert set(threading.enumerate()) == before_py
    if before_native is not None:
        assert _native_threads() == before_native
    mon.stop()  # idempotent


def test_on_alert_is_called_off_the_loop_and_its_errors_are_logged(lt, caplog):
    seen = []

    def on_alert(a):
        seen.append((a.signal, threading.get_ident()))
        raise RuntimeError("boom from on_alert")

    mon = taskleak.Monitor(on_alert=on_alert, **FAST)
    with caplog.at_level(logging.WARNING, logger="taskleak"):
        drive(mon, lt, 60, lambda i: spawn_leak(2))
    assert seen and all(ident != lt.thread.ident for _, ident in seen)
    assert "on_alert callback raised" in caplog.text
    assert "suspected task leak" in caplog.text


def test_sampler_thread_runs_the_callback_and_alerts(lt):
    # The real thing: the native thread samples on its own clock.
    alerts = []
    mon = taskleak.Monitor(interval=0.02, on_alert=alerts.append, **FAST)
    with mon:
        for _ in range(80):
            lt.run(spawn_leak(2))
            time.sleep(0.02)
    assert len(mon.samples()) >= 20
    assert any(a.signal == "pending" for a in alerts)


def test_jsonl_log_has_one_json_object_per_line(lt, tmp_path):
    path = tmp_path / "samples.jsonl"
    mon = taskleak.Monitor(jsonl=str(path), **FAST)
    with mon:
        pass
    # sample_now() also writes through the exporters of a started monitor.
    mon.start()
    for _ in range(3):
        mon.sample_now()
    mon.stop()
    lines = path.read_text().splitlines()
    assert len(lines) >= 3
    recs = [json.loads(line) for line in lines]
    assert all(r["type"] == "sample" and "pending" in r and "groups" in r for r in recs)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_losses_are_counted(lt):
    mon = taskleak.Monitor(**FAST)
    mon.sample_now()

    async def fail():
        raise ValueError("nobody reads this")

    async def make():
        asyncio.create_task(fail())
        await asyncio.sleep(0.01)

    lt.run(make())
    gc.collect()
    lt.run(asyncio.sleep(0.01))
    s = mon.sample_now()
    assert s.losses["never-retrieved"] >= 1
    assert 'taskleak_asyncio_task_losses_total{kind="never-retrieved"}' in mon.metrics_text()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_running_monitor_of_its_own():
    # What a pre-forking server (gunicorn --preload) does after the master
    # started a monitor: the child's sampler thread did not survive the fork.
    mon = taskleak.Monitor(interval=0.01)
    mon.start()
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            ok = 0
            try:
                n = len(mon.samples())
                deadline = time.monotonic() + 10
                while len(mon.samples()) < n + 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
                ok = int(mon.running and len(mon.samples()) >= n + 3)
                mon.stop()
                ok = ok and int(not mon.running)
            finally:
                os.write(w, str(ok).encode())
                os._exit(0)
        os.close(w)
        got = os.read(r, 10)
        os.waitpid(pid, 0)
        assert got == b"1"
    finally:
        mon.stop()


FORK_WHILE_THE_SAMPLER_WAITS = """
import os, sys, time, taskleak
mon = taskleak.Monitor(interval=1.0).start()
time.sleep(0.2)                # the sampler thread now waits on its condition variable
pid = os.fork()
if pid == 0:
    time.sleep(0.2)
    mon.stop()
    sys.exit(0)                # a normal exit: the inherited sampler is freed
_, status = os.waitpid(pid, 0)
mon.stop()
print("exit", status)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_while_the_sampler_waits_never_hangs_parent_or_child():
    # The child inherits the condition variable with the parent's sampler
    # thread registered as a waiter; destroying it there used to block
    # forever inside glibc (found by issue 11's agent fork test).
    r = subprocess.run([sys.executable, "-c", FORK_WHILE_THE_SAMPLER_WAITS], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "exit 0"


def test_stop_from_on_alert_is_safe(lt):
    # on_alert runs on the sampler thread: stopping the monitor from there
    # must neither deadlock (joining itself) nor free the running sampler.
    done = threading.Event()
    holder = {}

    def on_alert(a):
        holder["mon"].stop()
        done.set()

    mon = holder["mon"] = taskleak.Monitor(interval=0.01, on_alert=on_alert, **FAST)
    before = _native_threads()
    mon.start()
    for _ in range(200):
        if done.is_set():
            break
        lt.run(spawn_leak(2))
        time.sleep(0.01)
    assert done.wait(10)
    assert not mon.running
    n = len(mon.samples())
    deadline = time.monotonic() + 10
    while before is not None and _native_threads() != before and time.monotonic() < deadline:
        time.sleep(0.01)
    if before is not None:
        assert _native_threads() == before
    time.sleep(0.05)
    assert len(mon.samples()) == n


def test_a_task_whose_done_callbacks_are_queued_is_not_retained(tracked):
    """A task that finished this loop iteration is still referenced by the
    handles of its done callbacks until they run: not a leak. One that is
    still referenced a sample later is."""
    from taskleak import _core

    async def work():
        return 1

    loop = asyncio.new_event_loop()
    try:
        kept = loop.create_task(work())
        passing = loop.create_task(work())
        passing.add_done_callback(lambda t: None)
        loop.call_soon(loop.stop)
        loop.run_forever()  # one iteration: both finish, callbacks queued
        assert kept.done() and passing.done() and len(loop._ready) > 0
        del passing  # now held only by its queued callbacks
        first = _core.tally_tasks(0)
        loop.call_soon(loop.stop)
        loop.run_forever()  # the callbacks run and let `passing` go
        second = _core.tally_tasks(0)
    finally:
        loop.close()

    def mine(tally):  # this test's tasks only: other tests may hold finished tasks of their own
        rows = [g for g in tally["groups"] if g[1] is work.__code__]
        return sum(g[2] for g in rows), sum(g[3] for g in rows)

    assert mine(first) == (0, 0)  # neither pending nor retained: both finishing
    assert mine(second) == (0, 1)  # `kept`: done at both passes, still referenced
    del kept


def test_alerts_name_the_groups_of_their_signal_and_keep_signal_a_fixed_word(lt):
    """A pending leak and a done-retained leak at once: the pending alert
    names the pending group, the done_retained alert the group of finished
    tasks; a group's own alert is signal "group" with the group apart; the
    metrics' group labels carry no line number."""
    from taskleak.monitor.sample import SIGNALS

    mon = taskleak.Monitor(**FAST)
    drive(mon, lt, 15, lambda i: churn())

    async def both(i):
        await spawn_leak(2)
        await finish_and_keep(2)

    drive(mon, lt, 60, both)
    alerts = mon.alerts()
    assert {a.signal for a in alerts} <= set(SIGNALS)
    pending = next(a for a in alerts if a.signal == "pending")
    done = next(a for a in alerts if a.signal == "done_retained")
    assert pending.groups and all(g.coro.endswith("stuck") for g in pending.groups), pending.text
    assert done.groups and all("work" in g.coro for g in done.groups), done.text
    for a in alerts:
        assert (a.group is not None) == (a.signal == "group")
    text = mon.metrics_text()
    group_lines = [ln for ln in text.splitlines() if ln.startswith("taskleak_asyncio_group_tasks{")]
    assert group_lines and not any(re.search(r'group="[^"]*:\d+ in ', ln) for ln in group_lines), group_lines[:3]
    assert any("test_monitor.py in spawn_leak (stuck)" in ln for ln in group_lines), group_lines[:5]
    for ln in text.splitlines():
        if ln.startswith("taskleak_leak_suspected{"):
            sig = re.search(r'signal="([^"]*)"', ln).group(1)
            assert sig in SIGNALS, ln
            assert ('group="' in ln) == (sig == "group"), ln


def test_an_open_episode_exports_the_line_it_named(lt):
    mon = taskleak.Monitor(**FAST)
    drive(mon, lt, 15, lambda i: churn())
    drive(mon, lt, 60, lambda i: spawn_leak(2))
    assert any(a.signal == "pending" for a in mon.alerts())
    lines = [
        ln
        for ln in mon.metrics_text().splitlines()
        if ln.startswith("taskleak_leak_suspected{") and ln.endswith(" 1.0")
    ]
    assert lines, mon.metrics_text()
    assert any(re.search(r'site="[^"]*test_monitor.py:\d+ in spawn_leak"', ln) for ln in lines), lines
    quiet = [
        ln
        for ln in mon.metrics_text().splitlines()
        if ln.startswith("taskleak_leak_suspected{") and ln.endswith(" 0.0")
    ]
    assert not any("site=" in ln for ln in quiet), quiet


async def lose_one():
    fut = asyncio.get_running_loop().create_future()

    async def forgotten():
        await fut

    asyncio.ensure_future(forgotten())  # LOST-SITE: nothing keeps it, nothing resolves fut
    await asyncio.sleep(0)


def test_tasks_lost_to_the_collector_alert_by_themselves_naming_their_site(lt):
    """One pending task destroyed by the collector every two samples, from
    the monitor's first sample: a "lost" alert within a few samples, naming
    the creation line, while the pending count stays flat (no count rule
    could see it)."""
    lost_line = next(i for i, line in enumerate(open(__file__), 1) if "# LOST-SITE" in line)
    mon = taskleak.Monitor(**FAST)

    def step(i):
        if i % 2 == 0:
            lt.run(lose_one())
        gc.collect()
        return churn()

    drive(mon, lt, 12, step)
    lost = [a for a in mon.alerts() if a.signal == "lost"]
    assert len(lost) == 1, [a.text for a in mon.alerts()]
    a = lost[0]
    assert a.groups[0].site.endswith(f"test_monitor.py:{lost_line} in lose_one"), a.text
    assert "destroyed while pending" in a.text
    first_lost_sample = next(i for i, s in enumerate(mon.samples()) if s.losses.get("gc-pending", 0) >= 3)
    assert first_lost_sample <= 8
    assert mon.suspected()[("lost", "count")]
    assert 'taskleak_alerts_total{signal="lost",detector="count"} 1.0' in mon.metrics_text()
    assert not any(a.signal in ("pending", "done_retained") for a in mon.alerts())


def test_no_lost_alert_without_losses(lt):
    mon = taskleak.Monitor(**FAST)
    drive(mon, lt, 40, lambda i: churn())
    assert not mon.suspected()[("lost", "count")]
    assert not [a for a in mon.alerts() if a.signal == "lost"]


# -- the default pager on a real clock (interval=0.05: 200x a production 10 s) ------


async def request(lifetime):
    await asyncio.sleep(lifetime)


async def keep_alive(closed):
    await closed.wait()  # a connection that stays open for the whole test


async def held_from_start(ev):
    await ev.wait()


async def service(mon, samples, leak_every=None, stop=None):
    """A service from the monitor's first sample: requests ramping 20x over
    the first 600 samples (1 to 20 per 10 ms, each living 5-40 ms), 60
    keep-alive connections opening at once at sample 50, a burst of 300
    slower requests (0.1-0.3 s) every 150 samples; with ``leak_every``, one
    task held for good every that many samples from the start. Runs until
    the monitor has ``samples`` samples (or ``stop()``)."""
    import random

    rnd = random.Random(18)
    closed = asyncio.Event()
    conns, bursts, leaked = [], set(), 0
    tasks = set()
    while True:
        n = len(mon.samples())
        if n >= samples or (stop is not None and stop()):
            break
        rate = 1 + 19 * min(1.0, n / 600)
        for _ in range(int(rate) + (rnd.random() < rate % 1)):
            t = asyncio.create_task(request(rnd.uniform(0.005, 0.04)))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if n >= 50 and not conns:
            conns = [asyncio.create_task(keep_alive(closed)) for _ in range(60)]
        if n // 150 not in bursts and n % 150 >= 100:
            bursts.add(n // 150)
            for _ in range(300):
                t = asyncio.create_task(request(rnd.uniform(0.1, 0.3)))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        while leak_every is not None and leaked * leak_every <= n:
            HELD.append(asyncio.create_task(held_from_start(closed)))  # HELD-FROM-START
            leaked += 1
        await asyncio.sleep(0.01)
    closed.set()
    await asyncio.gather(*conns, *tasks, return_exceptions=True)


@pytest.mark.once_per_ci
def test_clean_service_with_a_ramp_connections_and_bursts_raises_no_alert_in_1400_samples(lt):
    """Issue 18: the default pager stays quiet on load - a 20x ramp from the
    start, 60 keep-alive connections at once, bursts - for 1,400 samples. The
    connections are stale (far older than any lifetime seen) and counted so,
    but a step that stays flat is not a rise.

    once_per_ci (tests/conftest.py): 70 s of samples whose quietness is the
    detectors' arithmetic, the same on every CPython; the same service is
    sampled on every version by the held-leak test below, so .ci/run runs
    this one on 3.11 and 3.15 only."""
    mon = taskleak.Monitor(interval=0.05, history=2000, log_alerts=False)
    stale_seen = []
    mon.add_exporter(type("E", (), {"on_sample": lambda self, s: stale_seen.append(s.stale)})())
    with mon:
        lt.run(service(mon, 1400), timeout=600)
    assert len(mon.samples()) >= 1400
    assert mon.alerts() == [], [a.text for a in mon.alerts()]
    # The signal did see the connections: 60 stale tasks, level.
    assert max(stale_seen) >= 60, max(stale_seen)
    assert not any(mon.suspected().values())


def start_the_loop(loop):
    loop.run_forever()  # the program's main: it runs the loop, it makes no task


LIBRARY_PROTOCOL = """
import asyncio


async def serve_connection():
    await asyncio.Event().wait()


def connection_made(loop, made):
    made.append(loop.create_task(serve_connection()))  # LIBRARY-SITE
"""


def test_a_task_a_library_callback_made_is_named_by_the_library_not_by_main(lt, tmp_path, monkeypatch):
    """uvicorn's and websockets' per-connection tasks are made by protocol
    callbacks the loop runs: no frame of the program's own made them, and
    the one that started the loop (``main`` calling ``uvicorn.run``) gave
    every such group the same site. The site is the library's line."""
    lib = tmp_path / "site-packages" / "fakelib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "protocol.py").write_text(LIBRARY_PROTOCOL)
    monkeypatch.syspath_prepend(str(tmp_path / "site-packages"))
    from fakelib import protocol

    line = next(i for i, ln in enumerate(LIBRARY_PROTOCOL.splitlines(), 1) if "LIBRARY-SITE" in ln)
    loop = asyncio.new_event_loop()
    th = threading.Thread(target=start_the_loop, args=(loop,), daemon=True)
    th.start()
    made = []
    loop.call_soon_threadsafe(protocol.connection_made, loop, made)  # as the loop runs a protocol's callback
    deadline = time.monotonic() + 10
    while not made and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        mon = taskleak.Monitor(interval=3600, log_alerts=False)
        g = next(g for g in mon.sample_now().groups if g.coro == "serve_connection")
    finally:
        loop.call_soon_threadsafe(made[0].cancel)
        loop.call_soon_threadsafe(loop.stop)
        th.join(10)
        loop.close()
    assert g.site == f"fakelib/protocol.py:{line} in connection_made", g.site


async def member_handler(reader, writer):
    await reader.read()  # a client that stays connected and says nothing
    writer.close()


async def clients_arriving(mon, samples, every, stay, heartbeat=None):
    """A loopback server and a client that connects every ``every`` samples
    and stays ``stay`` samples (None: for the rest of the test); with
    ``heartbeat``, each connection starts it as a task that nobody cancels."""
    server = await asyncio.start_server(heartbeat or member_handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    open_conns = []  # (sample it closes at, writer)
    arrived = 0
    try:
        while len(mon.samples()) < samples and not mon.alerts():
            n = len(mon.samples())
            if n >= arrived * every:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                open_conns.append((n + stay if stay is not None else None, w))
                arrived += 1
            for at, w in [c for c in open_conns if c[0] is not None and c[0] <= n]:
                w.close()
                open_conns.remove((at, w))
            await asyncio.sleep(0.01)
    finally:
        for _, w in open_conns:
            w.close()
        server.close()
    return arrived


def test_clients_that_arrive_one_by_one_and_stay_raise_no_alert(lt, caplog):
    """Persistent clients arriving one every 20 samples (a chat's members, a
    device fleet) add a handler task each that lives as long as its
    connection: as stale, and rising as steadily, as a slow leak (without
    the open descriptors this alerted at sample ~204: uvicorn's WebSocket
    tasks did the same). Each new stale task came with a new open socket, so
    no alert; the stale signal still counts them."""
    mon = taskleak.Monitor(interval=0.05, history=1000)
    with caplog.at_level(logging.INFO, logger="taskleak"), mon:
        arrived = lt.run(clients_arriving(mon, 330, every=20, stay=None), timeout=300)
    samples = mon.samples()
    assert mon.alerts() == [], [a.text for a in mon.alerts()]
    assert arrived >= 15
    stale = [next((g.stale for g in s.groups if g.coro == "member_handler"), 0) for s in samples]
    assert max(stale) >= 10, stale
    fds = [s.open_fds for s in samples]
    assert None not in fds and fds[-1] - fds[0] >= 2 * 14, fds  # a socket each side
    # Why the growing group did not page, told once (not at every block).
    told = [r.getMessage() for r in caplog.records if "connections being kept" in r.getMessage()]
    assert len(told) == 1 and "(member_handler)" in told[0], told


def test_a_leak_beside_arriving_clients_still_alerts(lt):
    """The descriptors explain only as many stale tasks as they rose by: one
    task held every 4 samples, beside a client arriving every 20 samples and
    staying, is named."""
    line = next(i for i, ln in enumerate(open(__file__), 1) if ln.strip().startswith("HELD.append") and "CLIENTS" in ln)
    mon = taskleak.Monitor(interval=0.05, history=1000, log_alerts=False)

    async def both():
        closed = asyncio.Event()

        async def leak():
            while not mon.alerts() and len(mon.samples()) < 400:
                HELD.append(asyncio.create_task(held_from_start(closed)))  # HELD-BESIDE-CLIENTS
                n = len(mon.samples())
                while len(mon.samples()) < n + 4 and not mon.alerts():
                    await asyncio.sleep(0.01)

        await asyncio.gather(clients_arriving(mon, 400, every=20, stay=None), leak())
        closed.set()

    with mon:
        lt.run(both(), timeout=300)
    alerts = mon.alerts()
    assert alerts, [s.stale for s in mon.samples()]
    a = alerts[0]
    assert a.signal == "stale" and a.groups[0].coro == "held_from_start", a.text
    assert f"test_monitor.py:{line} in " in a.groups[0].site, a.text
    print(f"leak beside clients: alerted at sample {[s.time for s in mon.samples()].index(a.time)}")


async def heartbeat_of(reader, writer):
    asyncio.create_task(keep_beating())  # HEARTBEAT-LEAK: never cancelled
    await reader.read()
    writer.close()


async def keep_beating():
    while True:
        await asyncio.sleep(0.02)


def test_heartbeats_outliving_their_connections_alert(lt):
    """The classic per-connection leak: each connection starts a heartbeat
    task nobody cancels when it closes. Connections come and go, so the open
    descriptors stay level while the heartbeats pile up: no connection
    explains them, and the stale alert names the heartbeat's line."""
    line = next(i for i, ln in enumerate(open(__file__), 1) if "# HEARTBEAT-LEAK" in ln and "create_task" in ln)
    mon = taskleak.Monitor(interval=0.05, history=1000, log_alerts=False)
    with mon:
        lt.run(clients_arriving(mon, 400, every=10, stay=5, heartbeat=heartbeat_of), timeout=300)
    alerts = mon.alerts()
    assert alerts, [s.stale for s in mon.samples()]
    a = alerts[0]
    assert a.signal == "stale" and a.groups[0].coro == "keep_beating", a.text
    assert a.groups[0].site.endswith(f"test_monitor.py:{line} in heartbeat_of"), a.text
    print(f"heartbeat leak: alerted at sample {[s.time for s in mon.samples()].index(a.time)}")


HUNG_HANDLERS = []


async def hangs_now_and_then(reader, writer):
    line = await reader.readline()
    if line.startswith(b"hang"):
        HUNG_HANDLERS.append(asyncio.current_task())  # held, so never "lost" to the collector
        await asyncio.get_running_loop().create_future()  # HANG: nobody will ever set it
    writer.write(b"ok\n")
    writer.close()


async def impatient_clients(mon, samples):
    """Five idle clients that stay from the start (their handlers wait for a
    request line: as old as the test, and healthy), then a request every
    sample, one in ten of which hangs; each client gives up after 5 samples
    and closes, so a hung handler's socket stays open on the server side, in
    CLOSE_WAIT."""
    server = await asyncio.start_server(hangs_now_and_then, "127.0.0.1", 0)  # HUNG-SERVER
    port = server.sockets[0].getsockname()[1]
    idle = [(await asyncio.open_connection("127.0.0.1", port))[1] for _ in range(5)]

    async def ask(hang):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"hang\n" if hang else b"get\n")
        try:
            await asyncio.wait_for(r.readline(), 0.25)
        except asyncio.TimeoutError:
            pass
        w.close()

    asked = set()
    k = 0
    try:
        while len(mon.samples()) < samples and not mon.alerts():
            n = len(mon.samples())
            k += 1
            t = asyncio.create_task(ask(k % 10 == 0))
            asked.add(t)
            t.add_done_callback(asked.discard)
            while len(mon.samples()) == n:
                await asyncio.sleep(0.005)
    finally:
        for w in idle:
            w.close()
        server.close()
        for t in HUNG_HANDLERS:
            t.cancel()
        HUNG_HANDLERS.clear()


def test_handlers_hung_after_their_clients_left_alert_naming_the_server(lt):
    """Handlers hung on a Future nobody will set, whose clients gave up: each
    keeps its socket open, so the open descriptors rise one for one with the
    stale handlers, as they do for clients that stay. But the peer of such a
    socket has closed its side (CLOSE_WAIT): it keeps nobody's connection,
    and explains nothing. The alert names the line that started the server
    (no frame of the program made the handler's task: asyncio's protocol
    callback did)."""
    line = next(i for i, ln in enumerate(open(__file__), 1) if "# HUNG-SERVER" in ln and "start_server" in ln)
    hang = next(i for i, ln in enumerate(open(__file__), 1) if "# HANG:" in ln and "create_future" in ln)
    mon = taskleak.Monitor(interval=0.05, history=1000, log_alerts=False)
    with mon:
        lt.run(impatient_clients(mon, 400), timeout=300)
    alerts = mon.alerts()
    peer_closed = [s.peer_closed for s in mon.samples()]
    assert alerts, (peer_closed, [s.stale for s in mon.samples()])
    a = alerts[0]
    assert a.signal == "stale" and a.groups[0].coro == "hangs_now_and_then", a.text
    assert a.groups[0].site.endswith(f"test_monitor.py:{line} in impatient_clients"), a.text
    # The example is the newest stale handler: a hung one, not an idle
    # client's as old as the test, nor a request that came a moment ago.
    assert a.groups[0].chain[-1].endswith(f"test_monitor.py:{hang} in hangs_now_and_then"), a.text
    assert max(peer_closed) >= 3, peer_closed
    # Exported as a gauge of its own: the sample the alert came at.
    at = [s.time for s in mon.samples()].index(a.time)
    assert mon.samples()[at].peer_closed >= 1
    assert re.search(r"^taskleak_sockets_peer_closed \d", mon.metrics_text(), re.M), mon.metrics_text()
    print(f"hung handlers: alerted at sample {[s.time for s in mon.samples()].index(a.time)}")


def test_held_leak_from_process_start_alerts_within_120_samples_naming_its_line(lt):
    """One task held every two samples from the monitor's first sample, under
    the same ramp, connections and bursts: a "stale" alert (about pending
    tasks) within 120 samples naming the creation line."""
    line = next(i for i, ln in enumerate(open(__file__), 1) if "# HELD-FROM-START" in ln and "HELD" in ln)
    mon = taskleak.Monitor(interval=0.05, history=2000, log_alerts=False)
    with mon:
        lt.run(service(mon, 200, leak_every=2, stop=lambda: bool(mon.alerts())), timeout=600)
    alerts = mon.alerts()
    assert alerts, [s.stale for s in mon.samples()]
    a = alerts[0]
    at = [s.time for s in mon.samples()].index(a.time)
    assert a.signal == "stale" and a.anomaly.kind == "rise", a.text
    assert at <= 120, (at, a.text)
    assert a.groups[0].site.endswith(f"test_monitor.py:{line} in service"), a.text
    assert a.groups[0].coro == "held_from_start" and a.group is not None
    assert "waiting on Event.wait()" in a.text
    assert mon.suspected()[("stale", "rise")]
    assert mon.suspected_sites()[("stale", "rise")] == a.groups[0].site
    assert 'taskleak_alerts_total{signal="stale",detector="rise"} 1.0' in mon.metrics_text()
    print(f"held leak from start: alerted at sample {at}")
