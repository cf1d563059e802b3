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
        assert made and ok and sum(1 for c in calls if c.__qualname__ == 'noop') == 1
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
