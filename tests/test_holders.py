"""check()'s holder search (taskleak.heap.holders) on the C++ forward search:
what counts as a holder after a scope, and the several-targets walk under it."""

import asyncio
import sys
import weakref
from typing import Any

import pytest

from taskleak import _core
from taskleak.heap.holders import holders_of_finished

HELD: dict = {}
GENS: dict = {}


class Box:
    def __init__(self, inner: Any = None) -> None:
        self.inner = inner


def _finished_task(name: str) -> "asyncio.Task[Any]":
    async def quick() -> int:
        return 1

    async def main() -> "asyncio.Task[Any]":
        t = asyncio.ensure_future(quick())
        t.set_name(name)
        await t
        return t

    return asyncio.run(main())


def _paths(task: Any, exclude: list[Any] = ()) -> list[str]:  # type: ignore[assignment]
    return holders_of_finished([task], {id(task)}, exclude=exclude).get(id(task), [])


def test_forward_search_many_finds_each_target_in_one_walk():
    a, b = Box(), Box()
    HELD["pair"] = {"a": a, "deep": [Box(b)]}
    try:
        found, visited, exhausted = _core.forward_search_many([a, b], [sys.modules[__name__].__dict__], [], [], 10, 3)
        assert visited > 0 and not exhausted
        (pa,), (pb,) = found
        assert pa[1][-1] is a and pa[1][-2] is HELD["pair"]
        assert pb[1][-1] is b and HELD["pair"]["deep"] in pb[1] and HELD["pair"]["deep"][0] in pb[1]
    finally:
        HELD.clear()


def test_forward_search_many_never_enters_a_target():
    # `inner` is reachable only through the other target: not a path of its own.
    inner = Box()
    outer = Box(inner)
    HELD["outer"] = outer
    try:
        (found_outer, found_inner), _, _ = _core.forward_search_many(
            [outer, inner], [sys.modules[__name__].__dict__], [], [], 10, 3
        )
        assert len(found_outer) == 1 and found_inner == []
        # Asked alone, it is found through the other.
        (((_, chain),),), _, _ = _core.forward_search_many([inner], [sys.modules[__name__].__dict__], [], [], 10, 3)
        assert outer in chain
    finally:
        HELD.clear()


def test_forward_search_many_bad_arguments():
    with pytest.raises(TypeError, match="targets must be a list"):
        _core.forward_search_many((Box(),), [], [], [], 10, 3)
    assert _core.forward_search_many([], [sys.modules[__name__].__dict__], [], [], 10, 3)[0] == []


def test_module_global_and_excluded_objects():
    t = _finished_task("kept")
    HELD["jobs"] = [t]
    try:
        assert _paths(t) == [f"module {__name__}['HELD']['jobs'][0]"]
        # A path through an excluded object (a test's own objects) is not one.
        assert _paths(t, exclude=[HELD["jobs"]]) == []
    finally:
        HELD.clear()


def test_state_on_the_loop_is_a_holder_its_bookkeeping_is_not():
    loop = asyncio.new_event_loop()
    try:

        async def quick() -> None:
            pass

        t = loop.create_task(quick())
        loop.run_until_complete(t)
        loop.app = {"tasks": [t]}  # type: ignore[attr-defined]
        loop._ready.append(t)  # type: ignore[attr-defined]  # never a holder: asyncio's own queue
        assert _paths(t) == ["loop.__dict__['app']['tasks'][0]"]
        del loop.app  # type: ignore[attr-defined]
        assert _paths(t) == []
        loop._ready.clear()  # type: ignore[attr-defined]
    finally:
        loop.close()


def _holder(name: str):
    task = yield
    # Running now: this generator's local `task` is a running frame's, not a holder.
    yield _paths(task)
    yield None


def test_a_running_generator_is_not_a_holder_a_suspended_one_is():
    t = _finished_task("in-generator")
    GENS["running"] = g = _holder("running")
    next(g)
    try:
        assert g.send(t) == []
    finally:
        g.close()
        GENS.clear()

    def suspended(task: Any):
        yield task

    GENS["suspended"] = s = suspended(t)
    next(s)
    try:
        paths = _paths(t)
        assert len(paths) == 1 and paths[0].startswith(f"module {__name__}['GENS']['suspended']"), paths
        assert "'task'" in paths[0], paths
    finally:
        s.close()
        GENS.clear()


def test_a_task_under_suspicion_is_not_a_holder_a_live_one_from_before_is():
    async def main() -> list[list[str]]:
        inbox: list[Any] = []
        stop = asyncio.Event()

        async def server() -> None:
            handled = []
            while not stop.is_set():
                while inbox:
                    handled.append(inbox.pop())
                await asyncio.sleep(0.001)

        async def quick() -> None:
            pass

        srv = asyncio.create_task(server(), name="server")
        t = asyncio.create_task(quick(), name="handled")
        inbox.append(t)
        await asyncio.sleep(0.01)
        out = [
            holders_of_finished([t], {id(t)}).get(id(t), []),
            holders_of_finished([t], {id(t), id(srv)}).get(id(t), []),
        ]  # the server is a suspect too
        stop.set()
        await srv
        return out

    outside, suspect = asyncio.run(main())
    assert outside == [
        "task 'server' (test_a_task_under_suspicion_is_not_a_holder_a_live_one_from_before_is."
        "<locals>.main.<locals>.server) still running, coroutine local 'handled'[0]"
    ]
    assert suspect == []


def test_many_targets_in_one_big_container_each_named_by_its_own_position():
    # Past _MEMO_MIN members the container's positions are indexed once for
    # all the paths through it: each must still name its own slot.
    async def quick(i: int) -> int:
        return i

    async def main() -> list[Any]:
        ts = [asyncio.create_task(quick(i)) for i in range(40)]
        await asyncio.gather(*ts)
        return ts

    tasks = asyncio.run(main())
    HELD["many"] = list(reversed(tasks))
    HELD["by_name"] = {f"k{i}": t for i, t in enumerate(tasks)}
    try:
        found = holders_of_finished(tasks, {id(t) for t in tasks})
        for i, t in enumerate(tasks):
            assert sorted(found[id(t)]) == sorted(
                [f"module {__name__}['HELD']['many'][{39 - i}]", f"module {__name__}['HELD']['by_name']['k{i}']"]
            ), found[id(t)]
    finally:
        HELD.clear()


def test_the_search_leaves_no_garbage_behind():
    import gc

    t = _finished_task("no-cycle")
    HELD["t"] = t
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        assert _paths(t) == [f"module {__name__}['HELD']['t']"]
        # Nothing the search made survives it in a reference cycle (the
        # targets and the excluded objects would live until a collection).
        assert gc.collect() == 0, before
    finally:
        gc.enable()
        HELD.clear()


PER_LOOP: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
PER_OBJECT: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def test_state_keyed_weakly_by_a_closed_loop_holds_nothing_by_an_open_one_does():
    # anyio's RunVar keeps per-loop state in a module-level WeakKeyDictionary
    # keyed by the loop: a test's own loop, closed by its teardown, takes that
    # state with it (two anyio tests failed on this before).
    def run_on(loop: Any) -> "asyncio.Task[Any]":
        async def quick() -> int:
            return 1

        async def main() -> "asyncio.Task[Any]":
            t = asyncio.ensure_future(quick())
            await t
            PER_LOOP[asyncio.get_running_loop()] = {"root_task": t}
            return t

        return loop.run_until_complete(main())

    closed = asyncio.new_event_loop()
    t1 = run_on(closed)
    closed.close()
    assert _paths(t1) == []

    still_open = asyncio.new_event_loop()
    try:
        t2 = run_on(still_open)
        [path] = _paths(t2)
        assert path.startswith("module test_holders['PER_LOOP'].data[") and path.endswith("['root_task']"), path
    finally:
        still_open.close()
    assert _paths(t2) == []


def test_state_keyed_weakly_by_a_live_object_holds():
    key = Box()
    t = _finished_task("weak-keyed")
    PER_OBJECT[key] = {"task": t}
    try:
        [path] = _paths(t)
        assert path.startswith("module test_holders['PER_OBJECT'].data[") and path.endswith("['task']"), path
    finally:
        del PER_OBJECT[key]
