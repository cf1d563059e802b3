"""install() / uninstall(): process-wide creation tracking.

Mechanism (see docs/internals.md):

* ``registry`` (CPython 3.10-3.13): the C Task constructor calls ``add`` on
  asyncio's module-level WeakSet of tasks. taskleak puts its own ``add`` (C++)
  on that WeakSet instance, so every task on every loop and thread - uvloop's
  included - is seen at creation with no task factory. A probe task verifies
  the hook at install time.
* ``factory``: where the probe fails, a chaining task factory is put on each
  loop when it starts running (and on the running loop at install time).
"""

from __future__ import annotations

import asyncio
import asyncio.events
import asyncio.runners
import asyncio.tasks
import gc
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypedDict

import taskleak._core as _core

from . import loss_events, setup_sites, task_factory

__all__ = [
    "install",
    "uninstall",
    "is_installed",
    "status",
    "live_tasks",
    "live_census",
    "adopted_loops",
    "add_adopt_listener",
    "remove_adopt_listener",
]

_lock = threading.RLock()
_mechanism: str | None = None
_original_set_running_loop: Any = None
_adopted_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _registry() -> weakref.WeakSet[Any] | None:
    for name in ("_scheduled_tasks", "_all_tasks"):
        ws = getattr(asyncio.tasks, name, None)
        if isinstance(ws, weakref.WeakSet):
            return ws
    return None


def _eager_registry() -> Any:
    return getattr(asyncio.tasks, "_eager_tasks", None)


def _probe_registry() -> bool:
    """Create (without running) one task on a private loop; is it recorded?"""
    loop = asyncio.new_event_loop()
    try:

        async def _taskleak_probe() -> None:
            pass

        coro = _taskleak_probe()
        task = loop.create_task(coro, name="taskleak-probe")  # named: no Task-N counter bump
        ok = _core.creation_info(task) is not None
        try:
            task._log_destroy_pending = False  # type: ignore[attr-defined]
        except Exception:
            pass
        task.cancel()
        coro.close()
        return ok
    finally:
        _adopted_loops.discard(loop)
        loop.close()


def _configure_current_task() -> None:
    """How the core finds the creating task: the C module's loop -> task dict
    on 3.10-3.13, or its current_task() where the thread state keeps it (3.14+)."""
    try:
        import _asyncio
    except ImportError:  # pure-Python asyncio
        _asyncio = None  # type: ignore[assignment]
    current = getattr(_asyncio, "_current_tasks", None) if _asyncio else getattr(asyncio.tasks, "_current_tasks", None)
    if isinstance(current, dict):
        _core.set_current_tasks(current)
    elif _asyncio is not None and hasattr(_asyncio, "current_task"):
        _core.set_current_task_getter(_asyncio.current_task)
        _calibrate_running_task()


def _calibrate_running_task() -> None:
    """3.14+: let the core learn where the thread state keeps the running
    task (two probe tasks on two private loops must agree), so that the
    creation hook reads it instead of calling current_task(). Any failure
    leaves the call in place."""

    async def _taskleak_probe() -> bool:
        return _core.calibrate_running_task(asyncio.get_running_loop(), asyncio.current_task())

    if asyncio.events._get_running_loop() is not None:
        return  # install() from inside a loop: the core calibrates at its first tasks
    for _ in range(2):
        loop = asyncio.new_event_loop()
        try:
            # Named: no Task-N counter bump.
            loop.run_until_complete(loop.create_task(_taskleak_probe(), name="taskleak-probe"))
        except Exception:
            pass
        finally:
            _adopted_loops.discard(loop)
            loop.close()


def _hook_registry() -> bool:
    ws = _registry()
    current = getattr(asyncio.tasks, "_current_tasks", None)
    if ws is None or not isinstance(current, dict):
        return False
    for attr in ("data", "_pending_removals", "_commit_removals", "_remove"):
        if not hasattr(ws, attr):
            return False
    w: Any = ws  # WeakSet's internals (data, _remove...) are not in its stub
    _core.configure_registry(w.data, w._pending_removals, w._commit_removals, w._remove, current)
    # An instance attribute over the method (and positional-only, unlike WeakSet.add's `item`).
    ws.add = _core.registry_add  # type: ignore[method-assign,assignment]
    if _probe_registry():
        for name in _REMOVALS:
            setattr(ws, name, _removal_noted(ws, name))
        return True
    _unhook_registry()
    return False


# The WeakSet methods that take entries out of the registry other than its
# weakrefs' own callbacks. asyncio never calls them on its registry, but
# _unregister_task() (a private helper some libraries use) discards. Once one
# has run, the census reads the registry's every entry instead of counting
# them (see collect_live in task_census.cpp).
_REMOVALS = (
    "discard",
    "remove",
    "pop",
    "clear",
    "difference_update",
    "intersection_update",
    "symmetric_difference_update",
)
_registry_touched = False


def _removal_noted(ws: Any, name: str) -> Callable[..., Any]:
    method = getattr(type(ws), name)

    def removal(*args: Any) -> Any:
        global _registry_touched
        _registry_touched = True
        return method(ws, *args)

    return removal


def _unhook_registry() -> None:
    ws = _registry()
    if ws is not None and ws.__dict__.get("add") is _core.registry_add:
        del ws.__dict__["add"]
    if ws is not None:
        for name in _REMOVALS:
            ws.__dict__.pop(name, None)


# Called with each newly adopted loop (the blocked-loop watchdog learns of
# loops that were already running when it started this way).
_adopt_listeners: list[Callable[[asyncio.AbstractEventLoop], None]] = []


def add_adopt_listener(fn: Callable[[asyncio.AbstractEventLoop], None]) -> None:
    """Call ``fn(loop)`` for every loop tracking adopts from now on, on the
    thread that adopts it (usually the loop's own). ``fn`` must be quick and
    never raise (what it raises is dropped)."""
    if fn not in _adopt_listeners:
        _adopt_listeners.append(fn)


def remove_adopt_listener(fn: Callable[[asyncio.AbstractEventLoop], None]) -> None:
    if fn in _adopt_listeners:
        _adopt_listeners.remove(fn)


def _adopt_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Called by the core on the first task seen from a loop (and in factory
    mode when a loop starts running). Must never raise into the caller."""
    try:
        if loop in _adopted_loops:
            return
        _adopted_loops.add(loop)
        loss_events.chain_exception_handler(loop)
        task_factory.adopt(loop, always=_mechanism == "factory")
        task_factory.patch_foreign_loop_class(type(loop))  # later loops of its class: at construction
    except Exception:
        pass
    for fn in list(_adopt_listeners):
        try:
            fn(loop)
        except Exception:
            pass


def _set_running_loop_hook(loop: asyncio.AbstractEventLoop | None) -> None:
    _original_set_running_loop(loop)
    if loop is not None and _mechanism is not None:
        _adopt_loop(loop)


_original_lazy_init: Any = None


def _patch_runner() -> None:
    """asyncio.Runner (and uvloop.run, which uses it) builds its loop from a
    factory: adopt that loop before the runner creates its first task. This is
    how uvloop loops get the chaining factory where there is no registry."""
    global _original_lazy_init
    Runner = getattr(asyncio.runners, "Runner", None) if hasattr(asyncio, "runners") else None
    if Runner is None or _original_lazy_init is not None or not hasattr(Runner, "_lazy_init"):
        return
    _original_lazy_init = Runner._lazy_init

    def _lazy_init(self: Any) -> None:
        _original_lazy_init(self)
        loop = getattr(self, "_loop", None)
        if loop is not None and _mechanism is not None:
            _adopt_loop(loop)

    Runner._lazy_init = _lazy_init


def _unpatch_runner() -> None:
    global _original_lazy_init
    if _original_lazy_init is not None:
        asyncio.runners.Runner._lazy_init = _original_lazy_init  # type: ignore[attr-defined,unused-ignore]
        _original_lazy_init = None


def install(stack_depth: int = 32) -> None:
    """Track the creation of every asyncio Task in this process from now on.

    Idempotent and thread-safe; calling it again only changes ``stack_depth``
    (frames kept per creation stack, 1-128). Tasks created before install()
    still appear in snapshots, with "creation site unknown".
    """
    global _mechanism, _original_set_running_loop
    if isinstance(stack_depth, bool) or not isinstance(stack_depth, int) or not 1 <= stack_depth <= 128:
        raise ValueError(f"stack_depth must be an int between 1 and 128, got {stack_depth!r}")
    with _lock:
        _core.enable(stack_depth)
        if _mechanism is not None:
            return
        if _core.gc_phase not in gc.callbacks:
            gc.callbacks.append(_core.gc_phase)
        _core.set_loop_callback(_adopt_loop)
        _configure_current_task()
        _mechanism = "registry" if _hook_registry() else "factory"
        if _mechanism == "factory":
            # Deaths of asyncio.Task instances reach the core through the
            # type's finalizer instead of a weakref per task (other task types,
            # and subclasses made before this call, keep the weakref).
            _core.hook_task_finalizer(asyncio.Task)
        task_factory.patch_loop_class(always=_mechanism == "factory", on_new_loop=_adopt_loop)
        _patch_runner()
        setup_sites.patch_servers()
        uvloop = sys.modules.get("uvloop")
        if uvloop is not None and isinstance(getattr(uvloop, "Loop", None), type):
            task_factory.patch_foreign_loop_class(uvloop.Loop)
        # Loops starting from now on are adopted before their first task runs.
        # asyncio's loops call asyncio.events._set_running_loop; uvloop binds
        # the package's alias at its import, so an import after this sees ours.
        if _original_set_running_loop is None:
            _original_set_running_loop = asyncio.events._set_running_loop
            asyncio.events._set_running_loop = _set_running_loop_hook
            if getattr(asyncio, "_set_running_loop", None) is _original_set_running_loop:
                asyncio._set_running_loop = _set_running_loop_hook
        loss_events.install_shutdown_hook()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            _adopt_loop(running)


def uninstall() -> None:
    """Stop recording new tasks. Records of live tasks stay until they die;
    snapshots keep working. Idempotent."""
    global _mechanism, _original_set_running_loop
    with _lock:
        _core.disable()
        if _mechanism is None:
            return
        _unhook_registry()
        if _original_set_running_loop is not None:
            asyncio.events._set_running_loop = _original_set_running_loop
            if getattr(asyncio, "_set_running_loop", None) is _set_running_loop_hook:
                asyncio._set_running_loop = _original_set_running_loop
            _original_set_running_loop = None
        for loop in list(_adopted_loops):
            try:
                task_factory.unadopt(loop)
                loss_events.unchain_exception_handler(loop)
            except Exception:
                pass
        _adopted_loops.clear()
        task_factory.unpatch_loop_class()
        _unpatch_runner()
        setup_sites.unpatch_servers()
        loss_events.uninstall_shutdown_hook()
        _core.set_loop_callback(None)
        if _core.gc_phase in gc.callbacks:
            gc.callbacks.remove(_core.gc_phase)
        # A census of 100,000 tasks leaves ~10 MB for the next one: tracking
        # stopped, the service gets it back (a later snapshot allocates afresh).
        _core.release_census_spares()
        _mechanism = None


def is_installed() -> bool:
    return _mechanism is not None


class Status(TypedDict):
    """What :func:`status` returns (a plain dict): the core's switches and
    counters (taskleak._core.stats()), and how taskleak is hooked in."""

    enabled: bool
    stack_depth: int
    live_records: int  # creation records of live tasks
    table_bytes: int
    buried_records: int  # records of collected tasks kept until the collector's pass ends
    stacks: int  # interned creation stacks
    stack_bytes: int
    stack_limit: int
    stack_drops: int  # stacks not interned because of stack_limit
    tracked_total: int
    hook_errors: int
    frame_walk: str  # "direct", or how a reduced mode walks frames
    record_size: int
    stack_memo_hits: int
    running_task: str
    task_lists: str  # "asyncio-debug-offsets": 3.14+'s task lists are read, not copied
    census_spare_bytes: int  # buffers of the largest census gone, kept for the next one
    finalizer_hook: bool
    mechanism: str | None  # "registry", "factory", or None when not installed
    python: str
    reduced_mode: bool


def status() -> Status:
    """Mechanism in use and the core's own counters (table sizes, bytes, drops)."""
    core = _core.stats()
    return Status(
        **core, mechanism=_mechanism, python=sys.version.split()[0], reduced_mode=core["frame_walk"] != "direct"
    )


def adopted_loops() -> list[asyncio.AbstractEventLoop]:
    """The event loops tracking has seen run (and that are still alive)."""
    return list(_adopted_loops)


def _task_sources() -> tuple[Any, list[Any], Callable[[], list[Any]] | None]:
    """(the registry's set of weakrefs or None, containers of tasks, a
    callable giving more containers or None): where tasks without a creation
    record are found. The core calls the third only when it cannot tell
    without it that it has every task already."""
    ws = _registry()
    strong: list[Any] = []
    eager = _eager_registry()
    if eager:
        strong.append(eager)
    current = getattr(asyncio.tasks, "_current_tasks", None)
    if isinstance(current, dict):
        strong.append(list(current.values()))
    more = None if _mechanism == "registry" else _adopted_loops_tasks
    return getattr(ws, "data", None), strong, more


def _adopted_loops_tasks() -> list[Any]:
    """No registry to read (3.14+ keeps tasks in per-thread lists): the
    pending tasks of each loop taskleak knows of (finished tasks come from
    the creation records)."""
    out: list[Any] = []
    for loop in list(_adopted_loops):
        try:
            out.append(asyncio.all_tasks(loop))  # a new set: copied once, natively
        except Exception:
            pass
    return out


def live_tasks() -> list[asyncio.Task[Any]]:
    """Every live task of every loop in the process, tracked or not."""
    ws, strong, more = _task_sources()
    return _core.live_tasks(ws, strong + (more() if more is not None else []))


def live_census(chain_depth: int) -> _core.Census:
    """A census of :func:`live_tasks`, taken in one native pass: tracked tasks
    are read from their creation records, in table order (no list of tasks
    is built and no record is looked up by task)."""
    untouched = _mechanism == "registry" and not _registry_touched
    ws, strong, more = _task_sources()
    return _core.census_live(ws, strong, chain_depth, registry_untouched=untouched, more_sets=more)
