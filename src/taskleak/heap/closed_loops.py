"""State kept for event loops that are already closed: found from the loops,
not by searching the heap.

Libraries keep per-loop state in a ``weakref.WeakKeyDictionary`` keyed by the
event loop (anyio's ``RunVar`` storage, ``anyio.lowlevel._run_vars``, keeps
the root task of every loop a portal or ``anyio.run()`` ran). Once that loop
is closed, such an entry holds nothing the program can still use: the holder
search (``heap.holders``) drops paths through it. But the entry keeps its
value, and the finished tasks in it, alive (the value refers to the loop
through the task, so the weak key never dies), and a check that only sees
"held from outside" pays a collection and a holder search per test to learn
that.

:func:`closed_loop_state` answers the same question up front and cheaply:
the weak references to each closed loop (``weakref.getweakrefs``) lead to the
weak-keyed dicts that hold it, and from there to the values kept under it.
Values held by nothing but that entry can be handed to
``_core.held_from_outside`` as *transparent* (they die with their key), so a
finished task held only through them is not held, and no collection or
search runs for it. A value something else also holds is left out: the
search then decides, as before.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections.abc import Iterable
from typing import Any

__all__ = ["closed_loop_state"]


def _item_refcount(d: dict[Any, Any], key: Any) -> int:
    return sys.getrefcount(d[key])


# The reference count _item_refcount sees for a value held by its dict entry
# alone (measured, not assumed: interpreters differ in the temporaries they
# count).
_SOLE = _item_refcount({0: object()}, 0)


def _weak_keyed_dict(callback: Any) -> Any | None:
    """The WeakKeyDictionary a weak reference's callback belongs to (its
    ``remove`` function keeps a weak reference to the dict as a default
    argument), or None."""
    for d in getattr(callback, "__defaults__", None) or ():
        if isinstance(d, weakref.ref):
            owner = d()
            if isinstance(owner, weakref.WeakKeyDictionary):
                return owner
    return None


def closed_loop_state(loops: Iterable[Any]) -> list[Any]:
    """Values that weak-keyed dicts keep under these event loops, for those
    loops already closed, and that nothing but that dict entry holds."""
    out: list[Any] = []
    seen: set[int] = set()
    for lp in loops:
        if id(lp) in seen or not isinstance(lp, asyncio.AbstractEventLoop):
            continue
        seen.add(id(lp))
        try:
            if not lp.is_closed():
                continue
            refs = weakref.getweakrefs(lp)
        except Exception:  # an exotic loop
            continue
        for r in refs:
            try:
                owner = _weak_keyed_dict(r.__callback__)
                data = getattr(owner, "data", None) if owner is not None else None
                if type(data) is not dict or r not in data:
                    continue
                if _item_refcount(data, r) == _SOLE:
                    out.append(data[r])
            except Exception:  # a dict changing under us (another thread)
                continue
    return out
