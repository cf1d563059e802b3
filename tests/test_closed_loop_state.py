"""State weak-keyed dicts keep for a closed event loop (heap.closed_loops):
found from the loop, and check() decides with it, before any collection or
holder search, that a finished task held only there is not held.

The pattern is anyio's: a blocking portal per test (Starlette's and FastAPI's
TestClient) runs a fresh loop in a thread, and ``RunVar`` storage, a
module-level WeakKeyDictionary keyed by the loop, keeps that loop's root task
after the loop is closed."""

import asyncio
import gc
import weakref
from typing import Any

import anyio
import anyio.from_thread
import pytest
from anyio.lowlevel import RunVar

import taskleak
import taskleak.testing.check as check_module
from taskleak.heap.closed_loops import closed_loop_state

PER_LOOP: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
ALSO_HELD: list = []
ROOT: "RunVar[Any]" = RunVar("root_task")


def _loop_with_state(close: bool) -> tuple[Any, int]:
    """(the loop, the id of the state kept for it): the caller holds no
    reference to that state, as nothing but the weak-keyed dict would."""

    async def main() -> "asyncio.Task[Any]":
        t = asyncio.ensure_future(asyncio.sleep(0))
        await t
        return t

    loop = asyncio.new_event_loop()
    t = loop.run_until_complete(main())
    PER_LOOP[loop] = {"root_task": t}
    if close:
        loop.close()
    return loop, id(PER_LOOP[loop])


def test_values_kept_for_a_closed_loop_are_found_from_the_loop():
    loop, state = _loop_with_state(close=True)
    try:
        assert [id(v) for v in closed_loop_state([loop])] == [state]
    finally:
        PER_LOOP.pop(loop, None)


def test_an_open_loop_and_a_value_held_elsewhere_are_left_to_the_search():
    loop, state = _loop_with_state(close=False)
    try:
        assert closed_loop_state([loop]) == []
    finally:
        loop.close()
    ALSO_HELD.append(PER_LOOP[loop])
    try:
        assert closed_loop_state([loop]) == []  # something else holds the value too
    finally:
        ALSO_HELD.clear()
    assert [id(v) for v in closed_loop_state([loop])] == [state]
    PER_LOOP.pop(loop, None)


@pytest.fixture
def costly_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"collect": 0, "search": 0}
    collect, search = gc.collect, check_module.holders_of_finished

    def counting_collect(*a: Any) -> int:
        calls["collect"] += 1
        return collect(*a)

    def counting_search(*a: Any, **kw: Any) -> Any:
        calls["search"] += 1
        return search(*a, **kw)

    monkeypatch.setattr(gc, "collect", counting_collect)
    monkeypatch.setattr(check_module, "holders_of_finished", counting_search)
    return calls


async def _remember_root() -> None:
    # what anyio 4.9's find_root_task() does for the loop a portal runs
    ROOT.set(asyncio.current_task())


def test_portal_per_test_costs_no_collection_nor_search(costly_calls: dict[str, int]):
    for _ in range(3):
        with taskleak.check():
            with anyio.from_thread.start_blocking_portal() as portal:
                portal.call(_remember_root)
    assert costly_calls == {"collect": 0, "search": 0}


def test_a_portal_root_task_also_held_elsewhere_is_still_a_leak(costly_calls: dict[str, int]):
    async def remember_and_keep() -> None:
        await _remember_root()
        ALSO_HELD.append(asyncio.current_task())

    try:
        with pytest.raises(taskleak.TaskLeakError, match="done-retained") as err:
            with taskleak.check():
                with anyio.from_thread.start_blocking_portal() as portal:
                    portal.call(remember_and_keep)
        assert "ALSO_HELD" in str(err.value)
        assert costly_calls["search"] == 1
    finally:
        ALSO_HELD.clear()
