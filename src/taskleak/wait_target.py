"""What a pending task is blocked on, in words.

The innermost frame of the await chain names the asyncio primitive
(``Event.wait``, ``Queue.get``, ``sleep``...); ``task._fut_waiter`` names the
Future the task is parked on (another task, a gather, an executor job).
"""

from __future__ import annotations

import asyncio
import os
import site
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import taskleak._core as _core

from .frame import Frame, short_path

__all__ = ["describe_wait", "classify_wait", "WaitTarget", "WAIT_KINDS", "orphan_reason"]

# Orphan verdicts of _core.orphan_analysis.
NOT_WAITING, REACHABLE, ORPHANED, UNKNOWN = 0, 1, 2, 3

# Every kind classify_wait() can return.
WAIT_KINDS = (
    "sleep",
    "task",
    "gather",
    "wait",
    "wait_for",
    "as_completed",
    "taskgroup",
    "shield",
    "event",
    "lock",
    "semaphore",
    "condition",
    "queue_get",
    "queue_put",
    "queue_join",
    "barrier",
    "stream",
    "socket",
    "executor",
    "future",
    "scheduled",
    "running",
    "done",
)

# Label prefix (from _PRIMITIVES) -> kind
_KIND_OF_LABEL = {
    "asyncio.sleep()": "sleep",
    "asyncio.wait()": "wait",
    "asyncio.wait_for()": "wait_for",
    "asyncio.as_completed()": "as_completed",
    "Event.wait()": "event",
    "Lock.acquire()": "lock",
    "Semaphore.acquire()": "semaphore",
    "Condition.wait()": "condition",
    "Barrier.wait()": "barrier",
    "Queue.get()": "queue_get",
    "Queue.put()": "queue_put",
    "Queue.join()": "queue_join",
    "stream": "stream",
    "socket": "socket",
    "TaskGroup exit": "taskgroup",
}

# (file inside asyncio, function qualname) -> label
_PRIMITIVES = {
    ("tasks.py", "sleep"): "asyncio.sleep()",
    ("tasks.py", "wait"): "asyncio.wait()",
    ("tasks.py", "_wait"): "asyncio.wait()",
    ("tasks.py", "wait_for"): "asyncio.wait_for()",
    ("tasks.py", "as_completed.<locals>._wait_for_one"): "asyncio.as_completed()",
    ("tasks.py", "_wait_for_one"): "asyncio.as_completed()",
    ("tasks.py", "_AsCompletedIterator._wait_for_one"): "asyncio.as_completed()",
    ("timeouts.py", "Timeout.__aexit__"): "asyncio.wait_for()",
    ("locks.py", "Event.wait"): "Event.wait()",
    ("locks.py", "Lock.acquire"): "Lock.acquire()",
    ("locks.py", "Semaphore.acquire"): "Semaphore.acquire()",
    ("locks.py", "BoundedSemaphore.acquire"): "Semaphore.acquire()",
    ("locks.py", "Condition.wait"): "Condition.wait()",
    ("locks.py", "Condition.wait_for"): "Condition.wait()",
    ("locks.py", "Barrier.wait"): "Barrier.wait()",
    ("locks.py", "Barrier._block"): "Barrier.wait()",
    ("locks.py", "Barrier._wait"): "Barrier.wait()",
    ("queues.py", "Queue.get"): "Queue.get() (queue empty)",
    ("queues.py", "Queue.put"): "Queue.put() (queue full)",
    ("queues.py", "Queue.join"): "Queue.join()",
    ("streams.py", "StreamReader._wait_for_data"): "stream read",
    ("streams.py", "StreamWriter.drain"): "stream write (drain)",
    ("streams.py", "FlowControlMixin._drain_helper"): "stream write (drain)",
    ("taskgroups.py", "TaskGroup.__aexit__"): "TaskGroup exit",
    ("taskgroups.py", "TaskGroup._aexit"): "TaskGroup exit",
    ("base_events.py", "BaseEventLoop.sock_connect"): "socket connect",
    ("selector_events.py", "BaseSelectorEventLoop.sock_recv"): "socket I/O (sock_recv)",
    ("selector_events.py", "BaseSelectorEventLoop.sock_recv_into"): "socket I/O (sock_recv_into)",
    ("selector_events.py", "BaseSelectorEventLoop.sock_sendall"): "socket I/O (sock_sendall)",
    ("selector_events.py", "BaseSelectorEventLoop.sock_accept"): "socket I/O (sock_accept)",
    ("selector_events.py", "BaseSelectorEventLoop.sock_connect"): "socket connect",
}

_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep


def _primitive(chain: Sequence[Frame]) -> str | None:
    """Label of the outermost known frame of the innermost run of asyncio
    frames (what the caller called: Barrier.wait, not the Condition.wait it
    uses), with the public method for stream reads."""
    found = None
    for i in range(len(chain) - 1, -1, -1):
        f = chain[i]
        if not f.filename.startswith(_ASYNCIO_DIR):
            break
        if (f.filename[len(_ASYNCIO_DIR) :], f.function) in _PRIMITIVES:
            found = i
    if found is None:
        return None
    f = chain[found]
    label = _PRIMITIVES[(f.filename[len(_ASYNCIO_DIR) :], f.function)]
    if label == "stream read":
        # Name the public method the caller used (readline, not readuntil).
        j = found
        while j > 0 and chain[j - 1].filename == f.filename:
            j -= 1
        label = f"stream read ({chain[j].function.rsplit('.', 1)[-1]})"
    return label


def _task_label(t: asyncio.Task[Any]) -> str:
    try:
        coro = t.get_coro()
        qual = getattr(coro, "__qualname__", type(coro).__name__)
        return f"task {t.get_name()!r} ({qual}())"
    except Exception:
        return "a task"


def _innermost_generator(task: asyncio.Task[Any]) -> Any:
    obj: Any = task.get_coro()
    last = None
    for _ in range(256):
        if obj is None:
            break
        nxt = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None) or getattr(obj, "ag_await", None)
        if not hasattr(obj, "cr_await") and not hasattr(obj, "gi_yieldfrom") and not hasattr(obj, "ag_await"):
            break
        last = obj
        obj = nxt
    return last


def _sleep_remaining(task: asyncio.Task[Any]) -> float | None:
    gen = _innermost_generator(task)
    if gen is None:
        return None
    h = _core.generator_local(gen, "h")
    if h is None or not hasattr(h, "when"):
        return None
    try:
        return max(0.0, float(h.when()) - task.get_loop().time())
    except Exception:
        return None


def _is_executor_future(fut: Any) -> bool:
    # wrap_future() chains the concurrent.futures.Future with callbacks named
    # _call_check_cancel (on the asyncio side) - the only trace it leaves. It
    # adds it to the future it has just made, before anyone can await that:
    # the first callback. Only the first few are looked at; a Future awaited
    # by 25,000 tasks has 25,000 callbacks.
    for cb in (getattr(fut, "_callbacks", None) or ())[:4]:
        fn = cb[0] if isinstance(cb, tuple) else cb
        if getattr(fn, "__name__", "") == "_call_check_cancel":
            return True
    return False


def _future_label(fut: Any) -> str:
    if isinstance(fut, asyncio.Task):
        return _task_label(fut)
    children = getattr(fut, "_children", None)
    if children is not None:  # asyncio.tasks._GatheringFuture
        done = sum(1 for c in children if c.done())
        return f"gather() of {len(children)} ({done} done)"
    if _is_executor_future(fut):
        return "an executor job (run_in_executor)"
    return "a Future"


def describe_wait(task: asyncio.Task[Any], chain: Sequence[Frame], waiter: Any, detailed: bool = True) -> str:
    """One line: what `task` (pending) is blocked on."""
    label = _primitive(chain)
    if label == "asyncio.sleep()" and detailed:
        left = _sleep_remaining(task)
        if left is not None:
            label = f"asyncio.sleep() ({left:.1f}s left)"
    if label is None and waiter is not None:
        label = _future_label(waiter)
        if chain and label == "a Future":
            label = f"a Future awaited at {short_path(chain[-1].filename)}:{chain[-1].lineno}"
    elif label is not None and waiter is not None and isinstance(waiter, asyncio.Task):
        label = f"{label} on {_task_label(waiter)}"
    if label is None:
        try:
            loop = task.get_loop()
            if asyncio.current_task(loop) is task:
                return "running"
        except Exception:
            pass
        return "ready to run (scheduled)"
    return label


# -- classification (why(), dumps, JSON) ----------------------------------------

_STDLIB_DIRS = tuple(
    {os.path.realpath(p) + os.sep for p in (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])}
)


def _site_dirs() -> tuple[str, ...]:
    dirs = set()
    try:
        dirs.update(site.getsitepackages())
    except Exception:
        pass
    try:
        dirs.add(site.getusersitepackages())
    except Exception:
        pass
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


_SITE_DIRS = _site_dirs()
_SITE_MARKERS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)


def is_third_party(filename: str) -> bool:
    """Installed third-party code: under a site-packages / dist-packages
    directory (any of them, virtualenvs and vendored trees included)."""
    if any(m in filename for m in _SITE_MARKERS):
        return True
    return filename.startswith(_SITE_DIRS) if _SITE_DIRS else False


def _is_stdlib(filename: str) -> bool:
    if is_third_party(filename):
        return False
    return (
        filename.startswith(_STDLIB_DIRS)
        or os.path.realpath(filename).startswith(_STDLIB_DIRS)
        or filename.startswith("<frozen ")
    )


def first_non_stdlib(chain: Sequence[Frame]) -> Frame | None:
    """Innermost frame of the await chain outside asyncio and the standard library."""
    for f in reversed(chain):
        if not f.filename.startswith(_ASYNCIO_DIR) and not _is_stdlib(f.filename):
            return f
    return None


@dataclass
class WaitTarget:
    """What a pending task waits on, classified from its innermost await.

    ``kind`` is one of :data:`WAIT_KINDS`; ``label`` is the one-line text
    (``TaskInfo.waiting_on``); ``detail`` holds kind-specific facts
    (``seconds_left`` for sleep, ``task`` for a task, ``children``/``done`` for
    gather); ``frame`` is the innermost frame outside asyncio and the standard
    library, and ``third_party`` is True when that frame is in an installed
    package (a wait inside a library rather than in your code)."""

    kind: str
    label: str
    frame: Frame | None = None
    third_party: bool = False
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """ "stuck in aiohttp/connector.py:120 in connect awaiting a Future"-style text."""
        if self.frame is None:
            return self.label
        where = f"{short_path(self.frame.filename)}:{self.frame.lineno} in {self.frame.function}"
        if self.third_party:
            return f"stuck in {where} (third-party) awaiting {_awaiting(self)}"
        return f"waiting in {where} on {_awaiting(self)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "frame": None if self.frame is None else self.frame.to_dict(),
            "third_party": self.third_party,
            "detail": dict(self.detail),
        }


def _awaiting(w: WaitTarget) -> str:
    if w.kind == "future":
        return "a Future"
    return w.label


def classify_wait(task: asyncio.Task[Any], chain: Sequence[Frame], waiter: Any, pending: bool = True) -> WaitTarget:
    """Classify what `task` waits on (see :class:`WaitTarget`)."""
    if not pending:
        return WaitTarget("done", "")
    label = describe_wait(task, chain, waiter)
    frame = first_non_stdlib(chain)
    third = frame is not None and is_third_party(frame.filename)
    detail: dict[str, Any] = {}
    kind = None
    prim = _primitive(chain)
    if prim is not None:
        kind = (
            _KIND_OF_LABEL.get(prim)
            or _KIND_OF_LABEL.get(prim.split(" (")[0])
            or _KIND_OF_LABEL.get(prim.split(" ")[0])
        )
        if kind == "sleep":
            left = _sleep_remaining(task)
            if left is not None:
                detail["seconds_left"] = round(left, 3)
    if kind is None or kind in ("wait", "wait_for"):
        if isinstance(waiter, asyncio.Task):
            kind = kind or "task"
            detail["task"] = waiter.get_name()
        elif getattr(waiter, "_children", None) is not None:
            kind = "gather"
            children = waiter._children
            detail["children"] = len(children)
            detail["done"] = sum(1 for c in children if c.done())
        elif waiter is not None and kind is None:
            if _is_executor_future(waiter):
                kind = "executor"
            elif _is_shield_outer(waiter):
                kind = "shield"
                label = "asyncio.shield()"
            else:
                kind = "future"
    if waiter is None:
        # Not parked on a Future: running, or run as soon as the loop gets to it
        # (a task not started yet, or after asyncio.sleep(0)).
        kind = "running" if _is_running(task) else "scheduled"
        label = "running" if kind == "running" else "ready to run (scheduled)"
        detail.pop("seconds_left", None)
    return WaitTarget(kind or "future", label or kind or "future", frame, third, detail)


def _is_running(task: asyncio.Task[Any]) -> bool:
    try:
        return asyncio.current_task(task.get_loop()) is task
    except Exception:
        return False


def _is_shield_outer(fut: Any) -> bool:
    # asyncio.shield() adds _outer_done_callback to its outer future before
    # returning it (3.10-3.15), so it is always the first callback: only that
    # one is looked at (a future 25,000 tasks await has 25,000 callbacks, and
    # walking them took ~20 ms of a dashboard poll).
    cbs = getattr(fut, "_callbacks", None)
    if not cbs:
        return False
    fn = cbs[0][0] if isinstance(cbs[0], tuple) else cbs[0]
    return getattr(fn, "__name__", "") == "_outer_done_callback"


def orphan_reason(verdict: int, root: str | None, chain: Sequence[Frame]) -> str:
    """One sentence on an orphan verdict of _core.orphan_analysis."""
    where = ""
    if chain:
        f = chain[-1]
        where = f" (awaited at {short_path(f.filename)}:{f.lineno} in {f.function})"
    if verdict == ORPHANED:
        return (
            "nothing outside the task's own references can reach the Future it awaits"
            f"{where}: nothing can ever resolve it, so the task can never resume"
        )
    if verdict == REACHABLE:
        holder = f"a live {root}" if root else "other live tasks"
        return f"waiting on a Future reachable from {holder}"
    if verdict == UNKNOWN:
        return "not decided: the objects reachable from the pending tasks exceed the analysis cap"
    return "not waiting on a Future (scheduled or running)"
