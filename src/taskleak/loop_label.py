"""A stable name for an event loop: the same on every metric and across restarts.

Metric series are keyed by their labels, so a loop's label must not carry an
address or a counter that changes with every process (``<_UnixSelectorEventLoop
#3 at 0x7f...>`` made every restart a new series, broke ``rate()`` and never
joined the lag metric's ``loop="MainThread"``). The label is the name of the
thread that runs the loop; a thread running several loops at once gets
``-2``, ``-3``... for the later ones, and a label is reused once its loop is
closed or gone, so a thread that makes a new loop per job keeps one series.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["loop_label"]

_lock = threading.Lock()
_labels: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _thread_of(loop: Any) -> str:
    # asyncio's loops record the thread running them; uvloop's do not, and
    # callers on the loop's own thread pass its name instead.
    ident = getattr(loop, "_thread_id", None)
    if ident is not None:
        for t in threading.enumerate():
            if t.ident == ident:
                return t.name
    return "loop"


def _in_use(loop: Any) -> bool:
    try:
        return not loop.is_closed()
    except Exception:
        return False


def loop_label(loop: Any, thread_name: str | None = None) -> str:
    """The label of `loop`. ``thread_name``: the name of the thread running
    it, when the caller knows (it runs on that thread); else it is looked up."""
    with _lock:
        label = _labels.get(loop)
        if label is not None:
            return label
        base = thread_name if thread_name is not None else _thread_of(loop)
        taken = {lab for other, lab in list(_labels.items()) if other is not loop and _in_use(other)}
        label, n = base, 2
        while label in taken:
            label, n = f"{base}-{n}", n + 1
        try:
            _labels[loop] = label
        except TypeError:  # a loop type without weak references: named, not remembered
            pass
        return label
