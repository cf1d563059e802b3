"""_core.held_from_outside: is a finished task held by something outside its
own reference cycles? Decided over what the task reaches, as the collector
would, without running it."""

from __future__ import annotations

import asyncio
import gc
import sys

from taskleak import _core

HELD = []


async def fail():
    raise ValueError("x")


async def quick():
    return 1


def _stops(tasks):
    out = [t.get_loop() for t in tasks]
    out += [m.__dict__ for m in list(sys.modules.values()) if isinstance(getattr(m, "__dict__", None), dict)]
    f = sys._getframe()
    while f is not None:
        out.append(f)
        f = f.f_back
    return out


def _finished(coro_fn, keep_cycle=False):
    """A finished task, created and awaited on a loop that is then closed."""
    loop = asyncio.new_event_loop()
    try:
        t = loop.create_task(coro_fn())
        loop.run_until_complete(asyncio.wait([t]))
    finally:
        loop.close()
    if keep_cycle:
        t.self_ref = [t]  # type: ignore[attr-defined]  # a cycle through the task itself
    return t


def test_a_task_in_its_own_cycle_is_not_held():
    gc.disable()
    try:
        t = _finished(quick, keep_cycle=True)  # task -> list -> task
        tasks = [t]
        del t
        # Our list's one reference is discounted: only the cycle is left.
        assert _core.held_from_outside(tasks, _stops(tasks), 10_000) == [False]
        # Garbage that is *not* reachable from the task still counts as
        # outside (conservative: the check then runs one collection).
        other = {"task": tasks[0]}
        other["self"] = other
        del other
        assert _core.held_from_outside(tasks, _stops(tasks), 10_000) == [True]
        gc.collect()
        assert _core.held_from_outside(tasks, _stops(tasks), 10_000) == [False]
    finally:
        gc.enable()


def test_a_failed_task_in_its_traceback_cycle_is_garbage_until_stored():
    gc.disable()
    try:
        t = _finished(fail)
        exc = t.exception()  # retrieved: the task's exception refers to frames
        del exc
        tasks = [t]
        del t
        assert _core.held_from_outside(tasks, _stops(tasks), 100_000) == [False]
        HELD.append(tasks[0])
        try:
            assert _core.held_from_outside(tasks, _stops(tasks), 100_000) == [True]
        finally:
            HELD.clear()
    finally:
        gc.enable()


def test_test_local_objects_are_transparent():
    t = _finished(quick)
    fixture_values = {"jobs": [t]}
    tasks = [t]
    del t
    assert _core.held_from_outside(tasks, _stops(tasks), 10_000) == [True]
    assert _core.held_from_outside(tasks, _stops(tasks), 10_000, [fixture_values]) == [False]


def test_past_the_limit_it_does_not_decide():
    t = _finished(quick)
    t.big = [[i] for i in range(1000)]  # type: ignore[attr-defined]
    tasks = [t]
    del t
    assert _core.held_from_outside(tasks, _stops(tasks), 100) is None
    assert _core.held_from_outside(tasks, _stops(tasks), 10_000) == [False]


def test_bad_arguments():
    import pytest

    with pytest.raises(TypeError):
        _core.held_from_outside((), [], 10)
    with pytest.raises(TypeError):
        _core.held_from_outside([], [], 10, ())
