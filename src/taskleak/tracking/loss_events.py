"""Loss events: tasks that leaked in ways a snapshot can no longer show.

* ``destroyed-pending`` - "Task was destroyed but it is pending!": the task was
  freed (usually by the garbage collector) while still pending.
* ``never-retrieved`` - "Task exception was never retrieved": the task failed
  and was freed without anyone reading its exception.
* ``pending-at-shutdown`` - the task was still pending when ``asyncio.run()`` /
  ``asyncio.Runner`` closed its loop, which cancels such tasks silently, or
  when its loop began shutting down (``loop.shutdown_asyncgens()``, what test
  runners call before closing a loop; on a virtual-clock loop that last run
  can let a forgotten task's long sleep finish, and so hide it).

The first two reach the loop's exception handler while the task still exists,
so a chaining handler can record them together with the creation site. The
third is caught by wrapping asyncio's ``runners._cancel_all_tasks``.
Events are kept in a bounded buffer (oldest dropped, with a counter).
"""

from __future__ import annotations

import asyncio
import asyncio.runners
import collections
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import taskleak._core as _core

from ..frame import Frame, frames_from_raw, is_asyncio
from ..wait_target import describe_wait
from .setup_sites import with_setup_site

__all__ = ["LossEvent", "loss_events", "clear_loss_events", "MAX_EVENTS"]

MAX_EVENTS = 10_000

_events: collections.deque[LossEvent] = collections.deque(maxlen=MAX_EVENTS)
_events_lock = threading.Lock()
_dropped = 0


@dataclass(frozen=True)
class LossEvent:
    """One lost task, captured at the moment asyncio gave up on it."""

    kind: str  # "destroyed-pending" | "never-retrieved" | "pending-at-shutdown"
    task_name: str
    coro: str
    created_at: list[Frame] | None
    stack: list[Frame]
    waiting_on: str
    exception: str | None = None
    serial: int | None = None
    age_s: float | None = None
    time: float = field(default_factory=time.monotonic)
    scope: int = 0  # the check() scope the task was charged to, 0 if none
    # The exception itself, kept only for tasks charged to a check() scope
    # (holding tracebacks process-wide would hold their frames' locals).
    exception_object: BaseException | None = field(default=None, repr=False, compare=False)
    # pending-at-shutdown only: the run was interrupted (its main task was
    # still pending: an exception escaped the loop, KeyboardInterrupt, SIGTERM),
    # so the runner cancelled these tasks as the interruption's cleanup.
    interrupted: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "task_name": self.task_name,
            "coro": self.coro,
            "created_at": None if self.created_at is None else [f.to_dict() for f in self.created_at],
            "stack": [f.to_dict() for f in self.stack],
            "waiting_on": self.waiting_on,
            "exception": self.exception,
            "serial": self.serial,
            "age_s": self.age_s,
        }


def loss_events() -> list[LossEvent]:
    """Every loss event recorded so far (at most MAX_EVENTS, oldest dropped)."""
    with _events_lock:
        return list(_events)


def dropped_events() -> int:
    return _dropped


def scope_events(scope: int) -> list[LossEvent]:
    """The loss events of tasks charged to check() scope `scope`."""
    with _events_lock:
        return [e for e in _events if e.scope == scope]


def clear_loss_events() -> None:
    global _dropped
    with _events_lock:
        _events.clear()
        _dropped = 0


def _coro_name(task: Any) -> str:
    try:
        coro = task.get_coro()
    except Exception:
        return "?"
    return getattr(coro, "__qualname__", None) or type(coro).__name__


def raise_site(exc: BaseException) -> Frame | None:
    """Where `exc` was raised: the innermost frame of its traceback."""
    tb = getattr(exc, "__traceback__", None)
    if tb is None:
        return None
    for _ in range(1000):  # bounded: a traceback is a linked list
        if tb.tb_next is None:
            break
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return Frame(code.co_filename, tb.tb_lineno, getattr(code, "co_qualname", code.co_name))


def exception_text(exc: BaseException | None) -> str | None:
    """``"ValueError: bad (raised at app/jobs.py:12 in work)"``: the exception
    and where it was raised, for reports of exceptions nobody retrieved."""
    if exc is None:
        return None
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    try:
        site = raise_site(exc)
    except Exception:
        site = None
    return text if site is None else f"{text} (raised at {site.short()})"


def describe_task(task: Any, kind: str, exception: BaseException | None = None) -> LossEvent:
    """Capture what is known of `task` now, without keeping the task alive."""
    info = _core.creation_info(task)
    created = frames_from_raw(info[4]) if info is not None else None
    serial = info[0] if info is not None else None
    age = (_core.monotonic_ns() - info[2]) / 1e9 if info is not None else None
    stack: list[Frame] = []
    waiting = ""
    if not task.done():
        if created:
            # A server's connection handler: named by the server's setup line,
            # as the monitor names its group.
            created = with_setup_site(created, task)
        chain, _leaf = _core.await_chain(task.get_coro())
        # No chain: collected, the coroutine was closed before the task's finalizer ran.
        stack = frames_from_raw(chain if chain else _core.buried_chain(task)) or []
        waiting = describe_wait(task, stack, getattr(task, "_fut_waiter", None))
    exc_text = exception_text(exception)
    try:
        name = task.get_name()
    except Exception:
        name = "?"
    scope = info[6] if info is not None else 0
    return LossEvent(
        kind,
        name,
        _coro_name(task),
        created,
        stack,
        waiting,
        exc_text,
        serial,
        age,
        scope=scope,
        exception_object=exception if scope else None,
    )


def _record(event: LossEvent) -> None:
    global _dropped
    with _events_lock:
        if len(_events) == _events.maxlen:
            _dropped += 1
        _events.append(event)


def _record_context(context: dict[str, Any]) -> None:
    message = str(context.get("message", ""))
    if message.startswith("Task was destroyed but it is pending"):
        task = context.get("task")
        if isinstance(task, asyncio.Task):
            _record(describe_task(task, "destroyed-pending"))
    elif message.startswith("Task exception was never retrieved"):
        task = context.get("future")
        if isinstance(task, asyncio.Task):
            _record(describe_task(task, "never-retrieved", context.get("exception")))


# ---- exception handler chaining ------------------------------------------

Handler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


def _make_handler(previous: Handler | None) -> Handler:
    def taskleak_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        try:
            _record_context(context)
        except Exception:
            pass  # recording must never turn into a second error
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    taskleak_exception_handler._taskleak_previous = previous  # type: ignore[attr-defined]
    return taskleak_exception_handler


def chain_exception_handler(loop: asyncio.AbstractEventLoop) -> None:
    current = loop.get_exception_handler()
    if hasattr(current, "_taskleak_previous"):
        return
    loop.set_exception_handler(_make_handler(current))


_original_set_handler: Any = None


def _set_exception_handler(self: asyncio.AbstractEventLoop, handler: Handler | None) -> None:
    # A handler set after taskleak adopted the loop is chained too, so loss
    # events keep being recorded whoever sets the handler last.
    if not hasattr(handler, "_taskleak_previous"):
        handler = _make_handler(handler)
    _original_set_handler(self, handler)


def patch_set_exception_handler() -> None:
    """asyncio loops (BaseEventLoop): keep the chain when a handler is set later."""
    global _original_set_handler
    if _original_set_handler is None:
        import asyncio.base_events as be

        _original_set_handler = be.BaseEventLoop.set_exception_handler
        be.BaseEventLoop.set_exception_handler = _set_exception_handler  # type: ignore[method-assign]


def unpatch_set_exception_handler() -> None:
    global _original_set_handler
    if _original_set_handler is not None:
        import asyncio.base_events as be

        be.BaseEventLoop.set_exception_handler = _original_set_handler  # type: ignore[method-assign]
        _original_set_handler = None


def unchain_exception_handler(loop: asyncio.AbstractEventLoop) -> None:
    current = loop.get_exception_handler()
    if hasattr(current, "_taskleak_previous"):
        previous = current._taskleak_previous  # type: ignore[union-attr]
        if _original_set_handler is not None and isinstance(loop, asyncio.base_events.BaseEventLoop):
            _original_set_handler(loop, previous)
        else:
            loop.set_exception_handler(previous)


# ---- asyncio.run() / Runner shutdown ---------------------------------------


def is_asyncgen_finalizer(task: Any) -> bool:
    """asyncio's own task closing an abandoned async generator (aclose()):
    housekeeping that runs the generator's finally blocks, not a leak."""
    try:
        return type(task.get_coro()).__name__ == "async_generator_athrow"
    except Exception:
        return False


#: Called with a loop that is about to shut down (not running), before what is
#: still pending is recorded: the pytest plugin sets it while a test's scope is
#: open, to give that test's tasks their grace period before a function-scoped
#: loop closes under them.
before_shutdown: Callable[[asyncio.AbstractEventLoop], None] | None = None


def _before_shutdown(loop: asyncio.AbstractEventLoop) -> None:
    hook = before_shutdown
    if hook is not None:
        try:
            hook(loop)
        except Exception:
            pass


_RUNNER_BACKPORT = os.path.join("asyncio", "runner", "runner.py")  # backports.asyncio.runner (3.10)
_LOOP_RUNNING = frozenset({"_run", "_run_once", "run_forever"})  # Handle._run, BaseEventLoop's


def is_runner_main_task(event: LossEvent) -> bool:
    """The task ``asyncio.run()`` / ``Runner.run()`` made of the program's
    main coroutine, pending at shutdown because the run was interrupted
    (SIGTERM, or an exception raised in a callback): where the program
    stopped, not a task it forgot. Created by asyncio's runners module
    itself (asyncio's frames only, down to runners.py)."""
    if event.kind != "pending-at-shutdown":
        return False
    for f in event.created_at or ():
        if not is_asyncio(f.filename):
            return False
        if f.function.rsplit(".", 1)[-1] in _LOOP_RUNNING:
            # Created while the loop ran (a callback's task: a server's
            # connection handler); the main task is made before it runs.
            return False
        if os.path.basename(f.filename) == "runners.py" or f.filename.endswith(_RUNNER_BACKPORT):
            return True
    return False


def _record_pending_at_shutdown(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    """Record the loop's pending tasks; returns them, for the caller to hold
    until the runner has cancelled them."""
    # Taken before the grace (which runs the loop, and allocates) and held
    # through it: a task only a cycle keeps is then seen pending here, not
    # collected on the way and reported as destroyed instead.
    try:
        tasks = list(asyncio.all_tasks(loop))
    except Exception:
        tasks = []
    _before_shutdown(loop)
    pending = tasks
    try:
        known = set(tasks)
        tasks += [t for t in asyncio.all_tasks(loop) if t not in known]  # made during the grace
        pending = [t for t in tasks if not t.done() and not is_asyncgen_finalizer(t)]
        del tasks, known
        events = [describe_task(task, "pending-at-shutdown") for task in pending]
        if any(is_runner_main_task(e) for e in events):
            events = [dataclasses.replace(e, interrupted=True) for e in events]
        for e in events:
            _record(e)
    except Exception:
        pass
    return pending


def _recording(original: Callable[[asyncio.AbstractEventLoop], None]) -> Callable[[asyncio.AbstractEventLoop], None]:
    def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
        # all_tasks() is a weak set: a pending task that only a reference
        # cycle keeps (a task waiting on an Event nobody else holds) could be
        # collected between our recording - which allocates, and so can run
        # the collector - and the runner's own all_tasks(), and end
        # "destroyed while pending" instead of cancelled. Held across it.
        held = _record_pending_at_shutdown(loop)
        original(loop)
        del held

    _cancel_all_tasks._taskleak_original = original  # type: ignore[attr-defined]
    return _cancel_all_tasks


# Where runners keep their task-cancelling shutdown step: asyncio.run() /
# asyncio.Runner, and the copies of Runner that pytest-asyncio (the backport)
# and anyio use on 3.10. Those modules may be imported after install():
# patch_runner_shutdowns() is cheap, and check() calls it at every scope.
_CANCEL_ALL_MODULES = ("asyncio.runners", "backports.asyncio.runner.runner", "anyio._backends._asyncio")


def patch_runner_shutdowns() -> None:
    """Hook the shutdown step of every runner module loaded so far."""
    if _original_shutdown_asyncgens is not None:  # installed
        _patch_cancel_all()


def _patch_cancel_all() -> None:
    for name in _CANCEL_ALL_MODULES:
        mod = sys.modules.get(name)
        fn = getattr(mod, "_cancel_all_tasks", None)
        if fn is not None and not hasattr(fn, "_taskleak_original"):
            mod._cancel_all_tasks = _recording(fn)  # type: ignore[union-attr]


def _unpatch_cancel_all() -> None:
    for name in _CANCEL_ALL_MODULES:
        mod = sys.modules.get(name)
        fn = getattr(mod, "_cancel_all_tasks", None)
        original = getattr(fn, "_taskleak_original", None)
        if original is not None:
            mod._cancel_all_tasks = original  # type: ignore[union-attr]


_original_shutdown_asyncgens: Any = None


def _shutdown_asyncgens_recording(self: asyncio.AbstractEventLoop) -> Any:
    # Called (not yet awaited) when a runner starts closing the loop: what
    # is still pending now outlived the loop's life. Tasks asyncio.run()
    # cancelled a moment ago are done already.
    if not self.is_running():
        _record_pending_at_shutdown(self)
    return _original_shutdown_asyncgens(self)


def install_shutdown_hook() -> None:
    global _original_shutdown_asyncgens
    patch_set_exception_handler()
    if _original_shutdown_asyncgens is None:
        import asyncio.base_events as be

        _original_shutdown_asyncgens = be.BaseEventLoop.shutdown_asyncgens
        be.BaseEventLoop.shutdown_asyncgens = _shutdown_asyncgens_recording  # type: ignore[method-assign]
    _patch_cancel_all()


def uninstall_shutdown_hook() -> None:
    global _original_shutdown_asyncgens
    unpatch_set_exception_handler()
    if _original_shutdown_asyncgens is not None:
        import asyncio.base_events as be

        be.BaseEventLoop.shutdown_asyncgens = _original_shutdown_asyncgens  # type: ignore[method-assign]
        _original_shutdown_asyncgens = None
    _unpatch_cancel_all()
