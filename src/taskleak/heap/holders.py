"""Who keeps a finished task alive after a scope: :func:`holders_of_finished`,
the done-retained search of check() and ``taskleak run``.

The search itself is who_holds()'s engine, a breadth-first search forward
from the roots in C++ (``_core.forward_search_many``, all the scope's
finished tasks in one walk), on the roots of ``heap.roots``, its paths put
in words by ``heap.paths``; this module says where a leak check's search
starts and where it stops:

* roots that outlive a test: a module's globals, a class, the coroutine of a
  task that is not itself under suspicion -> reported;
* state user code hangs on an event loop (``loop.__dict__['app']``) -> reported
  as ``loop.__dict__['app']['tasks'][3]``: it lives as long as the loop;
* frames that are still running (and coroutines and generators running
  them), the event loop's own bookkeeping (ready queue, scheduled handles,
  selector, executor: the attributes a fresh loop of the same class has),
  tasks (a finished or suspect task holds nothing for anyone; a live one is a
  root through its coroutine) and taskleak's own objects -> not a leak,
  never entered.

No collection runs, no Python code runs during the walk, and a clean scope
never gets here (check() asks only about finished tasks that something
outside their own cycles still holds).
"""

from __future__ import annotations

import asyncio
import sys
import types
import weakref
from collections.abc import Iterable
from typing import Any

import taskleak._core as _core

from ..tracking import live_tasks
from .names import module_of_type, qualified_type_name
from .paths import Memo, path_from_chain
from .roots import (
    GENERATOR_TYPES,
    OWN_DIR,
    all_classes,
    event_loops,
    is_own_module,
    is_running,
    loop_bookkeeping,
    own_types,
    running_coroutines,
)

__all__ = ["holders_of_finished"]


def _task_types() -> list[type]:
    """Every task class (C and Python Task and their subclasses): never
    entered. A task's coroutine is a root when the task is live and not
    under suspicion; otherwise what it holds is not a holder."""
    out: dict[int, type] = {}
    stack: list[type] = [asyncio.Task]
    py_task = getattr(asyncio.tasks, "_PyTask", None)
    if isinstance(py_task, type):
        stack.append(py_task)
    while stack:
        cls = stack.pop()
        if id(cls) in out:
            continue
        out[id(cls)] = cls
        try:
            stack.extend(type.__subclasses__(cls))
        except Exception:  # pragma: no cover - exotic metaclasses
            pass
    return list(out.values())


_CLASS = ("class", "")  # placeholder label of a class root


def _running_frames() -> list[Any]:
    """Frames running in any thread, except taskleak's own: listing those
    would make a cycle (this search's lists -> its frame -> the lists) that
    keeps the targets and everything looked at alive until a collection.
    They are never entered anyway: nothing holds a running frame but a
    running generator, the stack above it, or a traceback (then the path is
    dropped as taskleak's own, see _blocker)."""
    frames: list[Any] = []
    tops = list(sys._current_frames().values())
    while tops:
        f: types.FrameType | None = tops.pop()
        while f is not None:
            if not f.f_code.co_filename.startswith(OWN_DIR):
                frames.append(f)
            f = f.f_back
    return frames


def _is_own_code(obj: Any) -> bool:
    code = (
        getattr(obj, "f_code", None)
        if isinstance(obj, types.FrameType)
        else (getattr(obj, "gi_code", None) or getattr(obj, "cr_code", None) or getattr(obj, "ag_code", None))
    )
    return isinstance(code, types.CodeType) and code.co_filename.startswith(OWN_DIR)


def _blocker(obj: Any) -> bool:
    """A step no path may take, that the walk (which runs no Python code)
    cannot tell by type: a coroutine or generator running right now (its
    frame is a running frame), or taskleak's own code."""
    if isinstance(obj, GENERATOR_TYPES):
        return is_running(obj) or _is_own_code(obj)
    return isinstance(obj, types.FrameType) and _is_own_code(obj)


def _void_weak_entry(root: Any, chain: list[Any]) -> Any | None:
    """A value of a weak-keyed dict (the ``data`` of a WeakKeyDictionary: its
    keys are weak references) lives only as long as its key. Keyed by an
    object already dead, or by an event loop already closed (anyio keeps
    per-loop state so: a test's own loop is closed by its teardown), the
    entry holds nothing past the scope. Returns that value, for the search to
    block; None when every step of the path holds."""
    steps = [root] + list(chain)
    for holder, child in zip(steps, steps[1:]):
        if type(holder) is not dict or not holder:
            continue
        try:
            if not isinstance(next(iter(holder)), weakref.ref):
                continue  # a WeakKeyDictionary's keys are all weak references
            for k, v in list(holder.items()):
                if v is child and isinstance(k, weakref.ref):
                    key = k()
                    if key is None or (isinstance(key, asyncio.AbstractEventLoop) and key.is_closed()):
                        return child
                    break
        except Exception:  # a dict changing under us, an exotic key
            continue
    return None


def holders_of_finished(
    tasks: list[Any], suspects: set[int], exclude: Iterable[Any] = (), max_depth: int = 10, max_paths: int = 3
) -> dict[int, list[str]]:
    """What still holds each of these finished ``tasks`` (by id): the holder
    paths found from long-lived roots, as strings; tasks absent from the
    result are held only by running frames, the loop's bookkeeping, or
    nothing visible. `suspects`: ids of tasks whose coroutines do not count
    as long-lived holders (tasks created in the scope under check).
    `exclude`: objects no path may pass through (a test's own objects, the
    caller's lists)."""
    roots: list[Any] = []
    labels: list[tuple[str, str]] = []
    stops: list[Any] = list(exclude)
    for name, mod in list(sys.modules.items()):
        d = getattr(mod, "__dict__", None) if isinstance(mod, types.ModuleType) else None
        if not isinstance(d, dict):
            continue
        if is_own_module(name):
            stops.append(d)
        else:
            roots.append(d)
            labels.append(("module", f"module {name}"))
    for klass in all_classes():
        if not is_own_module(module_of_type(klass)):
            roots.append(klass)
            labels.append(_CLASS)  # named when a path starts there (most never do)
    loops = {id(lp): lp for lp in event_loops()}
    for t in tasks:
        lp = getattr(t, "_loop", None)
        if isinstance(lp, asyncio.AbstractEventLoop):
            loops.setdefault(id(lp), lp)
    for lp in loops.values():
        # The loop is never entered (everything refers to it); what user code
        # hung on it is a root of its own.
        stops.append(lp)
        d = getattr(lp, "__dict__", None)
        if not isinstance(d, dict):
            continue
        stops.append(d)
        names = loop_bookkeeping(lp)
        for k, v in list(d.items()):
            if k not in names:
                roots.append(v)
                labels.append(("loop", f"loop.__dict__[{k!r}]"))
    running = running_coroutines(list(loops.values()))
    stops.extend(running)
    running_ids = {id(c) for c in running}
    live: dict[int, Any] = {id(t): t for t in live_tasks()}
    for lp in loops.values():
        try:  # tasks of a loop taskleak never adopted (3.14+ lists them per loop)
            live.update((id(t), t) for t in asyncio.all_tasks(lp))
        except Exception:  # pragma: no cover - exotic loops
            pass
    for t in live.values():
        if id(t) in suspects or t.done():
            continue
        coro = t.get_coro()
        if isinstance(coro, GENERATOR_TYPES) and id(coro) not in running_ids and not is_running(coro):
            roots.append(coro)
            labels.append(
                ("task", f"task {t.get_name()!r} ({getattr(coro, '__qualname__', '?')}) still running, coroutine")
            )
    stops.extend(_running_frames())
    stop_types: list[Any] = list(own_types()) + _task_types()
    wanted = list(tasks)
    # The search's own lists are never holders either (`stops` itself is not
    # listed: a list holding itself would be a cycle keeping every root, the
    # targets and the excluded objects alive until the next collection; only
    # this running frame refers to it).
    stops.extend([roots, labels, stop_types, wanted, tasks])
    del live

    found: dict[int, list[str]] = {}
    # The walk cannot ask whether a generator is running (that is a Python
    # attribute): a path through one is dropped and the search run again with
    # it as a stop. Rare (a running generator reachable from a root), so
    # usually one round.
    rounds = 8
    for attempt in range(rounds):
        per_target, _visited, _exhausted = _core.forward_search_many(
            wanted, roots, stops, stop_types, max_depth, max_paths
        )
        blockers = [o for paths in per_target for _, chain in paths for o in chain[:-1] if _blocker(o)]
        blockers += [
            v
            for paths in per_target
            for root, chain in paths
            for v in [_void_weak_entry(roots[root], chain)]
            if v is not None
        ]
        if blockers and attempt < rounds - 1:
            stops.extend(blockers)
            del per_target, blockers
            continue
        memo: Memo = {}  # the chains keep its containers alive while they are rendered
        for t, paths in zip(wanted, per_target):
            rendered: list[str] = []
            for root, chain in paths:
                if any(_blocker(o) for o in chain[:-1]) or _void_weak_entry(roots[root], chain) is not None:
                    continue
                if labels[root] is _CLASS:
                    labels[root] = ("class", f"class {qualified_type_name(roots[root])}")
                s = str(path_from_chain(root, chain, labels, memo))
                if s not in rendered:
                    rendered.append(s)
            if rendered:
                found[id(t)] = rendered
        del per_target, blockers, memo
        break
    return found
