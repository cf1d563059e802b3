"""install()/uninstall(): mechanism, probe and fallback, idempotence, factories."""

import asyncio
import sys
import threading

import pytest

import taskleak
from taskleak import _core
from taskleak.tracking import installer as tracking

# 3.10-3.13 register every task in a WeakSet that taskleak hooks; 3.14+ keeps
# tasks in per-thread lists, where the chaining task factory is the mechanism.
DEFAULT_MECHANISM = "registry" if sys.version_info < (3, 14) else "factory"


async def noop():
    pass


def _recorded(task):
    return _core.creation_info(task) is not None


def test_default_mechanism_and_probe(tracked):
    assert taskleak.status()["mechanism"] == DEFAULT_MECHANISM
    assert taskleak.is_installed()


def test_install_is_idempotent_and_changes_depth():
    taskleak.install(stack_depth=8)
    taskleak.install(stack_depth=8)
    assert taskleak.status()["stack_depth"] == 8
    taskleak.install()
    assert taskleak.status()["stack_depth"] == 32
    assert taskleak.status()["mechanism"] == DEFAULT_MECHANISM


@pytest.mark.parametrize("bad", [0, 129, -1, "32", 3.5, True])
def test_install_rejects_bad_depth(bad):
    with pytest.raises(ValueError, match="stack_depth"):
        taskleak.install(stack_depth=bad)


def test_concurrent_install_uninstall_is_safe():
    errors = []

    def worker(i):
        try:
            for _ in range(50):
                taskleak.install()
                if i % 2:
                    taskleak.uninstall()
        except Exception as e:  # pragma: no cover - would fail the test
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    taskleak.install()
    assert taskleak.status()["mechanism"] == DEFAULT_MECHANISM

    async def check():
        t = asyncio.create_task(noop())
        assert _recorded(t)
        await t

    asyncio.run(check())


def test_uninstall_stops_recording_and_restores_asyncio():
    taskleak.install()
    taskleak.uninstall()
    assert not taskleak.is_installed()
    ws = tracking._registry()
    assert "add" not in ws.__dict__

    async def main():
        t = asyncio.create_task(noop())
        rec = _recorded(t)
        await t
        return rec

    assert asyncio.run(main()) is False
    taskleak.install()


def test_tasks_from_before_install_have_unknown_creation_site():
    taskleak.uninstall()

    async def main():
        old = asyncio.create_task(asyncio.sleep(10), name="old-task")
        await asyncio.sleep(0)
        taskleak.install()
        new = asyncio.create_task(asyncio.sleep(10), name="new-task")
        await asyncio.sleep(0)
        snap = {t.name: t for t in taskleak.snapshot()}
        old.cancel()
        new.cancel()
        return snap

    snap = asyncio.run(main())
    assert snap["old-task"].created_at is None
    assert snap["old-task"].age_s is None
    assert snap["new-task"].created_at is not None


def test_probe_failure_falls_back_to_chaining_factory(monkeypatch):
    taskleak.uninstall()
    monkeypatch.setattr(tracking, "_probe_registry", lambda: False)
    taskleak.install()
    try:
        assert taskleak.status()["mechanism"] == "factory"
        assert "add" not in tracking._registry().__dict__

        async def main():
            loop = asyncio.get_running_loop()
            assert getattr(loop.get_task_factory(), "_taskleak_factory", False)
            t = asyncio.create_task(noop())
            ok = _recorded(t)
            await t
            return ok

        assert asyncio.run(main()) is True
    finally:
        taskleak.uninstall()
        monkeypatch.undo()
        taskleak.install()
    assert taskleak.status()["mechanism"] == DEFAULT_MECHANISM


@pytest.mark.parametrize("mechanism", ["registry", "factory"])
def test_user_task_factory_is_chained(monkeypatch, mechanism):
    taskleak.uninstall()
    if mechanism == "factory":
        monkeypatch.setattr(tracking, "_probe_registry", lambda: False)
    taskleak.install()
    calls = []

    def user_factory(loop, coro, **kwargs):
        calls.append(coro)
        t = asyncio.Task(coro, loop=loop, **kwargs)
        t.user_made = True
        return t

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_task_factory(user_factory)
        await asyncio.sleep(0)
        t = asyncio.create_task(noop())
        made = getattr(t, "user_made", False)
        ok = _recorded(t)
        await t
        return made, ok

    try:
        made, ok = asyncio.run(main())
        assert made and ok and sum(1 for c in calls if c.__qualname__ == "noop") == 1
    finally:
        taskleak.uninstall()
        monkeypatch.undo()
        taskleak.install()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks exist from 3.12 on")
def test_eager_tasks_are_recorded(tracked):
    async def suspends():
        await asyncio.sleep(0)

    async def finishes():
        return 1

    def runner_loop():
        loop = asyncio.new_event_loop()
        loop.set_task_factory(asyncio.eager_task_factory)
        return loop

    async def main():
        t1 = asyncio.create_task(suspends())
        t2 = asyncio.create_task(finishes())
        assert t2.done()  # really eager
        r = (_recorded(t1), _recorded(t2))
        await t1
        return r

    with asyncio.Runner(loop_factory=runner_loop) as runner:
        assert runner.run(main()) == (True, True)


def test_hook_never_changes_task_registry_semantics(tracked):
    async def main():
        ts = [asyncio.create_task(asyncio.sleep(10)) for _ in range(5)]
        await asyncio.sleep(0)
        mine = asyncio.all_tasks()
        assert set(ts) <= mine
        for t in ts:
            t.cancel()
        await asyncio.gather(*ts, return_exceptions=True)
        return len(mine)

    assert asyncio.run(main()) == 6


def test_a_task_taken_out_of_the_registry_keeps_a_sound_record(tracked):
    # asyncio.tasks._unregister_task() discards the task's weakref from the
    # registry while the task lives. The record's key is that weakref: it
    # used to be owned by the set alone and freed there, and the record then
    # pointed at freed memory (snapshot() raised SystemError on 3.10-3.13).
    # The record now keeps the weakref, and lets it go when the task dies.
    import gc

    async def main():
        ev = asyncio.Event()
        ts = [asyncio.create_task(ev.wait()) for _ in range(3)]
        await asyncio.sleep(0)
        before = taskleak.status()["live_records"]
        asyncio.tasks._unregister_task(ts[0])
        gc.collect()
        kept = _recorded(ts[0])
        snap = taskleak.snapshot()
        seen = sum(1 for i in range(len(snap)) if snap.at(i).task in ts)
        del snap
        ev.set()
        await asyncio.gather(*ts)
        del ts[:]
        await asyncio.sleep(0)  # the tasks' done callbacks, which hold them, run
        gc.collect()
        return before, kept, seen, taskleak.status()["live_records"]

    before, kept, seen, after = asyncio.run(main())
    assert kept
    assert seen == 3
    assert after <= before - 3  # every record went with its task, the unregistered one too


# ---- factory mode internals (issue 13: creation cost on 3.14/3.15) -------------------


@pytest.fixture
def factory_mode(monkeypatch):
    """taskleak in factory mode on every version (the default from 3.14 on)."""
    taskleak.uninstall()
    monkeypatch.setattr(tracking, "_probe_registry", lambda: False)
    taskleak.install()
    yield
    taskleak.uninstall()
    monkeypatch.undo()
    taskleak.install()


def test_factory_mode_needs_no_weakref_per_task_and_drops_records_at_death(factory_mode):
    import gc
    import weakref

    assert taskleak.status()["finalizer_hook"] is True

    async def main():
        t = asyncio.create_task(noop(), name="finalized")
        refs = weakref.getweakrefcount(t)
        recorded = _recorded(t)
        await t
        return refs, recorded

    before = taskleak.status()["live_records"]
    refs, recorded = asyncio.run(main())
    gc.collect()
    # 3.10-3.13 asyncio keeps its own weakref to every task (its registry WeakSet).
    assert refs == (0 if sys.version_info >= (3, 14) else 1) and recorded
    assert taskleak.status()["live_records"] <= before  # the record went with the task


def test_factory_mode_parent_and_current_task(factory_mode):
    async def child():
        pass

    async def main():
        me = _core.creation_info(asyncio.current_task())
        t = asyncio.create_task(child())
        info = _core.creation_info(t)
        await t
        return me, info

    me, info = asyncio.run(main())
    assert info[1] == me[0]  # parent serial: the creating task
    if sys.version_info >= (3, 14):
        # Probe tasks at install taught the core where the thread state keeps it.
        assert taskleak.status()["running_task"] == "thread-state"


def test_fast_create_task_keeps_create_task_semantics(factory_mode):
    import asyncio.base_events as be
    import contextvars

    method = be.BaseEventLoop.__dict__["create_task"]
    assert getattr(method, "_taskleak_create_task", False)
    assert method.__name__ == "create_task" and method.__wrapped__.__name__ == "create_task"
    var = contextvars.ContextVar("v", default=0)

    class Checked(asyncio.SelectorEventLoop):
        callers = []

        def _check_closed(self):
            Checked.callers.append(sys._getframe(1).f_code.co_name)
            super()._check_closed()

    async def main():
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        ctx.run(var.set, 7)

        async def read():
            return var.get()

        bound = loop.create_task  # a bound method, called later
        kw = {"context": ctx} if sys.version_info >= (3, 11) else {}
        t = bound(read(), name="named", **kw)
        assert t.get_name() == "named" and _recorded(t)
        return await t

    assert asyncio.run(main()) == (7 if sys.version_info >= (3, 11) else 0)

    closed = asyncio.new_event_loop()
    closed.close()
    coro = noop()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        closed.create_task(coro)
    coro.close()

    loop = Checked()
    try:
        t = loop.create_task(noop())
        # An overridden _check_closed: the original create_task runs (and calls it).
        assert "create_task" in Checked.callers, Checked.callers
        loop.run_until_complete(t)
    finally:
        loop.close()


def test_uninstall_restores_create_task(factory_mode):
    import asyncio.base_events as be

    assert getattr(be.BaseEventLoop.__dict__["create_task"], "_taskleak_create_task", False)
    taskleak.uninstall()
    assert not hasattr(be.BaseEventLoop.__dict__["create_task"], "_taskleak_create_task")
    taskleak.install()


def test_gc_collected_pending_task_keeps_its_chain_in_factory_mode(factory_mode):
    import gc

    taskleak.clear_loss_events()
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, ctx: None)

    async def forever():
        await asyncio.Event().wait()

    async def main():
        asyncio.create_task(forever(), name="doomed-factory")
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    loop.close()
    del loop
    gc.collect()
    ev = [e for e in taskleak.loss_events() if e.task_name == "doomed-factory"]
    assert len(ev) == 1 and ev[0].created_at is not None
    assert [f.function.rsplit(".", 1)[-1] for f in ev[0].stack] == ["forever", "wait"]
