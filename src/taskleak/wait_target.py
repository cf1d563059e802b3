"""What a pending task is blocked on, in words.

The innermost frame of the await chain names the asyncio primitive
(``Event.wait``, ``Queue.get``, ``sleep``...); ``task._fut_waiter`` names the
Future the task is parked on (another task, a gather, an executor job).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Optional, Sequence

from . import _core
from .frame import Frame, short_path

__all__ = ["describe_wait"]

# (file inside asyncio, function qualname) -> label
_PRIMITIVES = {
    ("tasks.py", "sleep"): "asyncio.sleep()",
    ("tasks.py", "wait"): "asyncio.wait()",
    ("tasks.py", "_wait"): "asyncio.wait()",
    ("tasks.py", "wait_for"): "asyncio.wait_for()",
    ("tasks.py", "as_completed.<locals>._wait_for_one"): "asyncio.as_completed()",
    ("tasks.py", "_wait_for_one"): "asyncio.as_completed()",
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


def _primitive(chain: Sequence[Frame]) -> Optional[str]:
    """Label of the innermost asyncio frame of the chain, with its caller for streams."""
    for i in range(len(chain) - 1, -1, -1):
        f = chain[i]
        if not f.filename.startswith(_ASYNCIO_DIR):
            return None
        label = _PRIMITIVES.get((f.filename[len(_ASYNCIO_DIR):], f.function))
        if label is not None:
            if label == "stream read":
                # Name the public method the caller used (readline, not readuntil).
                j = i
                while j > 0 and chain[j - 1].filename == f.filename:
                    j -= 1
                label = f"stream read ({chain[j].function.rsplit('.', 1)[-1]})"
            return label
    return None


def _task_label(t: "asyncio.Task[Any]") -> str:
    try:
        coro = t.get_coro()
        qual = getattr(coro, "__qualname__", type(coro).__name__)
        return f"task {t.get_name()!r} ({qual}())"
    except Exception:
        return "a task"


def _innermost_generator(task: "asyncio.Task[Any]") -> Any:
    obj = task.get_coro()
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


def _sleep_remaining(task: "asyncio.Task[Any]") -> Optional[float]:
    gen = _innermost_generator(task)
    if gen is None:
        return None
    h = _core.generator_local(gen, "h")
    if h is None or not hasattr(h, "when"):
        return None
    try:
        return max(0.0, h.when() - task.get_loop().time())
    except Exception:
        return None


def _is_executor_future(fut: Any) -> bool:
    # wrap_future() chains the concurrent.futures.Future with callbacks named
    # _call_check_cancel (on the asyncio side) - the only trace it leaves.
    for cb in getattr(fut, "_callbacks", None) or ():
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


def describe_wait(task: "asyncio.Task[Any]", chain: Sequence[Frame], waiter: Any, detailed: bool = True) -> str:
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
            if asyncio.tasks._current_tasks.get(loop) is task:  # type: ignore[attr-defined]
                return "running"
        except Exception:
            pass
        return "ready to run (scheduled)"
    return label
