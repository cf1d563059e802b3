"""Abandoned tasks: still running, but nothing can consume their result.

``asyncio.gather()`` without ``return_exceptions`` finishes its outer future
as soon as one branch raises; the other branches keep running, and their
results (or exceptions) go nowhere. A pending task whose *only* consumers are
gathers already finished is abandoned now, whatever a clock would say later:
on a virtual-clock loop it may well finish during a grace period, and be
missed by any rule that waits.

Only the structure is read (the task's done callbacks, and the gather's outer
future in their closures); nothing is run. A task that was asked to cancel is
never abandoned: it finishes from that cancellation within a loop iteration
or two (a gather cancelled from outside cancels its branches).
"""

from __future__ import annotations

from typing import Any

from ..frame import Frame, is_asyncio

__all__ = ["finished_gather_consumer", "is_abandoned", "gather_site"]

_GATHER_CALLBACK = "gather.<locals>._done_callback"


def _cancel_requested(task: Any) -> bool:
    if getattr(task, "_must_cancel", False):
        return True
    # cancel() of a task that waits hands the cancellation to what it waits
    # on (3.10 keeps no other trace of it: no cancelling()).
    waiter = getattr(task, "_fut_waiter", None)
    try:
        if waiter is not None and waiter.cancelled():
            return True
    except Exception:
        pass
    cancelling = getattr(task, "cancelling", None)  # 3.11+
    try:
        return bool(cancelling()) if cancelling is not None else False
    except Exception:
        return False


def finished_gather_consumer(callback: Any) -> Any:
    """The outer future of the gather `callback` belongs to, if it is done;
    else None."""
    code = getattr(callback, "__code__", None)
    if getattr(callback, "__qualname__", None) != _GATHER_CALLBACK or code is None:
        return None
    try:
        cell = callback.__closure__[code.co_freevars.index("outer")]
        outer = cell.cell_contents
    except (ValueError, TypeError, IndexError, AttributeError):
        return None
    try:
        return outer if outer is not None and outer.done() else None
    except Exception:
        return None


def is_abandoned(task: Any) -> bool:
    """Pending, not asked to cancel, and every consumer of its result (its
    done callbacks) is a gather that has already finished."""
    try:
        if task.done() or _cancel_requested(task):
            return False
        callbacks = list(getattr(task, "_callbacks", None) or ())
    except Exception:
        return False
    if not callbacks:
        return False
    for entry in callbacks:
        cb = entry[0] if isinstance(entry, tuple) else entry
        if finished_gather_consumer(cb) is None:
            return False
    return True


def gather_site(created_at: list[Frame] | None) -> Frame | None:
    """The line that called gather(), when gather made the task (it was
    given a coroutine): the frame just outside asyncio's gather on the
    task's creation stack (innermost first)."""
    frames = created_at or []
    for i, f in enumerate(frames):
        if f.function == "gather" and is_asyncio(f.filename):
            for outer in frames[i + 1 :]:
                if not is_asyncio(outer.filename):
                    return outer
            return None
    return None
