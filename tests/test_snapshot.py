"""snapshot(): every task, full await chains, wait targets, filters, reports."""

import asyncio
import concurrent.futures
import gc
import json
import subprocess
import sys
import threading

import pytest

import taskleak
from taskleak.frame import creation_site


def fn(frame):
    return frame.function.rsplit(".", 1)[-1]


async def settle():
    for _ in range(3):
        await asyncio.sleep(0)


def by_name(snap):
    return {t.name: t for t in snap}


async def deep_inner(ev):
    await ev.wait()


async def deep_middle(ev):
    await deep_inner(ev)


async def deep_outer(ev):
    await deep_middle(ev)


# Task bodies shared by the census tests: parked, parked three calls deep,
# failed at once.
async def parked(ev):
    await ev.wait()


async def deep(ev):
    await deep_outer(ev)


async def fails():
    raise ValueError("x")


def test_stack_is_the_full_await_chain(tracked):
    async def main():
        ev = asyncio.Event()
        t = asyncio.create_task(deep_outer(ev), name="deep")
        await settle()
        info = by_name(taskleak.snapshot())["deep"]
        ev.set()
        await t
        return info

    info = asyncio.run(main())
    assert [fn(f) for f in info.stack] == ["deep_outer", "deep_middle", "deep_inner", "wait"]
    assert info.stack[2].lineno == deep_inner.__code__.co_firstlineno + 1
    assert info.waiting_on == "Event.wait()"
    assert info.state == "pending"  # as of the snapshot, not now


def test_creation_site_parent_age_and_thread(tracked):
    async def child():
        await asyncio.sleep(10)

    async def main():
        line = main.__code__.co_firstlineno + 2
        t = asyncio.create_task(child(), name="kid")
        await settle()
        snap = taskleak.snapshot()
        t.cancel()
        return line, by_name(snap), asyncio.current_task().get_name()

    line, snap, me = asyncio.run(main())
    kid = snap["kid"]
    user = creation_site(kid.created_at)  # without asyncio's and taskleak's own frames
    assert user[0].lineno == line and fn(user[0]) == "main"
    assert kid.parent == me
    assert 0 <= kid.age_s < 5
    assert kid.thread == threading.get_ident()
    assert kid.created_at[0].filename.endswith("py")
    assert (
        str(kid.created_at[0])
        == f"{kid.created_at[0].filename}:{kid.created_at[0].lineno} in {kid.created_at[0].function}"
    )


async def _wait_targets():
    loop = asyncio.get_running_loop()
    ev = asyncio.Event()
    lock = asyncio.Lock()
    await lock.acquire()
    sem = asyncio.Semaphore(0)
    cond = asyncio.Condition()
    q_empty = asyncio.Queue()
    q_full = asyncio.Queue(maxsize=1)
    q_full.put_nowait(1)
    fut = loop.create_future()
    blocker = asyncio.create_task(asyncio.sleep(100), name="blocker")

    async def on_cond():
        async with cond:
            await cond.wait()

    async def on_task():
        await blocker

    async def on_gather():
        await asyncio.gather(asyncio.sleep(100), asyncio.sleep(0))

    pool = concurrent.futures.ThreadPoolExecutor(1)
    release = threading.Event()

    async def on_executor():
        await loop.run_in_executor(pool, release.wait)

    server_side = []  # 3.13+ closes a StreamWriter that is garbage collected
    server = await asyncio.start_server(lambda r, w: server_side.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def on_stream():
        await reader.readline()

    async def on_future():
        await fut

    shielded = loop.create_future()

    async def on_shield():
        await asyncio.shield(shielded)

    coros = {
        "sleep": asyncio.sleep(50),
        "event": ev.wait(),
        "lock": lock.acquire(),
        "sem": sem.acquire(),
        "cond": on_cond(),
        "qget": q_empty.get(),
        "qput": q_full.put(2),
        "task": on_task(),
        "gather": on_gather(),
        "executor": on_executor(),
        "stream": on_stream(),
        "future": on_future(),
        "shield": on_shield(),
    }
    tasks = [asyncio.create_task(c, name=n) for n, c in coros.items()]
    await asyncio.sleep(0.05)
    waits = {t.name: t.waiting_on for t in taskleak.snapshot() if t.name in coros}
    for t in tasks + [blocker]:
        t.cancel()
    await asyncio.gather(*tasks, blocker, return_exceptions=True)
    release.set()
    pool.shutdown()
    writer.close()
    for w in server_side:
        w.close()
    server.close()
    await server.wait_closed()
    return waits


def test_waiting_on_names_the_leaf(tracked):
    waits = asyncio.run(_wait_targets())
    assert waits["sleep"].startswith("asyncio.sleep() (") and waits["sleep"].endswith("s left)")
    left = float(waits["sleep"].split("(")[2].split("s")[0])
    assert 45 < left <= 50
    assert waits["event"] == "Event.wait()"
    assert waits["lock"] == "Lock.acquire()"
    assert waits["sem"] == "Semaphore.acquire()"
    assert waits["cond"] == "Condition.wait()"
    assert waits["qget"] == "Queue.get() (queue empty)"
    assert waits["qput"] == "Queue.put() (queue full)"
    assert waits["task"] == "task 'blocker' (sleep())"
    assert waits["gather"] == "gather() of 2 (1 done)"
    assert waits["executor"] == "an executor job (run_in_executor)"
    assert waits["stream"] == "stream read (readline)"
    assert waits["future"].startswith("a Future awaited at ") and "test_snapshot.py" in waits["future"]
    assert waits["shield"].startswith("a Future awaited at ")  # the kind says shield: see below


def test_a_shield_is_told_by_its_first_callback(tracked):
    # shield() adds _outer_done_callback to its outer future before anyone
    # can await it; a plain future awaited by many tasks is not a shield.
    async def main():
        loop = asyncio.get_running_loop()
        inner, shared = loop.create_future(), loop.create_future()

        async def on_shield():
            await asyncio.shield(inner)

        async def on_shared():
            await shared

        ts = [asyncio.create_task(on_shield(), name="shield")]
        ts += [asyncio.create_task(on_shared(), name=f"shared-{i}") for i in range(300)]
        await asyncio.sleep(0.01)
        kinds = {t.name: t.wait.kind for t in taskleak.snapshot() if t.name in ("shield", "shared-0", "shared-299")}
        for t in ts:
            t.cancel()
        await asyncio.gather(*ts, return_exceptions=True)
        return kinds

    assert asyncio.run(main()) == {"shield": "shield", "shared-0": "future", "shared-299": "future"}


def test_pending_since_and_grouping(tracked):
    async def sleeper():
        await asyncio.sleep(100)

    async def waiter(ev):
        await ev.wait()

    async def main():
        ev = asyncio.Event()
        before = taskleak.snapshot()
        ts = [asyncio.create_task(sleeper()) for _ in range(5)]
        ts += [asyncio.create_task(waiter(ev)) for _ in range(3)]
        done = asyncio.create_task(asyncio.sleep(0))
        await settle()
        after = taskleak.snapshot()
        new = after.since(before)
        pend = new.pending()
        text = pend.format()
        groups = [len(g) for g in pend.groups()]
        d = json.loads(json.dumps(after.to_dict()))
        for t in ts:
            t.cancel()
        await asyncio.gather(*ts, return_exceptions=True)
        return done, new, pend, text, groups, d

    done, new, pend, text, groups, d = asyncio.run(main())
    assert len(new) == 9  # 8 pending + 1 finished, none from before
    assert len(pend) == 8
    assert groups == [5, 3]
    assert text.index("5 tasks, pending, ") < text.index("3 tasks, pending, ")
    assert "waiting on asyncio.sleep()" in text and "waiting on Event.wait()" in text
    assert "created at:" in text and "suspended at:" in text and "test_snapshot.py" in text
    assert d["schema"] == 1 and len(d["tasks"]) >= 9
    assert {"name", "coro", "state", "age_s", "created_at", "parent", "stack", "waiting_on", "orphaned"} <= set(
        d["tasks"][0]
    )
    assert d["groups"][0]["count"] >= 5


def test_every_loop_in_every_thread(tracked):
    started = threading.Barrier(3)
    stop = threading.Event()

    def thread_main(name):
        async def main():
            t = asyncio.create_task(asyncio.sleep(100), name=f"in-{name}")
            await asyncio.sleep(0)
            started.wait()
            while not stop.is_set():
                await asyncio.sleep(0.01)
            t.cancel()

        asyncio.run(main())

    threads = [threading.Thread(target=thread_main, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    started.wait()
    snap = by_name(taskleak.snapshot())
    stop.set()
    for t in threads:
        t.join()
    assert snap["in-a"].created_at is not None and snap["in-b"].created_at is not None
    assert snap["in-a"].thread != snap["in-b"].thread
    assert snap["in-a"].thread in {t.ident for t in threads}


def test_runner_new_event_loop_and_combinators_are_tracked(tracked):
    import sys

    seen = {}

    async def leaf():
        await asyncio.sleep(0)
        return 1

    async def main():
        inner_tasks = []
        await asyncio.gather(leaf(), leaf())
        await asyncio.wait_for(leaf(), 1)
        f = asyncio.ensure_future(leaf())
        inner_tasks.append(f)
        await f
        if sys.version_info >= (3, 11):
            async with asyncio.TaskGroup() as tg:
                inner_tasks.append(tg.create_task(leaf()))
        return inner_tasks

    if sys.version_info >= (3, 11):
        with asyncio.Runner() as r:
            tasks = r.run(main())
    else:
        tasks = asyncio.run(main())
    loop = asyncio.new_event_loop()
    try:
        t = loop.create_task(leaf())
        loop.run_until_complete(t)
        tasks.append(t)
    finally:
        loop.close()
    from taskleak import _core

    for t in tasks:
        seen[t.get_name()] = _core.creation_info(t) is not None
    assert all(seen.values()) and len(seen) >= 2
    assert taskleak.status()["tracked_total"] > 0


def test_uvloop_tasks_are_tracked(tracked):
    import uvloop  # installed by the test environment (Makefile)

    async def main():
        assert "uvloop" in type(asyncio.get_running_loop()).__module__
        t = asyncio.create_task(deep_outer(asyncio.Event()), name="uv")
        await settle()
        info = by_name(taskleak.snapshot())["uv"]
        t.cancel()
        return info

    info = uvloop.run(main()) if hasattr(uvloop, "run") else asyncio.run(main())
    assert info.created_at is not None
    assert [fn(f) for f in info.stack][:3] == ["deep_outer", "deep_middle", "deep_inner"]
    assert info.waiting_on == "Event.wait()"


UVLOOP_WITHOUT_RUNNER = """
import asyncio, sys
if sys.argv[1] == "uvloop-first":
    import uvloop
import taskleak
taskleak.install()
import uvloop

async def stuck():
    await asyncio.Event().wait()

async def main():
    asyncio.get_running_loop().create_task(stuck())  # THE LEAK
    await asyncio.sleep(0.01)
    [info] = [t for t in taskleak.snapshot().pending() if t.coro == "stuck"]
    print("site", info.created_at[0].lineno if info.created_at else None)
    print("waiting", info.waiting_on)

if sys.argv[2] == "policy":  # what aiohttp's run_app does under uvloop.install()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
else:
    loop = uvloop.new_event_loop()
loop.run_until_complete(main())
"""


@pytest.mark.parametrize("order", ["uvloop-first", "taskleak-first"])
@pytest.mark.parametrize("how", ["new_event_loop", "policy"])
def test_uvloop_loops_not_made_by_a_runner_are_tracked(tmp_path, order, how):
    # On 3.14+ (no registry) a uvloop loop built outside asyncio.Runner was
    # never adopted: snapshots saw none of its tasks.
    prog = tmp_path / "uv.py"
    prog.write_text(UVLOOP_WITHOUT_RUNNER)
    leak_line = next(i for i, line in enumerate(UVLOOP_WITHOUT_RUNNER.splitlines(), 1) if "# THE LEAK" in line)
    res = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(prog), order, how],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert f"site {leak_line}" in res.stdout and "waiting Event.wait()" in res.stdout, res.stdout + res.stderr


def test_a_task_holding_a_snapshot_of_itself_is_still_collected():
    # task -> coroutine frame -> Snapshot -> native census -> task: a cycle
    # through the census, which the collector must see (tp_traverse) or the
    # task and all it holds would live forever.
    import gc
    import weakref

    async def holds_a_snapshot_of_itself():
        snap = taskleak.snapshot()  # noqa: F841 - includes this very task
        await asyncio.get_running_loop().create_future()  # never resolved

    async def main():
        t = asyncio.get_running_loop().create_task(holds_a_snapshot_of_itself(), name="selfsnap")
        ref = weakref.ref(t)
        await asyncio.sleep(0)
        t._log_destroy_pending = False
        del t
        gc.collect()
        return ref() is None

    taskleak.install()
    assert asyncio.run(main())


def test_native_group_aggregates_match_the_columns(tracked):
    # group_summary / state_summary / name_of_serial are what format() reads
    # instead of walking 100,000-int columns in Python: they must agree with
    # the columns, ties and untracked tasks included.
    from collections import Counter

    async def waiter(ev):
        await ev.wait()

    async def spawn(ev, n, out):
        out += [asyncio.create_task(waiter(ev), name=f"w-{len(out) + i}") for i in range(n)]

    async def main():
        ev = asyncio.Event()
        ts = []
        # Two parents tied on 3 children each, a third with 2, a fourth with 1;
        # and 2 tasks made with asyncio.Task() directly (untracked where the
        # factory is the mechanism, 3.14+).
        spawners = [asyncio.create_task(spawn(ev, n, ts), name=f"spawner-{n}") for n in (3, 3, 2, 1)]
        await asyncio.gather(*spawners)  # kept: finished, still referenced, in the census
        loop = asyncio.get_running_loop()
        ts += [asyncio.Task(waiter(ev), loop=loop, name=f"raw-{i}") for i in range(2)]
        done = asyncio.create_task(asyncio.sleep(0))
        await settle()
        snap = taskleak.snapshot()
        rows = [r for r in snap.rows if snap.at(r).task in ts]
        serial, parent, created = snap.column("serial"), snap.column("parent"), snap.column("created")
        got = snap.group_summary(rows, 3, 3)
        got_all = snap.group_summary(rows, 20, 20)
        states = snap.state_summary()
        state_counts = snap.state_counts()
        col_states = Counter(
            taskleak.model.task_info.STATES[s] for s in map(snap.column("state").__getitem__, snap.rows)
        )
        names = {p: snap.name_of_serial(p) for p, _ in got_all.parents}
        by_serial = {serial[i]: snap.at(i).name for i in snap.rows if serial[i]}
        expect_names = {p: by_serial.get(p) for p in names}
        missing = snap.name_of_serial(10**9)
        for t in ts:
            t.cancel()
        await asyncio.gather(*ts, return_exceptions=True)
        del done
        return (
            rows,
            serial,
            parent,
            created,
            got,
            got_all,
            states,
            state_counts,
            col_states,
            names,
            expect_names,
            missing,
        )

    rows, serial, parent, created, got, got_all, states, state_counts, col_states, names, expect_names, missing = (
        asyncio.run(main())
    )
    assert len(rows) == 11
    births = [created[i] for i in rows if created[i] >= 0]
    assert got.births == len(births)
    assert (got.min_created, got.max_created) == (min(births), max(births))
    tracked_rows = sorted((serial[i], i) for i in rows if serial[i])
    assert got.oldest == tracked_rows[:3] and got_all.oldest == tracked_rows
    assert got.untracked == [i for i in rows if not serial[i]][:3]
    expect = Counter(parent[i] for i in rows)
    expect.pop(0, None)
    assert got.parents == expect.most_common(3) and got_all.parents == expect.most_common()
    assert [n for _, n in got_all.parents][:2] == [3, 3] and got.distinct_parents == len(expect) >= 4
    assert names == expect_names and sum(n.startswith("spawner-") for n in names.values() if n) == 4
    assert missing is None
    assert states == col_states.most_common()
    assert {s: n for s, n in state_counts.items() if n} == dict(col_states)
    with pytest.raises(IndexError):
        taskleak.snapshot().group_summary([10**7], 1, 1)


@pytest.mark.parametrize("bulk", [0, 300])
def test_snapshot_from_the_records_matches_a_census_of_live_tasks(tracked, bulk):
    # snapshot() reads tracked tasks from their creation records (table order)
    # and only the others from the registry / loops: the same tasks, rows
    # and groups as a census over tracking.live_tasks(), tracked and untracked
    # tasks mixed, in every state. `bulk` more tasks make the 3.10-3.13
    # registry large enough for the census to skip its tracked entries by
    # weakref address instead of reading each.
    from taskleak import _core, tracking
    from taskleak.model.snapshot import Snapshot

    def row_of(census, i):
        task, state, serial, parent, created, thread, creation, chain, waiter_obj, leaf = census.row(i)
        frames = census.chain_frames(chain) if chain >= 0 else None
        made = census.creation_frames(creation) if creation >= 0 else None
        return task, (state, serial, parent, created, thread, made, frames, id(waiter_obj), id(leaf))

    async def main():
        ev = asyncio.Event()
        loop = asyncio.get_running_loop()
        ts = [asyncio.create_task(parked(ev), name=f"t-{i}") for i in range(5)]
        ts += [asyncio.create_task(deep(ev), name=f"deep-{i}") for i in range(3)]
        ts += [asyncio.create_task(parked(ev), name=f"bulk-{i}") for i in range(bulk)]
        # Created while tracking is off: no creation record (on 3.10-3.13 the
        # registry still holds taskleak's weakref to them).
        _core.disable()
        try:
            ts += [asyncio.create_task(parked(ev), name=f"off-{i}") for i in range(4)]
        finally:
            _core.enable(32)
        # asyncio.Task() directly: untracked where the factory is the mechanism.
        ts += [asyncio.Task(deep(ev), loop=loop, name=f"raw-{i}") for i in range(2)]
        ts.append(asyncio.create_task(fails(), name="failed"))
        ts.append(asyncio.create_task(asyncio.sleep(3600), name="cancelled"))
        ts.append(asyncio.create_task(asyncio.sleep(0), name="done"))
        # Finished and dropped: their entries leave holes in the registry's
        # set (3.10-3.13), which the census reads in place.
        for _ in range(20):
            asyncio.create_task(asyncio.sleep(0))
        await settle()
        ts[-2].cancel()
        await settle()
        gc.collect()
        snap = taskleak.snapshot()
        ref = Snapshot.of_tasks(tracking.live_tasks())
        me = asyncio.current_task()  # running: its line differs between the two
        got = {t: r for t, r in (row_of(snap._s.census, i) for i in range(len(snap))) if t is not me}
        want = {t: r for t, r in (row_of(ref._s.census, i) for i in range(len(ref))) if t is not me}
        ids = [id(row_of(snap._s.census, i)[0]) for i in range(len(snap))]
        groups = {frozenset(id(snap.at(i).task) for i in g) for g in snap.row_groups()}
        ref_groups = {frozenset(id(ref.at(i).task) for i in g) for g in ref.row_groups()}
        untracked = sum(1 for t in ts if got[t][1] == 0)
        mine = all(t in got for t in ts)
        for t in ts:
            t.cancel()
        await asyncio.gather(*ts, return_exceptions=True)
        return got == want, len(ids) == len(set(ids)), groups == ref_groups, untracked, mine

    same_rows, no_duplicates, same_groups, untracked, mine = asyncio.run(main())
    assert mine and no_duplicates
    assert untracked >= 4  # the ones made while tracking was off
    assert same_rows
    assert same_groups


def test_whole_census_shortcuts_match_the_row_lists(tracked):
    # An unfiltered snapshot passes None to state_counts and shares its row
    # ints with groups(): the same answers as the explicit row lists.
    async def waiter(ev):
        await ev.wait()

    async def main():
        ev = asyncio.Event()
        ts = [asyncio.create_task(waiter(ev)) for _ in range(5)]
        ts.append(asyncio.create_task(asyncio.sleep(0)))
        await settle()
        census = taskleak.snapshot()._s.census
        n = len(census)
        ints = list(range(n))
        out = (
            census.groups(ints) == census.groups(),
            census.state_counts(None) == census.state_counts(ints),
        )
        with pytest.raises(ValueError):
            census.groups(list(range(n + 1)))
        with pytest.raises(ValueError):
            census.groups([7] * n)
        for t in ts:
            t.cancel()
        await asyncio.gather(*ts, return_exceptions=True)
        return out

    assert asyncio.run(main()) == (True, True)


def test_census_chains_and_parent_counts_match_a_walk_of_each_task(tracked):
    # The census reuses the previous row's chain id when its frames are
    # equal, and summarize() counts a row with the previous row's parent
    # without a map lookup: both checked against a walk of each task's own
    # coroutine and a Counter, on rows of interleaved kinds (same chain in a
    # run, then another, then the first again), a pure-Python task, a Task
    # subclass, done, failed and cancelled tasks.
    import random
    from collections import Counter

    from taskleak import _core

    class MyTask(asyncio.Task):
        pass

    async def spawn(ev, out):
        for i in range(12):
            out.append(asyncio.create_task(deep(ev) if i % 4 == 3 else parked(ev)))

    async def main():
        ev = asyncio.Event()
        loop = asyncio.get_running_loop()
        ts = []
        spawners = [asyncio.create_task(spawn(ev, ts)) for _ in range(3)]
        await asyncio.gather(*spawners)
        ts += [asyncio.create_task(parked(ev)) for _ in range(3)]
        ts.append(MyTask(deep(ev), loop=loop))
        py_task = getattr(asyncio.tasks, "_PyTask", None)
        if py_task is not None:
            ts.append(py_task(deep(ev), loop=loop))
        ts.append(asyncio.create_task(fails()))
        ts.append(asyncio.create_task(asyncio.sleep(3600)))
        ts.append(asyncio.create_task(asyncio.sleep(0)))
        await settle()
        ts[-2].cancel()
        await settle()
        snap = taskleak.snapshot()
        census = snap._s.census
        me = asyncio.current_task()
        chains_ok = []
        for i in range(len(census)):
            task, state, *_, chain, _w, _l = census.row(i)
            if task is me or task not in ts:
                continue
            want = _core.await_chain(task.get_coro(), 64)[0] if not task.done() else []
            got = census.chain_frames(chain) if chain >= 0 else []
            chains_ok.append((got == want, bool(want)))
        rows = [r for r in snap.rows if snap.at(r).task in ts]
        random.Random(7).shuffle(rows)
        parent = snap.column("parent")
        got = snap.group_summary(rows, 3, 50)
        expect = Counter(parent[i] for i in rows)
        expect.pop(0, None)
        sorted_rows = sorted(rows)
        got_sorted = snap.group_summary(sorted_rows, 3, 50)
        expect_sorted = Counter(parent[i] for i in sorted_rows)
        expect_sorted.pop(0, None)
        for t in ts:
            t.cancel()
        await asyncio.gather(*ts, return_exceptions=True)
        return chains_ok, len(ts), got, expect, got_sorted, expect_sorted

    chains_ok, n, got, expect, got_sorted, expect_sorted = asyncio.run(main())
    assert len(chains_ok) == n and all(ok for ok, _ in chains_ok)
    assert sum(walked for _, walked in chains_ok) >= 40  # pending tasks, their chains not empty
    assert got.parents == expect.most_common() and got.distinct_parents == len(expect) >= 3
    assert got_sorted.parents == expect_sorted.most_common()


@pytest.mark.parametrize("orphans", [False, True])
def test_packed_groups_report_like_lists(tracked, monkeypatch, orphans):
    # An unfiltered snapshot reads large groups as packed uint32 rows (no
    # int per row) and makes its list of rows only on demand: the report,
    # row_groups() and the filters must be exactly what lists give. Two
    # create_task calls on one line make groups that merge (packed+packed,
    # packed+list), and the orphan split runs over packed groups too.
    import taskleak.model.snapshot as snapshot_mod
    from taskleak import _core
    from taskleak.model.snapshot import Snapshot, _Shared

    async def waiter(ev):
        await ev.wait()

    async def main():
        ev = asyncio.Event()
        ts = [asyncio.create_task(waiter(ev), name=f"w-{i}") for i in range(150)]
        pairs = [(asyncio.create_task(waiter(ev)), asyncio.create_task(waiter(ev))) for _ in range(70)]
        odd = [
            (asyncio.create_task(deep_outer(ev)), asyncio.create_task(deep_outer(ev)) if i < 10 else None)
            for i in range(70)
        ]
        ts += [t for p in pairs + odd for t in p if t is not None]
        ts += [asyncio.create_task(asyncio.sleep(0)) for _ in range(3)]
        await settle()
        census = taskleak.snapshot()._s.census
        taken = _core.monotonic_ns()
        out = {}
        for packed in (0, 64, 1):
            monkeypatch.setattr(snapshot_mod, "_PACKED_FROM", packed)
            snap = Snapshot(_Shared(census, taken, orphans))
            report = snap.report_groups()
            kinds = {type(g).__name__ for g in report}
            out[packed] = (
                snap.format(),
                snap.row_groups(),
                [list(g) for g in report],
                kinds,
                len(snap),
                bool(snap),
                snap.rows,
                snap.pending().rows,
                [len(g) for g in snap.pending().row_groups()],
                len(census.groups()),
            )
        for t in ts:
            t.cancel()
        await asyncio.gather(*ts, return_exceptions=True)
        return out

    out = asyncio.run(main())
    lists, packed, all_packed = out[0], out[64], out[1]
    assert lists[3] == {"list"} and "memoryview" in packed[3] and all_packed[3] == {"memoryview"}
    assert lists[0] == packed[0] == all_packed[0]  # the report, byte for byte
    assert lists[1] == packed[1] == all_packed[1] == lists[2] == packed[2] == all_packed[2]
    assert lists[4:9] == packed[4:9] == all_packed[4:9]
    assert lists[4] == len(lists[6]) >= 374 and lists[5]
    assert len(lists[1]) < lists[9]  # groups of one line's two calls were merged
    assert max(len(g) for g in lists[1]) >= 150


def test_census_reads_a_task_type_changed_between_censuses(tracked):
    # The census calls task attribute getters directly, cached per type and
    # version tag (3.13+ mark a changed type by resetting the tag only): an
    # attribute replaced on a Task subclass after a census must be read
    # through its new descriptor, and the getter again once it is removed.
    from taskleak import _core

    class MyTask(asyncio.Task):
        pass

    marker = object()

    async def main():
        ev = asyncio.Event()
        t = MyTask(ev.wait(), loop=asyncio.get_running_loop())
        await settle()
        first = _core.census([t], 8).row(0)[8]
        MyTask._fut_waiter = property(lambda self: marker)
        second = _core.census([t], 8).row(0)[8]
        del MyTask._fut_waiter
        third = _core.census([t], 8).row(0)[8]
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)
        return first, second, third

    first, second, third = asyncio.run(main())
    assert isinstance(first, asyncio.Future)
    assert second is marker
    assert third is first


def test_census_reads_sets_of_tasks_in_place(tracked):
    # census_live reads a set of tasks (3.14+'s all_tasks(loop)) and the
    # registry's set where they are stored: a removed entry leaves a
    # placeholder in the set's table that must not become a row.
    from taskleak import _core

    async def waiter(ev):
        await ev.wait()

    async def main():
        ev = asyncio.Event()
        _core.disable()  # untracked: found only through the containers
        try:
            ts = [asyncio.create_task(waiter(ev)) for _ in range(40)]
        finally:
            _core.enable(32)
        await settle()
        s = set(ts)
        for t in ts[::2]:
            s.discard(t)
        c = _core.census_live(None, [s, [ts[0]], frozenset(ts[:4])], 8)
        rows = [c.row(i)[0] for i in range(len(c))]
        del c
        untracked = {t for t in rows if _core.creation_info(t) is None}
        out = (
            all(isinstance(t, asyncio.Future) for t in rows),
            len({id(t) for t in rows}) == len(rows),
            untracked == set(ts[1::2]) | set(ts[:4]),
        )
        for t in ts:
            t.cancel()
        await asyncio.gather(*ts, return_exceptions=True)
        return out

    assert asyncio.run(main()) == (True, True, True)


COUNTED_REGISTRY = """
import asyncio, sys
import taskleak
from taskleak import _core

taskleak.install()
registry = taskleak.status()["mechanism"] == "registry"


async def parked(ev):
    await ev.wait()


def census():
    snap = taskleak.snapshot()
    c = snap._s.census
    rows = [c.row(i)[0] for i in range(len(c))]
    # The running task is also in asyncio's current-task list: one row each.
    assert len(rows) == len(set(rows)) and asyncio.current_task() in rows
    return c.registry_counted, set(rows)


async def main():
    ev = asyncio.Event()
    tracked = [asyncio.create_task(parked(ev)) for _ in range(400)]
    await asyncio.sleep(0)
    counted, rows = census()
    # Every task tracked: the registry (3.10-3.13) is counted, not read.
    print("all tracked", counted == registry, set(tracked) <= rows)
    _core.disable()
    untracked = asyncio.create_task(parked(ev))
    _core.enable(32)
    await asyncio.sleep(0)
    counted, rows = census()
    print("one untracked", counted is False, untracked in rows)
    # A tracked task taken out of the registry by hand: with the untracked
    # one in, the registry holds as many entries as there are records, yet
    # it must be read (the discard was seen).
    asyncio.tasks._unregister_task(tracked[0])
    counted, rows = census()
    print("after a discard", counted is False, untracked in rows, tracked[0] in rows)
    for t in tracked + [untracked]:
        t.cancel()
    await asyncio.gather(*tracked, untracked, return_exceptions=True)


asyncio.run(main())
"""


def test_a_registry_of_tracked_tasks_only_is_counted_and_anything_else_read():
    # 3.10-3.13: when asyncio's registry holds exactly our records' weakrefs
    # the census counts it instead of reading 100,000 entries; a task it did
    # not record, or a removal made behind registry_add's back, makes it read
    # every entry again (and find what the records do not know).
    out = subprocess.run([sys.executable, "-c", COUNTED_REGISTRY], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "all tracked True True",
        "one untracked True True",
        "after a discard True True True",
    ]


LISTED_TASKS = """
import asyncio, sys, threading
import taskleak
from taskleak import _core
from taskleak.tracking import installer

taskleak.install()
calls = []
real = installer._adopted_loops_tasks


def spy():
    calls.append(1)
    return real()


installer._adopted_loops_tasks = spy


async def parked(ev):
    await ev.wait()


def rows():
    c = taskleak.snapshot()._s.census
    return [c.row(i)[0] for i in range(len(c))]


ended = {}


def thread_that_ends():
    # Its loop's tasks outlive the thread: asyncio (3.14+) moves them from
    # the thread's list to the interpreter's.
    loop = ended["loop"] = asyncio.new_event_loop()

    async def make():
        ended["ev"] = asyncio.Event()
        ended["tasks"] = [asyncio.create_task(parked(ended["ev"])) for _ in range(5)]
        await asyncio.sleep(0)

    loop.run_until_complete(make())


th = threading.Thread(target=thread_that_ends)
th.start()
th.join()
living = asyncio.new_event_loop()
lt = threading.Thread(target=living.run_forever)
lt.start()


async def main():
    ev = asyncio.Event()
    tracked = [asyncio.create_task(parked(ev)) for _ in range(300)]
    await asyncio.sleep(0)
    r = rows()
    print("all tracked", len(r) == len(set(r)), set(tracked + ended["tasks"]) <= set(r), len(calls))
    # Tasks taken out of the lists and put back go to their ends: the rows
    # (in the order the tasks were made) no longer follow the lists.
    for t in tracked[100:110]:
        asyncio.tasks._unregister_task(t)
        asyncio.tasks._register_task(t)
    r = rows()
    print("out of order", set(tracked) <= set(r), len(calls))
    # Tasks made by turns on two threads: the rows go from one thread's list
    # to the other's at every row.
    made = []
    for _ in range(20):
        tracked.append(asyncio.create_task(parked(ev)))
        started = threading.Event()

        async def there():
            started.set()
            await asyncio.Event().wait()

        made.append(asyncio.run_coroutine_threadsafe(there(), living))
        started.wait(10)
    r = rows()
    print("two threads", set(tracked) <= set(r), sum(t.get_coro().__name__ == "there" for t in r), len(calls))
    for f in made:
        f.cancel()
    # A task with no record amid tracked ones (not the last listed), and one
    # taken out of the lists by hand: only the first is a task the rows miss.
    untracked = asyncio.Task(parked(ev))  # made without the loop's task factory: no record
    tracked += [asyncio.create_task(parked(ev)) for _ in range(3)]
    asyncio.tasks._unregister_task(tracked[0])
    await asyncio.sleep(0)
    r = rows()
    print("one untracked", untracked in r, tracked[0] in r, len(calls))
    for t in tracked + [untracked]:
        t.cancel()
    await asyncio.gather(*tracked, untracked, return_exceptions=True)


asyncio.run(main())
living.call_soon_threadsafe(living.stop)
lt.join()
ended["ev"].set()
ended["loop"].run_until_complete(asyncio.gather(*ended["tasks"]))
print(_core.stats()["task_lists"])
"""


def test_asyncios_task_lists_are_read_and_copied_only_when_they_hold_another_task():
    # 3.14+: asyncio keeps every live C task in its thread's list (the
    # interpreter's once the thread has ended). When the links of the rows'
    # own tasks show that the lists hold no other task, whatever order the
    # rows are in, asyncio.all_tasks(loop) is not called; a task made
    # without the loop's task factory (no record), even amid tracked ones,
    # is seen in those links, and the census asks asyncio and finds it.
    # Before 3.14 the registry holds every task and there are no lists.
    out = subprocess.run([sys.executable, "-c", LISTED_TASKS], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lists = sys.version_info >= (3, 14)
    assert out.stdout.splitlines() == [
        "all tracked True True 0",
        "out of order True 0",
        "two threads True 20 0",
        f"one untracked True True {int(lists)}",
        "asyncio-debug-offsets" if lists else "unavailable",
    ]


def test_core_groups_are_exactly_the_rows_with_equal_keys(tracked):
    # The census numbers each row's group as it reads the row; groups()
    # must be exactly the rows with equal (creation stack, chain, state,
    # wait-target type), however the keys interleave in row order, largest
    # group first and equal sizes in order of first appearance. (The report
    # merges groups again by rendered frames, so only this checks the core.)
    async def parked(ev):
        await ev.wait()

    async def napping():
        await asyncio.sleep(3600)

    async def quick():
        return 1

    def site_a(ev, out, i):
        out.append(asyncio.create_task(parked(ev) if i % 3 else napping()))

    def site_b(ev, out, i):
        out.append(asyncio.create_task(napping() if (i // 2) % 2 else quick()))

    async def main():
        ev = asyncio.Event()
        ts = []
        for i in range(30):
            (site_a if i % 2 else site_b)(ev, ts, i)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        census = taskleak.snapshot()._s.census
        groups = census.groups(None, 0)
        keys = {}
        for i in range(len(census)):
            row = census.row(i)
            keys.setdefault((row[1], row[6], row[7], type(row[8])), []).append(i)
        for t in ts:
            t.cancel()
        await asyncio.gather(*ts, return_exceptions=True)
        return groups, list(keys.values())

    groups, by_key = asyncio.run(main())
    expected = sorted(by_key, key=len, reverse=True)  # stable: first appearance among equals
    assert groups == expected
    assert len(groups) >= 5 and sum(len(g) for g in groups) >= 31


def test_a_census_reuses_the_buffers_of_the_last_and_lets_them_go_as_the_tasks_go(tracked):
    # 100,000 rows are 7 MB that malloc would map afresh for every census,
    # a page fault per 4 KB: the largest buffers of a census gone are kept
    # for the next, which takes them, and a census of far fewer live tasks
    # lets them go (the memory kept follows the number of tasks down).
    async def parked(ev):
        await ev.wait()

    def spare():
        return taskleak.status()["census_spare_bytes"]

    async def main():
        ev = asyncio.Event()
        ts = [asyncio.create_task(parked(ev)) for _ in range(20_000)]
        await asyncio.sleep(0)
        first = taskleak.snapshot()
        rows = len(first)
        del first
        gc.collect()
        kept = spare()
        again = taskleak.snapshot()
        during = spare()  # its rows came from the spare
        same = len(again) == rows and len(again.row_groups()[0]) == 20_000
        del again
        gc.collect()
        ev.set()
        for t in ts:
            await t
        del ts, t
        gc.collect()
        small = taskleak.snapshot()
        after = spare()
        del small
        gc.collect()
        return rows, kept, during, same, after, spare()

    rows, kept, during, same, after, last = asyncio.run(main())
    assert rows > 20_000 and same
    assert kept >= rows * 72, kept
    assert during < kept // 2, (during, kept)
    assert after < 64 * 1024 and last < 64 * 1024, (after, last)


def test_tasks_of_a_python_task_class_out_of_asyncios_registry_are_each_one_row(tracked):
    # 3.14+ keys the record of a C task by the task, and a census with
    # nothing in asyncio's registry makes no set of the tasks it has taken.
    # A task of a Python task class is recorded through a weakref instead:
    # taken out of the registry by hand, it makes the census take that set
    # after all, and every task is still in the snapshot exactly once.
    async def parked(ev):
        await ev.wait()

    async def main():
        loop = asyncio.get_running_loop()
        ev = asyncio.Event()
        loop.set_task_factory(lambda loop, coro, **kw: asyncio.tasks._PyTask(coro, loop=loop, **kw))
        py = [asyncio.create_task(parked(ev)) for _ in range(3)]
        loop.set_task_factory(None)
        native = [asyncio.create_task(parked(ev)) for _ in range(5)]
        await asyncio.sleep(0)
        # The registry's name before 3.12, and after.
        registry = getattr(asyncio.tasks, "_scheduled_tasks", None) or asyncio.tasks._all_tasks
        for t in py:
            registry.discard(t)
        registered = sum(t in registry for t in py)
        seen = [info.task for info in taskleak.snapshot()]
        ev.set()
        await asyncio.gather(*py, *native)
        return registered, [seen.count(t) for t in py + native], len(seen) == len({id(t) for t in seen})

    registered, counts, distinct = asyncio.run(main())
    assert (registered, counts, distinct) == (0, [1] * 8, True), (registered, counts)


def test_uninstall_gives_back_the_buffers_kept_for_the_next_census(tracked):
    async def parked(ev):
        await ev.wait()

    async def main():
        ev = asyncio.Event()
        ts = [asyncio.create_task(parked(ev)) for _ in range(5_000)]
        await asyncio.sleep(0)
        snap = taskleak.snapshot()
        del snap
        gc.collect()
        kept = taskleak.status()["census_spare_bytes"]
        taskleak.uninstall()
        released = taskleak.status()["census_spare_bytes"]
        later = len(taskleak.snapshot())  # snapshots still work, allocating afresh
        taskleak.install()
        ev.set()
        await asyncio.gather(*ts)
        return kept, released, later

    kept, released, later = asyncio.run(main())
    assert kept >= 5_000 * 72 and released == 0 and later > 5_000, (kept, released, later)


def test_the_coroutine_a_census_prefetches_is_the_tasks_own(tracked):
    # 3.14+: the census fetches each task's coroutine a few rows ahead,
    # from the field CPython's debug offsets name. A wrong offset would
    # only slow it down, silently: this is what sees it.
    from taskleak import _core

    async def parked(ev):
        await ev.wait()

    async def main():
        ev = asyncio.Event()
        native = asyncio.create_task(parked(ev))
        python = asyncio.tasks._PyTask(parked(ev))  # not asyncio's C Task: no field to read
        await asyncio.sleep(0)
        out = (_core._coro_address(native), id(native.get_coro()), _core._coro_address(python))
        ev.set()
        await asyncio.gather(native, python)
        return out

    hint, coro, other = asyncio.run(main())
    assert (hint, other) == ((coro, 0) if sys.version_info >= (3, 14) else (0, 0))
