"""Who awaits a future: one question, two implementations.

* **Native links** (CPython 3.14+): asyncio records, on the awaited future
  itself, the tasks awaiting it (``fut._asyncio_awaited_by``, what
  ``asyncio.capture_call_graph()`` and ``python -m asyncio pstree`` read):
  ``await fut`` in a task, ``gather()``, ``wait()``, ``as_completed()``,
  ``shield()``, ``TaskGroup`` and ``staggered_race()`` add and remove them.
* **Callback reconstruction** (3.10-3.13, and futures without the attribute,
  e.g. duck-typed ones): rebuilt from done callbacks, the only trace an await
  leaves there:

  - ``await other_task``: ``other_task`` has the awaiting task's wakeup as a
    callback (``task_wakeup`` bound to the task on 3.12+, a
    ``TaskWakeupMethWrapper`` on 3.10/3.11, ``Task.__wakeup`` for pure-Python
    tasks);
  - ``gather()``, ``wait()``, ``wait_for()`` (3.10/3.11), ``shield()``: the
    child has a callback whose closure, ``functools.partial`` arguments or
    bound ``self`` is a Future that some task awaits (the
    ``_GatheringFuture``, the ``wait()`` waiter, the shield's outer Future),
    followed recursively;
  - ``TaskGroup``: the child has ``TaskGroup._on_task_done`` as a callback,
    and the group's ``_parent_task`` is its awaiter.

The choice is made by feature detection (does ``asyncio.Future`` have
``_asyncio_awaited_by``?), once, in :func:`resolver`.
"""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model.task_info import TaskInfo

__all__ = ["NATIVE_AWAITED_BY", "AwaitersResolver", "resolver", "awaiters_of"]

#: True when the interpreter keeps awaited-by links on futures (CPython 3.14+).
NATIVE_AWAITED_BY: bool = hasattr(asyncio.Future, "_asyncio_awaited_by")

_MAX_DEPTH = 6  # futures between a task and its awaiter (a gather in a gather...)
_MISSING = object()


# -- callback reconstruction ----------------------------------------------------------


def _task_of_wakeup(fn: Any) -> asyncio.Task[Any] | None:
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return owner
    if type(fn).__name__ == "TaskWakeupMethWrapper":  # 3.10/3.11 C tasks
        for r in gc.get_referents(fn):
            if isinstance(r, asyncio.Task):
                return r
    return None


def _futures_in(fn: Any) -> list[Any]:
    """Futures a done callback refers to (closure, partial args, bound self)."""
    out: list[Any] = []
    if isinstance(fn, functools.partial):
        out += [a for a in fn.args if asyncio.isfuture(a)]
        fn = fn.func
    owner = getattr(fn, "__self__", None)
    if asyncio.isfuture(owner):
        out.append(owner)
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            v = cell.cell_contents
        except ValueError:
            continue
        if asyncio.isfuture(v):
            out.append(v)
    return out


def _callbacks(fut: Any) -> list[Any]:
    try:
        cbs = fut._callbacks
    except Exception:
        return []
    return [cb[0] if isinstance(cb, tuple) else cb for cb in cbs or ()]


def _dedup(found: list[Any], fut: Any) -> list[asyncio.Task[Any]]:
    out: list[asyncio.Task[Any]] = []
    for t in found:
        if t is not fut and all(t is not o for o in out):
            out.append(t)
    return out


def awaiters_of(fut: Any, owner: dict[int, asyncio.Task[Any]], depth: int = 0) -> list[asyncio.Task[Any]]:
    """Tasks awaiting `fut` (a task or future) according to its done callbacks,
    given ``owner``: id(future) -> the task parked on it (its ``_fut_waiter``).
    The 3.10-3.13 reconstruction; see :func:`resolver` for the general entry."""
    found: list[asyncio.Task[Any]] = []
    for fn in _callbacks(fut):
        t = _task_of_wakeup(fn)
        if t is not None:
            found.append(t)
            continue
        tg = getattr(fn, "__self__", None)
        parent = getattr(tg, "_parent_task", None) if tg is not None and not asyncio.isfuture(tg) else None
        if isinstance(parent, asyncio.Task):  # TaskGroup._on_task_done
            found.append(parent)
            continue
        for f in _futures_in(fn):
            if f is fut:
                continue
            t = owner.get(id(f))
            if t is not None:
                found.append(t)
            elif depth < _MAX_DEPTH:  # e.g. a gather inside a gather, a shield of a gather
                found += awaiters_of(f, owner, depth + 1)
    return _dedup(found, fut)


# -- the two resolvers ----------------------------------------------------------------


class AwaitersResolver:
    """``resolver(fut)`` -> the tasks awaiting `fut`, for one snapshot's
    pending tasks. This one rebuilds links from done callbacks; call
    :meth:`close` when done (it holds the tasks' waiters)."""

    native = False

    def __init__(self, pending: Sequence[TaskInfo]) -> None:
        self._pending = pending
        self._owner: dict[int, asyncio.Task[Any]] | None = None

    def _owners(self) -> dict[int, asyncio.Task[Any]]:
        if self._owner is None:
            owner: dict[int, asyncio.Task[Any]] = {}
            for t in self._pending:
                w = t.blocked_on()
                if w is not None:
                    owner[id(w)] = t.task
                del w
            self._owner = owner
        return self._owner

    def __call__(self, fut: Any) -> list[asyncio.Task[Any]]:
        return awaiters_of(fut, self._owners())

    def close(self) -> None:
        if self._owner is not None:
            self._owner.clear()
        self._owner = None


class NativeAwaitersResolver(AwaitersResolver):
    """Reads asyncio's own awaited-by links (3.14+). A future without them (a
    duck-typed future) falls back to the callback reconstruction. The links
    are a set: awaiters come back in snapshot order, for stable output."""

    native = True

    def __init__(self, pending: Sequence[TaskInfo]) -> None:
        super().__init__(pending)
        self._order = {id(t.task): i for i, t in enumerate(pending)}

    def __call__(self, fut: Any) -> list[asyncio.Task[Any]]:
        links = getattr(fut, "_asyncio_awaited_by", _MISSING)
        if links is _MISSING:
            return super().__call__(fut)
        found: list[asyncio.Task[Any]] = []
        self._collect(links, found, 0)
        out = _dedup(found, fut)
        n = len(self._order)
        out.sort(key=lambda t: self._order.get(id(t), n))
        return out

    def _collect(self, links: Any, found: list[Any], depth: int) -> None:
        for w in links or ():
            if isinstance(w, asyncio.Task):
                found.append(w)
            elif depth < _MAX_DEPTH and asyncio.isfuture(w):  # a Future awaiting a future
                self._collect(getattr(w, "_asyncio_awaited_by", None), found, depth + 1)


def resolver(pending: Sequence[TaskInfo]) -> AwaitersResolver:
    """The "who awaits this future" function for `pending` (a snapshot's
    pending tasks): native links where the interpreter keeps them, else the
    callback reconstruction."""
    return (NativeAwaitersResolver if NATIVE_AWAITED_BY else AwaitersResolver)(pending)
