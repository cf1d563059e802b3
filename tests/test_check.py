"""taskleak.check(): the API contract.

`with` / `async with` / decorator (sync and async), the options (grace,
ignore, kinds, on_leak, collect), validation, scoping (what is charged to a
scope and what is not), and the report text.

Every async test runs its own loop with asyncio.run(): no plugin involved.
"""

import asyncio
import gc
import inspect
import logging
import sys
import warnings
from collections import Counter

import pytest

import taskleak
from taskleak import Leak, TaskLeakError, TaskLeakWarning

# ---- helpers -------------------------------------------------------------------


def here(*_made_on_this_line: object) -> int:
    """The caller's current line number: ``here(asyncio.create_task(...))``
    is the line that created the task (one statement, so a formatter cannot
    move the two apart)."""
    return sys._getframe(1).f_lineno


def kinds_of(leaks) -> Counter:
    return Counter(lk.kind for lk in leaks)


async def beat(period: float = 10.0) -> None:
    """A heartbeat that never ends on its own."""
    while True:
        await asyncio.sleep(period)


async def quick(value=1):
    return value


async def nap(seconds: float):
    await asyncio.sleep(seconds)
    return seconds


class Boom(Exception):
    pass


async def boom(exc=None):
    raise exc if exc is not None else Boom("boom")


async def waits_forever_on_orphan_future() -> None:
    # Nobody but this coroutine ever references the future: provably stuck.
    await asyncio.get_running_loop().create_future()


def helper_fn():
    """Creates a task from a named module-level function (for site ignores)."""
    return asyncio.create_task(beat(), name="from-helper")


RETAINED = {}


@pytest.fixture(autouse=True)
def _clean_state():
    taskleak.install()
    taskleak.clear_loss_events()
    RETAINED.clear()
    yield
    RETAINED.clear()
    gc.collect()
    taskleak.clear_loss_events()


# ---- the four ways in ------------------------------------------------------------


def test_check_returns_leakcheck_usable_as_cm_and_decorator():
    c = taskleak.check()
    assert isinstance(c, taskleak.LeakCheck)
    assert hasattr(c, "__enter__") and hasattr(c, "__aenter__") and callable(c)


def test_async_with_reports_pending_task():
    async def main():
        async with taskleak.check(grace=0):
            asyncio.create_task(beat(), name="hb")

    with pytest.raises(TaskLeakError) as ei:
        asyncio.run(main())
    assert [(lk.kind, lk.task.name) for lk in ei.value.leaks] == [("pending", "hb")]
    assert isinstance(ei.value.leaks[0], Leak)


def test_async_with_clean_scope_passes_and_exposes_empty_leaks():
    async def main():
        async with taskleak.check() as c:
            await asyncio.create_task(quick())
        return c

    c = asyncio.run(main())
    assert c.leaks == []


def test_sync_with_inside_running_loop_reports_pending():
    async def main():
        with taskleak.check(grace=0):
            asyncio.create_task(beat(), name="hb-sync")

    with pytest.raises(TaskLeakError) as ei:
        asyncio.run(main())
    assert [(lk.kind, lk.task.name) for lk in ei.value.leaks] == [("pending", "hb-sync")]


def test_sync_with_around_asyncio_run_reports_tasks_cancelled_at_shutdown():
    async def main():
        asyncio.create_task(beat(), name="left-behind")
        await asyncio.sleep(0)

    with pytest.raises(TaskLeakError) as ei:
        with taskleak.check(grace=0):
            asyncio.run(main())
    assert [(lk.kind, lk.task.name) for lk in ei.value.leaks] == [("pending", "left-behind")]


def test_a_task_pending_at_shutdown_then_collected_is_one_leak():
    # A loop closed by hand (shutdown_asyncgens, no runner to cancel what is
    # left): its task is seen pending at the shutdown, then the collector
    # destroys it. Two events, one task: one leak, the first event's kind.
    async def main():
        asyncio.create_task(waits_forever_on_orphan_future(), name="left-then-collected")
        await asyncio.sleep(0)

    with pytest.raises(TaskLeakError) as ei:
        with taskleak.check(grace=0):
            loop = asyncio.new_event_loop()
            loop.set_exception_handler(lambda loop, ctx: None)
            loop.run_until_complete(main())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            del loop
            gc.collect()
    names = [e.task_name for e in taskleak.loss_events() if e.task_name == "left-then-collected"]
    assert len(names) == 2  # pending-at-shutdown, then destroyed-pending
    assert [(lk.kind, lk.task.name) for lk in ei.value.leaks] == [("pending", "left-then-collected")]


def test_sync_with_around_clean_asyncio_run_passes():
    async def main():
        await asyncio.gather(quick(), nap(0.001))

    with taskleak.check() as c:
        asyncio.run(main())
    assert c.leaks == []


def test_decorator_on_async_function_fresh_scope_per_call():
    calls = []

    @taskleak.check(grace=0)
    async def work(leak: bool):
        calls.append(leak)
        if leak:
            asyncio.create_task(beat(), name=f"leak-{len(calls)}")
        return "result"

    async def main():
        assert await work(False) == "result"
        with pytest.raises(TaskLeakError) as ei:
            await work(True)
        assert [lk.task.name for lk in ei.value.leaks] == ["leak-2"]
        # A new call is a new scope: the task leaked by the previous call is
        # still pending but is not charged to this one.
        assert await work(False) == "result"
        with pytest.raises(TaskLeakError) as ei:
            await work(True)
        assert [lk.task.name for lk in ei.value.leaks] == ["leak-4"]
        for t in asyncio.all_tasks():
            if t is not asyncio.current_task():
                t.cancel()

    asyncio.run(main())
    assert calls == [False, True, False, True]


def test_decorator_keeps_function_metadata():
    @taskleak.check()
    async def my_async_fn():
        """async doc"""

    @taskleak.check()
    def my_sync_fn():
        """sync doc"""

    assert my_async_fn.__name__ == "my_async_fn" and my_async_fn.__doc__ == "async doc"
    assert my_sync_fn.__name__ == "my_sync_fn" and my_sync_fn.__doc__ == "sync doc"
    assert inspect.iscoroutinefunction(my_async_fn)
    assert not inspect.iscoroutinefunction(my_sync_fn)


def test_decorator_on_sync_function_fresh_scope_per_call():
    @taskleak.check(grace=0)
    def run_it(leak: bool):
        async def main():
            if leak:
                asyncio.create_task(beat(), name="sync-deco-leak")
            await asyncio.sleep(0)
            return 42

        return asyncio.run(main())

    assert run_it(False) == 42
    with pytest.raises(TaskLeakError) as ei:
        run_it(True)
    assert [lk.task.name for lk in ei.value.leaks] == ["sync-deco-leak"]
    assert run_it(False) == 42
    # the label names the decorated function
    assert "run_it" in str(ei.value)


def test_same_instance_cannot_be_nested():
    c = taskleak.check()
    with c:
        with pytest.raises(RuntimeError, match="already active"):
            with c:
                pass


def test_same_instance_can_be_reused_sequentially():
    # LeakCheck: "Each use opens a fresh scope" - after a scope has ended,
    # entering the same object again opens a new one.
    c = taskleak.check(grace=0)
    with c:
        pass
    with c:
        pass
    assert c.leaks == []


def test_nested_scopes_charge_tasks_to_innermost():
    async def main():
        async with taskleak.check(grace=0) as outer:
            with pytest.raises(TaskLeakError) as ei:
                async with taskleak.check(grace=0):
                    t = asyncio.create_task(beat(), name="inner-leak")
            assert [lk.task.name for lk in ei.value.leaks] == ["inner-leak"]
            t.cancel()
            await asyncio.gather(t, return_exceptions=True)
        return outer

    assert asyncio.run(main()).leaks == []


# ---- grace ---------------------------------------------------------------------


def test_grace_lets_a_short_task_finish_async():
    async def main():
        async with taskleak.check(grace=1.0) as c:
            t = asyncio.create_task(nap(0.02))
        assert t.done() and t.result() == 0.02
        return c

    assert asyncio.run(main()).leaks == []


def test_grace_too_short_reports_pending_and_does_not_wait_for_task():
    async def main():
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0.05):
                t = asyncio.create_task(nap(5), name="slow")
        elapsed = loop.time() - start
        t.cancel()
        return ei.value.leaks, elapsed

    leaks, elapsed = asyncio.run(main())
    assert [(lk.kind, lk.task.name) for lk in leaks] == [("pending", "slow")]
    assert 0.04 <= elapsed < 1.0


def test_grace_zero_reports_a_task_that_would_finish_soon():
    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0):
                t = asyncio.create_task(nap(0.01), name="soon")
        await t
        return ei.value.leaks

    assert [lk.task.name for lk in asyncio.run(main())] == ["soon"]


def test_grace_on_sync_exit_drives_an_idle_loop():
    loop = asyncio.new_event_loop()
    try:
        with taskleak.check(grace=1.0) as c:
            t = loop.create_task(nap(0.01))
            loop.run_until_complete(asyncio.sleep(0))  # started, now sleeping
            assert not t.done()
        assert t.done() and t.result() == 0.01
        assert c.leaks == []
    finally:
        loop.close()


def test_grace_cannot_apply_to_sync_exit_inside_running_loop():
    # The loop is running (we are inside it): a sync exit cannot yield to it,
    # so the task is pending however long the grace - and the exit is fast.
    async def main():
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TaskLeakError) as ei:
            with taskleak.check(grace=2.0):
                t = asyncio.create_task(nap(0.001), name="cannot-run")
        elapsed = loop.time() - start
        await t
        return ei.value.leaks, elapsed

    leaks, elapsed = asyncio.run(main())
    assert [(lk.kind, lk.task.name) for lk in leaks] == [("pending", "cannot-run")]
    assert elapsed < 1.0


# ---- ignore --------------------------------------------------------------------


def _leak_names(coro_fn, **opts):
    """Run coro_fn inside `async with check(**opts)`; return the leaked task names."""

    async def main():
        try:
            async with taskleak.check(grace=0, **opts):
                await coro_fn()
        except TaskLeakError as e:
            return sorted(lk.task.name for lk in e.leaks)
        finally:
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()
        return []

    return asyncio.run(main())


async def _two_named_heartbeats():
    asyncio.create_task(beat(), name="metrics-flush")
    asyncio.create_task(nap(10), name="worker-1")


def test_ignore_by_task_name_glob():
    assert _leak_names(_two_named_heartbeats) == ["metrics-flush", "worker-1"]
    assert _leak_names(_two_named_heartbeats, ignore=["metrics-*"]) == ["worker-1"]
    assert _leak_names(_two_named_heartbeats, ignore="worker-?") == ["metrics-flush"]


def test_ignore_by_coroutine_qualname_glob():
    assert _leak_names(_two_named_heartbeats, ignore=["beat"]) == ["worker-1"]
    assert _leak_names(_two_named_heartbeats, ignore=["na*"]) == ["metrics-flush"]
    assert _leak_names(_two_named_heartbeats, ignore=["bea", "zzz*"]) == ["metrics-flush", "worker-1"]


def test_ignore_by_creation_site_module_function():
    async def body():
        helper_fn()
        asyncio.create_task(beat(), name="from-body")

    assert _leak_names(body) == ["from-body", "from-helper"]
    assert _leak_names(body, ignore=[f"{__name__}:helper_fn"]) == ["from-body"]
    assert _leak_names(body, ignore=[f"{__name__}:helper_*"]) == ["from-body"]
    assert _leak_names(body, ignore=["*:helper_fn"]) == ["from-body"]
    assert _leak_names(body, ignore=["some.other.module:helper_fn"]) == ["from-body", "from-helper"]


def test_ignore_by_creation_site_file_line():
    lines = {}

    async def body():
        lines["a"] = here(asyncio.create_task(beat(), name="a"))
        lines["b"] = here(asyncio.create_task(beat(), name="b"))

    assert _leak_names(body) == ["a", "b"]
    assert _leak_names(body, ignore=[f"*/test_check.py:{lines['a']}"]) == ["b"]
    assert _leak_names(body, ignore=[f"*/test_check.py:{lines['b']}"]) == ["a"]
    assert _leak_names(body, ignore=[f"{__file__}:{lines['b']}"]) == ["a"]
    assert _leak_names(body, ignore=[f"*/other_file.py:{lines['b']}"]) == ["a", "b"]


def test_ignore_by_callable():
    seen = []

    def rule(info):
        seen.append(info.name)
        return info.name.startswith("worker")

    assert _leak_names(_two_named_heartbeats, ignore=[rule]) == ["metrics-flush"]
    assert sorted(seen) == ["metrics-flush", "worker-1"]
    # a single callable (not in a list) works too
    assert _leak_names(_two_named_heartbeats, ignore=lambda info: info.coro == "beat") == ["worker-1"]


def test_ignore_callable_that_raises_does_not_hide_leaks():
    def broken(info):
        raise RuntimeError("bug in rule")

    assert _leak_names(_two_named_heartbeats, ignore=[broken]) == ["metrics-flush", "worker-1"]


def test_ignore_applies_to_every_kind():
    async def main():
        async with taskleak.check(grace=0, ignore=["kept-*", "bad-*"]):
            RETAINED["t"] = asyncio.create_task(quick(), name="kept-1")
            asyncio.create_task(boom(), name="bad-1")
            await asyncio.sleep(0.01)

    asyncio.run(main())  # nothing raised


# ---- kinds ---------------------------------------------------------------------


async def _one_of_each_kind():
    asyncio.create_task(beat(), name="p")  # pending
    RETAINED["d"] = asyncio.create_task(quick(), name="d")  # done-retained
    asyncio.create_task(boom(), name="n")  # never-retrieved
    asyncio.create_task(waits_forever_on_orphan_future(), name="g")  # gc-pending
    await asyncio.sleep(0.01)
    gc.collect()


def _leaks_with(**opts):
    async def main():
        try:
            async with taskleak.check(grace=0, **opts):
                await _one_of_each_kind()
        except TaskLeakError as e:
            return e.leaks
        finally:
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()
        return []

    return asyncio.run(main())


def test_all_kinds_by_default():
    leaks = _leaks_with()
    assert kinds_of(leaks) == {"pending": 1, "done-retained": 1, "never-retrieved": 1, "gc-pending": 1}
    assert {lk.kind: lk.task.name for lk in leaks} == {
        "pending": "p",
        "done-retained": "d",
        "never-retrieved": "n",
        "gc-pending": "g",
    }


@pytest.mark.parametrize(
    "kinds",
    [
        ("pending",),
        ["done-retained"],
        ("never-retrieved", "gc-pending"),
        ("pending", "done-retained", "never-retrieved", "gc-pending"),
    ],
)
def test_kinds_restricts_what_counts(kinds):
    leaks = _leaks_with(kinds=kinds)
    assert set(kinds_of(leaks)) == set(kinds)
    assert all(n == 1 for n in kinds_of(leaks).values())


def test_kinds_without_the_leaked_kind_passes():
    async def main():
        async with taskleak.check(grace=0, kinds=["done-retained", "never-retrieved"]) as c:
            t = asyncio.create_task(beat())
        t.cancel()
        return c

    assert asyncio.run(main()).leaks == []


def test_kinds_constant():
    assert set(taskleak.KINDS) == {"pending", "gc-pending", "done-retained", "never-retrieved"}


# ---- on_leak -------------------------------------------------------------------


def test_on_leak_raise_is_assertion_error_with_leaks():
    async def main():
        async with taskleak.check(grace=0):
            asyncio.create_task(beat(), name="hb")

    with pytest.raises(AssertionError) as ei:
        asyncio.run(main())
    err = ei.value
    assert isinstance(err, TaskLeakError)
    assert len(err.leaks) == 1
    lk = err.leaks[0]
    assert lk.kind == "pending"
    assert lk.task.name == "hb" and lk.task.coro == "beat" and lk.task.state == "pending"
    assert lk.held_by is None and lk.exception is None


def test_on_leak_warn():
    async def main():
        async with taskleak.check(grace=0, on_leak="warn") as c:
            t = asyncio.create_task(beat(), name="warned")
        t.cancel()
        return c

    with pytest.warns(TaskLeakWarning, match="warned") as rec:
        c = asyncio.run(main())
    assert len([w for w in rec if issubclass(w.category, TaskLeakWarning)]) == 1
    assert issubclass(TaskLeakWarning, UserWarning)
    assert [lk.task.name for lk in c.leaks] == ["warned"]


def test_on_leak_warn_silent_when_clean():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with taskleak.check(on_leak="warn"):
            asyncio.run(quick())


def test_on_leak_log(caplog):
    async def main():
        async with taskleak.check(grace=0, on_leak="log") as c:
            t = asyncio.create_task(beat(), name="logged")
        t.cancel()
        return c

    with caplog.at_level(logging.WARNING, logger="taskleak"):
        c = asyncio.run(main())
    recs = [r for r in caplog.records if r.name == "taskleak"]
    assert len(recs) == 1
    assert recs[0].levelno == logging.WARNING
    assert "logged" in recs[0].getMessage() and "pending" in recs[0].getMessage()
    assert [lk.task.name for lk in c.leaks] == ["logged"]


def test_on_leak_cancel_async_cancels_awaits_then_raises():
    cleaned = []

    async def with_cleanup():
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0)  # cleanup that needs the loop
            cleaned.append(True)

    async def main():
        tasks = []
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0, on_leak="cancel"):
                tasks.append(asyncio.create_task(with_cleanup(), name="c1"))
                tasks.append(asyncio.create_task(beat(), name="c2"))
                await asyncio.sleep(0)
        # cancelled *and awaited* by the time the error arrives
        assert all(t.done() and t.cancelled() for t in tasks)
        return ei.value

    err = asyncio.run(main())
    assert cleaned == [True]
    assert sorted(lk.task.name for lk in err.leaks) == ["c1", "c2"]
    assert "cancelled" in str(err)


def test_on_leak_cancel_sync_on_idle_loop():
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TaskLeakError) as ei:
            with taskleak.check(grace=0, on_leak="cancel"):
                t = loop.create_task(beat(), name="idle-loop-task")
                loop.run_until_complete(asyncio.sleep(0))
        assert t.cancelled()
        assert [lk.task.name for lk in ei.value.leaks] == ["idle-loop-task"]
    finally:
        loop.close()


def test_on_leak_cancel_sync_inside_running_loop_still_raises():
    # A sync exit inside a running loop cannot await the cancellation, but it
    # must still cancel the tasks and report the leak.
    async def main():
        with pytest.raises(TaskLeakError) as ei:
            with taskleak.check(grace=0, on_leak="cancel"):
                t = asyncio.create_task(beat(), name="in-loop")
        await asyncio.gather(t, return_exceptions=True)
        assert t.cancelled()
        return ei.value.leaks

    assert [lk.task.name for lk in asyncio.run(main())] == ["in-loop"]


def test_on_leak_cancel_does_not_cancel_done_retained_but_reports_it():
    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0, on_leak="cancel"):
                RETAINED["x"] = asyncio.create_task(quick(), name="kept")
                p = asyncio.create_task(beat(), name="hb")
                await asyncio.sleep(0.001)
        assert p.cancelled()
        assert RETAINED["x"].result() == 1
        return ei.value.leaks

    assert kinds_of(asyncio.run(main())) == {"pending": 1, "done-retained": 1}


# ---- validation ----------------------------------------------------------------


@pytest.mark.parametrize("grace", [-1, -0.001, "1", None, True, [1]])
def test_bad_grace(grace):
    with pytest.raises(ValueError, match="grace"):
        taskleak.check(grace=grace)


@pytest.mark.parametrize("grace", [0, 0.0, 1, 2.5])
def test_good_grace(grace):
    assert taskleak.check(grace=grace).grace == float(grace)


def test_bad_kind():
    with pytest.raises(ValueError) as ei:
        taskleak.check(kinds=["pending", "leaky"])
    msg = str(ei.value)
    assert "leaky" in msg
    for k in taskleak.KINDS:
        assert k in msg


def test_single_kind_as_bare_string_is_one_kind_or_a_clear_error():
    # Like ignore="glob", kinds="pending" should mean the one kind. If it is
    # refused instead, the message must say what is wrong - not complain about
    # the characters 'p', 'e', 'n', ... of the string.
    try:
        c = taskleak.check(kinds="pending")
    except (TypeError, ValueError) as e:
        msg = str(e)
        assert "kinds" in msg and "'p'" not in msg, msg
    else:
        assert tuple(c.kinds) == ("pending",)


@pytest.mark.parametrize("on_leak", ["explode", "", "RAISE", None])
def test_bad_on_leak(on_leak):
    with pytest.raises(ValueError) as ei:
        taskleak.check(on_leak=on_leak)
    msg = str(ei.value)
    assert "on_leak" in msg
    for choice in ("raise", "warn", "log", "cancel"):
        assert choice in msg


@pytest.mark.parametrize("rule", [3, None, b"bytes", object()])
def test_bad_ignore_rule(rule):
    with pytest.raises(TypeError, match="ignore"):
        taskleak.check(ignore=[rule])


def test_check_takes_keyword_arguments_only():
    with pytest.raises(TypeError):
        taskleak.check(0.1)  # type: ignore[misc]


# ---- what belongs to the scope -------------------------------------------------


def test_tasks_from_before_the_scope_are_never_reported():
    async def main():
        before_pending = asyncio.create_task(beat(), name="server")
        before_done = asyncio.create_task(quick(), name="before-done")
        RETAINED["before"] = before_done
        late_finisher = asyncio.create_task(nap(0.005), name="finishes-in-scope")
        RETAINED["late"] = late_finisher
        await asyncio.sleep(0)
        async with taskleak.check(grace=0) as c:
            await asyncio.sleep(0.02)  # late_finisher finishes here, retained
            assert late_finisher.done()
        before_pending.cancel()
        return c

    assert asyncio.run(main()).leaks == []


def test_grandchildren_are_charged_to_the_scope():
    async def spawner(n):
        for i in range(n):
            asyncio.create_task(beat(), name=f"grandchild-{i}")
        await asyncio.sleep(10)

    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0):
                asyncio.create_task(spawner(3), name="child")
                await asyncio.sleep(0)
        return ei.value.leaks

    leaks = asyncio.run(main())
    assert sorted(lk.task.name for lk in leaks) == ["child", "grandchild-0", "grandchild-1", "grandchild-2"]


def test_tasks_created_after_the_scope_by_scope_tasks_are_charged_to_it_not_to_a_later_scope():
    async def late_spawner(go: asyncio.Event, spawned: list):
        await go.wait()
        spawned.append(asyncio.create_task(beat(), name="late-grandchild"))
        await asyncio.sleep(10)

    async def main():
        go = asyncio.Event()
        spawned: list = []
        async with taskleak.check(grace=0, ignore=["late-spawner"]) as first:
            spawner = asyncio.create_task(late_spawner(go, spawned), name="late-spawner")
            await asyncio.sleep(0)
        # a second scope: the grandchild is created while it is open, but by a
        # task of the first scope - it is not charged to the second one
        async with taskleak.check(grace=0) as second:
            go.set()
            await asyncio.sleep(0.01)
            assert len(spawned) == 1 and not spawned[0].done()
            mine = asyncio.create_task(beat(), name="second-scope-own")
            mine.cancel()
            await asyncio.gather(mine, return_exceptions=True)
        spawner.cancel()
        spawned[0].cancel()
        return first, second

    first, second = asyncio.run(main())
    assert first.leaks == [] and second.leaks == []


def test_grandchild_created_after_scope_end_is_not_charged_to_a_later_scope_that_leaks():
    async def late_spawner(go: asyncio.Event):
        await go.wait()
        asyncio.create_task(beat(), name="late-grandchild")
        await asyncio.sleep(10)

    async def main():
        go = asyncio.Event()
        async with taskleak.check(grace=0, ignore=["late-spawner"]):
            asyncio.create_task(late_spawner(go), name="late-spawner")
            await asyncio.sleep(0)
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0):
                asyncio.create_task(beat(), name="own-leak")
                go.set()
                await asyncio.sleep(0.01)
        return ei.value.leaks

    assert [lk.task.name for lk in asyncio.run(main())] == ["own-leak"]


def test_task_created_in_scope_running_other_loop_thread_is_charged():
    import threading

    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    try:
        with pytest.raises(TaskLeakError) as ei:
            with taskleak.check(grace=0):
                fut = asyncio.run_coroutine_threadsafe(_spawn_named_beat("other-thread"), loop)
                fut.result(timeout=5)
        assert [lk.task.name for lk in ei.value.leaks] == ["other-thread"]
    finally:

        async def stop():
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        th.join(5)
        loop.close()


async def _spawn_named_beat(name):
    asyncio.create_task(beat(), name=name)


# ---- the body's exception wins ---------------------------------------------------


def test_body_exception_is_not_masked_async():
    async def main():
        c = taskleak.check(grace=0)
        with pytest.raises(KeyError, match="body"):
            async with c:
                asyncio.create_task(beat(), name="leaked-anyway")
                raise KeyError("body")
        return c

    c = asyncio.run(main())
    assert [lk.task.name for lk in c.leaks] == ["leaked-anyway"]


def test_body_exception_is_not_masked_sync():
    c = taskleak.check(grace=0)

    async def main():
        asyncio.create_task(beat(), name="leaked-anyway")
        await asyncio.sleep(0)
        raise ValueError("body")

    with pytest.raises(ValueError, match="body"):
        with c:
            asyncio.run(main())
    assert [lk.task.name for lk in c.leaks] == ["leaked-anyway"]


def test_body_exception_is_not_masked_by_cancel_mode():
    async def main():
        c = taskleak.check(grace=0, on_leak="cancel")
        with pytest.raises(KeyError):
            async with c:
                t = asyncio.create_task(beat())
                raise KeyError("body")
        await asyncio.sleep(0)
        assert t.cancelled()
        return c

    assert kinds_of(asyncio.run(main()).leaks) == {"pending": 1}


def test_body_exception_is_not_masked_decorator():
    @taskleak.check(grace=0)
    async def work():
        asyncio.create_task(beat())
        raise LookupError("body")

    async def main():
        with pytest.raises(LookupError):
            await work()
        for t in asyncio.all_tasks():
            if t is not asyncio.current_task():
                t.cancel()

    asyncio.run(main())


# ---- the report ------------------------------------------------------------------


def test_report_pending_names_kind_task_coroutine_site_and_suspension():
    lines = {}

    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0):
                lines["create"] = here(asyncio.create_task(beat(), name="hb-report"))
                await asyncio.sleep(0)
        return ei.value

    err = asyncio.run(main())
    msg = str(err)
    assert msg.startswith("taskleak: 1 leaked task")
    assert "[pending]" in msg
    assert "hb-report" in msg
    assert "beat()" in msg
    assert "created at:" in msg
    # the creating line of this test, in the function `main` (a qualname on 3.11+)
    site = [ln.strip() for ln in msg.splitlines() if f"test_check.py:{lines['create']} in " in ln]
    assert len(site) == 1 and site[0].endswith("main"), msg
    assert "suspended at:" in msg
    # the innermost user frame of the await chain: the sleep inside beat()
    beat_line = beat.__code__.co_firstlineno + 3
    assert f"test_check.py:{beat_line} in beat" in msg
    assert "asyncio.sleep()" in msg
    assert "orphaned: no" in msg
    # the creating line is also in the structured info
    created = err.leaks[0].task.created_at
    assert created is not None and any(f.filename == __file__ and f.lineno == lines["create"] for f in created)


def test_report_shows_orphaned_flag_for_pending_tasks():
    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0):
                t = asyncio.create_task(waits_forever_on_orphan_future(), name="stuck")
                await asyncio.sleep(0)
        t.cancel()
        return ei.value

    msg = str(asyncio.run(main()))
    assert "orphaned:" in msg and "stuck" in msg
    assert "waits_forever_on_orphan_future" in msg


def test_report_marks_orphaned_pending_task():
    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0):
                t = asyncio.create_task(waits_forever_on_orphan_future(), name="stuck")
                await asyncio.sleep(0)
        t.cancel()
        return ei.value

    err = asyncio.run(main())
    assert err.leaks[0].task.orphaned is True
    assert "orphaned: yes" in str(err)
    assert "waits_forever_on_orphan_future" in str(err)


def test_report_groups_identical_leaks():
    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0):
                for i in range(7):
                    asyncio.create_task(beat(), name=f"hb-{i}")
                asyncio.create_task(nap(10), name="napper")
                await asyncio.sleep(0)
        return ei.value

    err = asyncio.run(main())
    msg = str(err)
    assert len(err.leaks) == 8
    assert msg.startswith("taskleak: 8 leaked tasks")
    assert "[pending] 7 tasks" in msg and "[pending] 1 task " in msg
    # largest group first
    assert msg.index("[pending] 7 tasks") < msg.index("[pending] 1 task ")
    assert "2 more" in msg  # only a few names are listed
    assert msg.count("[pending]") == 2


def test_report_done_retained_has_holder_path():
    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0):
                RETAINED["job"] = asyncio.create_task(quick(), name="finished-job")
                await asyncio.sleep(0.001)
        return ei.value

    err = asyncio.run(main())
    (lk,) = err.leaks
    assert lk.kind == "done-retained"
    assert lk.held_by and any("RETAINED" in p and "'job'" in p for p in lk.held_by)
    msg = str(err)
    assert "[done-retained]" in msg and "held by:" in msg and "RETAINED" in msg
    assert "finished-job" in msg


def test_report_never_retrieved_has_exception():
    exc = Boom("kaput")

    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0):
                asyncio.create_task(boom(exc), name="failing")
                await asyncio.sleep(0.001)
        return ei.value

    err = asyncio.run(main())
    (lk,) = err.leaks
    assert lk.kind == "never-retrieved"
    assert lk.exception is exc
    assert lk.task.name == "failing"
    msg = str(err)
    assert "[never-retrieved]" in msg
    assert "Boom: kaput" in msg


def test_report_mentions_how_to_fix():
    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0):
                asyncio.create_task(beat())
        return ei.value

    assert "ignore=" in str(asyncio.run(main()))


async def boom_in_a_cycle():
    exc = Boom("cyclic")
    exc.task = asyncio.current_task()  # task -> exception -> task: only gc frees it
    raise exc


@pytest.mark.parametrize("collect", [True, False])
def test_collect_runs_gc_so_cyclic_garbage_surfaces_now(collect):
    async def main():
        async with taskleak.check(grace=0, collect=collect) as c:
            asyncio.create_task(boom_in_a_cycle(), name="cyclic-failure")
            await asyncio.sleep(0.001)
        return c

    gc.collect()
    gc.disable()  # no automatic collection in the middle of the scope
    try:
        if collect:
            with pytest.raises(TaskLeakError) as ei:
                asyncio.run(main())
            (lk,) = ei.value.leaks
            assert lk.kind == "never-retrieved" and lk.task.name == "cyclic-failure"
            assert isinstance(lk.exception, Boom) and str(lk.exception) == "cyclic"
        else:
            assert asyncio.run(main()).leaks == []
    finally:
        gc.enable()
        gc.collect()


def test_check_does_not_mark_exceptions_as_retrieved():
    # A failed task still referenced by a running frame is not a leak of the
    # scope - but reading its exception behind the user's back would silence
    # asyncio's own "Task exception was never retrieved" report later.
    contexts = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: contexts.append(ctx))
        async with taskleak.check(grace=0):
            t = asyncio.create_task(boom(Boom("unread")))
            await asyncio.sleep(0.001)
        assert t.done()
        assert t._log_traceback, "check() marked the task's exception as retrieved"
        del t
        gc.collect()

    asyncio.run(main())
    assert any("never retrieved" in str(c.get("message")) for c in contexts)
