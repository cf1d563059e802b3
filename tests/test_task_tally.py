"""The monitor's native task count (`_core.tally_tasks`) against the truth,
pass after pass, while tasks finish, are freed, their table slots are reused
and the table compacts; with a Task class whose state is read by attribute,
and with passes that drop the GIL between chunks. The count keeps copies of
what it saw per slot and skips the records that did not change: every one
of those events must reach it."""

from __future__ import annotations

import asyncio
import gc
import random
import time
import weakref

import pytest

import taskleak
from taskleak import _core


async def parked(ev: asyncio.Event) -> None:
    await ev.wait()


async def quick() -> int:
    return 1


OURS = {parked.__code__, quick.__code__}


@pytest.fixture
def loop():
    taskleak.install()
    taskleak.Monitor().sample_now()  # learns the C Task's layout: the count reads fields
    lp = asyncio.new_event_loop()
    yield lp
    lp.run_until_complete(asyncio.sleep(0))
    lp.close()


def _tally(max_hold_ns: int) -> tuple[int, int, int]:
    """(pending, done, pending ages counted) of this file's tasks."""
    raw = _core.tally_tasks(max_hold_ns)
    pending = done = aged = 0
    for _stack, code, p, d, _oldest, _example, ages, _lifetimes in raw["groups"]:
        if code in OURS:
            pending += p
            done += d
            if ages is not None:
                aged += sum(memoryview(ages).cast("I"))
    return pending, done, aged


@pytest.mark.parametrize("py_tasks", [False, True], ids=["c-tasks", "python-tasks-too"])
def test_the_count_follows_tasks_that_finish_go_and_reuse_slots(loop, py_tasks):
    assert _core.tally_mode() == "fields"
    if py_tasks:
        # Every third task a pure-Python Task: its state is read by attribute.
        n = [0]

        def factory(lp, coro, **kw):
            n[0] += 1
            cls = asyncio.tasks._PyTask if n[0] % 3 == 0 else asyncio.Task
            return cls(coro, loop=lp, **kw)

        loop.set_task_factory(factory)
    rng = random.Random(7)
    events: list[asyncio.Event] = []
    pending_tasks: list[asyncio.Task] = []  # never dropped while pending: the loop holds them anyway
    done_kept: list[asyncio.Task] = []
    done_at_last_pass: set[int] = set()

    async def step(i: int) -> None:
        ev = asyncio.Event()
        events.append(ev)
        for _ in range(rng.randrange(0, 300)):
            pending_tasks.append(asyncio.create_task(parked(ev)))
        for _ in range(rng.randrange(0, 300)):
            t = asyncio.create_task(quick())
            if rng.random() < 0.5:
                done_kept.append(t)
        if i % 7 == 6:  # a burst, then all of it gone: the table compacts
            burst = [asyncio.create_task(quick()) for _ in range(3000)]
            await asyncio.sleep(0)
            del burst
        # Some parked tasks finish; some done tasks are let go.
        for ev in rng.sample(events, k=min(len(events), 2)):
            ev.set()
        for _ in range(3):
            await asyncio.sleep(0)
        rng.shuffle(done_kept)
        del done_kept[: len(done_kept) // 3]
        still = []
        for t in pending_tasks:
            if t.done():
                if rng.random() < 0.5:
                    done_kept.append(t)
            else:
                still.append(t)
        pending_tasks[:] = still

    for i in range(40):
        loop.run_until_complete(step(i))
        gc.collect()
        pending, done, aged = _tally(1 if i % 2 else 0)  # odd passes drop the GIL every few hundred slots
        truth_pending = len(pending_tasks)
        truth_done = sum(1 for t in done_kept if id(t) in done_at_last_pass)
        assert (pending, done, aged) == (truth_pending, truth_done, truth_pending), f"pass {i}"
        done_at_last_pass = {id(t) for t in done_kept}
    for ev in events:
        ev.set()
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0))


def test_tasks_freed_while_the_count_reads_without_the_gil(loop):
    """The count reads the states of unchanged tasks with the GIL released.
    Another thread's loop frees its tasks meanwhile: a task freed between
    the count's look at the table and its read must be skipped, never read
    (under ASan, with PYTHONMALLOC=malloc, reading one is a reported
    use-after-free), and once the churn stops the count is exact again.
    The read pauses inside each 64-slot word, so the other thread surely
    runs while it does (and, freeing a task in that very word, waits)."""
    import threading

    ev = asyncio.Event()
    ours = [loop.create_task(parked(ev)) for _ in range(20_000)]
    loop.run_until_complete(asyncio.sleep(0))
    stop = threading.Event()

    async def churn() -> None:
        # Tasks that live across passes, created and freed all the time.
        # (Passes are slow here: the pause below, and the GIL coming back
        # to the counting thread only every 0.1-2 s while a loop runs flat
        # out in this one, as CPython's GIL does.)
        rng = random.Random(3)
        while not stop.is_set():
            for _ in range(50):
                asyncio.ensure_future(asyncio.sleep(rng.uniform(0.05, 1.5)))
            await asyncio.sleep(0.005)
        await asyncio.sleep(1.6)

    th = threading.Thread(target=lambda: asyncio.run(churn()))
    th.start()
    gone = passes = 0
    _core._set_tally_read_pause(1_000_000)
    try:
        deadline = time.monotonic() + 60
        while gone < 20 and time.monotonic() < deadline:
            gone += _core.tally_tasks(0)["gone_during_read"]
            passes += 1
    finally:
        _core._set_tally_read_pause(0)
        stop.set()
        th.join()
    gc.collect()
    _core.tally_tasks(0)  # the churn's last tasks finish or go
    assert gone >= 20, f"only {gone} tasks were freed during a read in {passes} passes"
    assert _tally(0) == (20_000, 0, 20_000)
    ev.set()
    loop.run_until_complete(asyncio.gather(*ours))


_FORK_WHILE_COUNTING = r"""
import asyncio, os, signal, sys, threading, time, warnings
import taskleak
from taskleak import _core

warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, on purpose
taskleak.install()
taskleak.Monitor().sample_now()
loop = asyncio.new_event_loop()
loop.set_exception_handler(lambda lp, ctx: None)  # the child drops pending tasks on purpose

async def parked(ev):
    await ev.wait()

ev = asyncio.Event()
tasks = [loop.create_task(parked(ev)) for _ in range(50_000)]
loop.run_until_complete(asyncio.sleep(0))
stop = False

def count():
    while not stop:
        _core.tally_tasks(0)

th = threading.Thread(target=count)
th.start()
bad = 0
for _ in range(int(sys.argv[1])):
    time.sleep(0.0007)
    pid = os.fork()
    if pid == 0:
        # A child that hangs must not outlive a failed run: nothing else
        # would ever reap it once this script is killed by its timeout.
        signal.alarm(15)
        # The counting thread is gone here, maybe halfway through a read
        # without the GIL: counting and freeing tasks must still work.
        r = _core.tally_tasks(0)
        del tasks[:25_000]
        ev.set()
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))
        r2 = _core.tally_tasks(0)
        os._exit(0 if r["pending"] == 50_000 and r2["pending"] == 0 else 3)
    deadline = time.monotonic() + 10
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            bad += os.waitstatus_to_exitcode(status) != 0
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            bad += 1
            break
        time.sleep(0.01)
stop = True
th.join()
print("bad", bad)
"""


def test_a_fork_while_another_thread_counts_leaves_a_working_child():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _FORK_WHILE_COUNTING, "20"], capture_output=True, text=True, timeout=400
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["bad", "0"], out.stdout + out.stderr[-2000:]


def make(ev: asyncio.Event, n: int) -> list[asyncio.Task]:
    """n tasks parked on `ev`, all made at one line: one group."""
    return [asyncio.create_task(parked(ev)) for _ in range(n)]


@pytest.mark.parametrize("passes", [1, 2], ids=["first-sight", "from-hot-copies"])
def test_a_groups_example_is_its_oldest_pending_task(loop, passes):
    """The example a stale alert describes is a stale task: the group's
    oldest pending one, wherever its table slot lies. Slots of finished
    tasks are reused, so the newest tasks sit in the lowest slots here, and
    the first pending task in slot order would be one that came a moment
    ago. A second pass reads the tasks from its hot copies."""

    async def main() -> tuple[list[asyncio.Task], list[asyncio.Task]]:
        evs = [asyncio.Event() for _ in range(3)]
        made: list[asyncio.Task] = []
        oldest: list[asyncio.Task] = []
        for batch, ev in enumerate([evs[0], evs[1], evs[2], evs[2]]):
            if batch == 3:
                # The first two batches finish and go: their slots are free,
                # and the last batch takes them.
                evs[0].set()
                evs[1].set()
                await asyncio.gather(*made[:80])
                gone = [weakref.ref(t) for t in made[:80]]
                del made[:80]
                for _ in range(2):
                    await asyncio.sleep(0)  # the loop's handles of their callbacks let go of them
                gc.collect()
                assert not any(r() for r in gone)
            made += make(ev, 80 if batch == 3 else 40)
            if batch == 2:
                oldest = made[80:]  # made within a millisecond or so: their creation times tie
            await asyncio.sleep(0.01)
        return oldest, made

    oldest, made = loop.run_until_complete(main())
    try:
        for _ in range(passes):
            groups = [g for g in _core.tally_tasks(0)["groups"] if g[1] is parked.__code__ and g[2] + g[3] > 0]
        assert len(groups) == 1 and groups[0][2] == 120, groups
        example = groups[0][5]
        assert example is not None and any(example() is t for t in oldest)
    finally:
        for t in made:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*made, return_exceptions=True))


def test_a_group_with_stale_tasks_gives_its_newest_stale_one_as_example(loop):
    """Given the group's stale threshold, its example is the newest task at
    least that old: the kind that made the stale count rise (a request that
    hung), not the oldest pending one (a keep-alive connection as old as the
    process) nor one that came a moment ago."""

    async def main() -> list[list[asyncio.Task]]:
        ev = asyncio.Event()
        batches = []
        for n in (20, 3, 20):  # old ones, then the hung ones, then fresh ones
            batches.append(make(ev, n))
            if len(batches) < 3:
                await asyncio.sleep(0.3)
        return batches

    old, hung, fresh = loop.run_until_complete(main())
    try:
        [group] = [g for g in _core.tally_tasks(0)["groups"] if g[1] is parked.__code__ and g[2] > 0]
        stack = group[0]
        assert any(group[5]() is t for t in old)  # no threshold given: the oldest pending ones
        # Stale after 150 ms: the old and the hung ones are, the fresh ones are not.
        [group] = [g for g in _core.tally_tasks(0, [(stack, parked.__code__, 150.0)])["groups"] if g[0] == stack]
        assert any(group[5]() is t for t in hung)  # made within a millisecond: any of them
        # A threshold no task reaches: the oldest pending one again.
        [group] = [g for g in _core.tally_tasks(0, [(stack, parked.__code__, 3.6e6)])["groups"] if g[0] == stack]
        assert any(group[5]() is t for t in old)
    finally:
        every = old + hung + fresh
        for t in every:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*every, return_exceptions=True))
