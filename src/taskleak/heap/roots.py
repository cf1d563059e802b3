"""Where a holder search starts, and what it never enters.

A *root* is something that lives long enough that what it holds counts as
held: a module (and its globals), a class, an event loop and the state user
code hangs on it, the local variables of a frame running right now. The
*stops* are what a path may never pass through: running frames and the
coroutines running them (their locals are roots of their own), the event
loop's own machinery, taskleak's own objects and the search's own lists.

Both searches build on this: :func:`~taskleak.heap.index.who_holds` gathers
:class:`Roots` per query; check()'s search (``heap.holders``) takes the
pieces it needs and adds its own suspects.
"""

from __future__ import annotations

import asyncio
import os
import sys
import types
from dataclasses import dataclass
from typing import Any

from ..tracking import live_tasks
from .names import code_name, module_of_type, qualified_type_name

__all__ = [
    "GENERATOR_TYPES",
    "LOOP_MACHINERY",
    "OWN_DIR",
    "Roots",
    "all_classes",
    "event_loops",
    "is_own_module",
    "is_running",
    "loop_bookkeeping",
    "own_types",
    "running_coroutines",
]

#: taskleak's own code (the package root, not just heap/): its frames,
#: coroutines and generators are never holders nor roots.
OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

#: Attributes of an event loop that are asyncio's own machinery: a task or
#: handle held there is scheduled, not retained by the application.
LOOP_MACHINERY = ("_ready", "_scheduled", "_selector")

#: Coroutines, generators and async generators: each runs a frame of its own.
GENERATOR_TYPES = (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType)


def is_own_module(name: str) -> bool:
    return name == "taskleak" or name.startswith("taskleak.")


def is_running(gen: Any) -> bool:
    """Whether a coroutine or generator is executing right now (its frame is
    a running frame, somewhere on a thread's stack)."""
    return bool(
        getattr(gen, "cr_running", False) or getattr(gen, "gi_running", False) or getattr(gen, "ag_running", False)
    )


def event_loops() -> list[Any]:
    """Every event loop this process can name: the running one, those with a
    current task, the policy's, and the loop of every live task."""
    loops: dict[int, Any] = {}

    def add(loop: Any) -> None:
        if isinstance(loop, asyncio.AbstractEventLoop):
            loops.setdefault(id(loop), loop)

    add(asyncio.events._get_running_loop())
    current = getattr(asyncio.tasks, "_current_tasks", None)
    if isinstance(current, dict):
        for loop in list(current):
            add(loop)
    policy = getattr(asyncio.events, "_event_loop_policy", None)
    local = getattr(policy, "_local", None)
    add(getattr(local, "_loop", None))
    for task in live_tasks():
        try:
            add(task.get_loop())
        except Exception:  # pragma: no cover - exotic task types
            pass
    return list(loops.values())


_BOOKKEEPING: dict[type, frozenset[str]] = {}


def loop_bookkeeping(loop: Any) -> frozenset[str]:
    """The attribute names a loop of this class has of its own: transient
    machinery, never a holder (whatever else user code hangs on the loop
    is). Learnt once per class from a fresh loop."""
    cls = type(loop)
    names = _BOOKKEEPING.get(cls)
    if names is None:
        try:
            fresh = cls()
            try:
                names = frozenset(vars(fresh))
            finally:
                fresh.close()
        except Exception:
            names = frozenset(k for k in vars(loop) if k.startswith("_"))
        _BOOKKEEPING[cls] = names
    return names


_own_types_cache: tuple[int, list[type]] = (-1, [])


def own_types() -> list[type]:
    """Every class taskleak defines: their instances (a Snapshot, a
    TaskInfo, a HeapIndex...) are never part of a holder path."""
    global _own_types_cache
    mods = [m for name, m in list(sys.modules.items()) if is_own_module(name) and isinstance(m, types.ModuleType)]
    if _own_types_cache[0] == len(mods):
        return _own_types_cache[1]
    found: dict[int, type] = {}
    for m in mods:
        for v in list(vars(m).values()):
            if isinstance(v, type) and is_own_module(module_of_type(v)):
                found[id(v)] = v
    _own_types_cache = (len(mods), list(found.values()))
    return _own_types_cache[1]


def all_classes() -> list[type]:
    """Every class alive, from object.__subclasses__() down (a class can hold
    state without being a module global: a class made in a function)."""
    out: list[type] = []
    seen = set()
    stack: list[type] = [object]
    while stack:
        cls = stack.pop()
        try:
            subs: list[type] = type.__subclasses__(cls)
        except Exception:  # pragma: no cover - exotic metaclasses
            continue
        for sub in subs:
            if id(sub) not in seen:
                seen.add(id(sub))
                out.append(sub)
                stack.append(sub)
    return out


def running_coroutines(loops: list[Any]) -> list[Any]:
    """The coroutines on the await chain of each loop's running task: their
    frames are running frames (reached otherwise through asyncio's
    current-task bookkeeping)."""
    out: list[Any] = []
    for loop in loops:
        try:
            task = asyncio.current_task(loop)
        except Exception:
            continue
        c = task.get_coro() if task is not None else None
        while isinstance(c, GENERATOR_TYPES) and len(out) < 10_000:
            out.append(c)
            c = getattr(c, "cr_await", None) or getattr(c, "gi_yieldfrom", None) or getattr(c, "ag_await", None)
    return out


@dataclass
class Roots:
    """Everything a who-holds query starts from, gathered per query (frames
    and loops come and go). Each ``*_labels`` list runs parallel to its
    roots: ``(root_kind, label)`` per root. The lists are the caller's to
    keep alive for the search."""

    long_lived: list[Any]
    long_lived_labels: list[tuple[str, str]]
    frames: list[Any]
    frame_labels: list[tuple[str, str]]
    loops: list[Any]
    loop_labels: list[tuple[str, str]]
    stops: list[Any]
    machinery: list[Any]
    own_types: list[Any]

    @classmethod
    def collect(cls, classes: bool = True) -> Roots:
        roots: list[Any] = []
        labels: list[tuple[str, str]] = []
        for name, mod in list(sys.modules.items()):
            if isinstance(mod, types.ModuleType) and not is_own_module(name):
                label = ("module", f"module {name}")
                d = getattr(mod, "__dict__", None)
                if isinstance(d, dict):
                    roots.append(d)
                    labels.append(label)
                roots.append(mod)
                labels.append(label)
        for klass in all_classes() if classes else ():
            if not is_own_module(module_of_type(klass)):
                roots.append(klass)
                labels.append(("class", f"class {qualified_type_name(klass)}"))
        loops = event_loops()
        loop_labels = [("loop", f"event loop <{type(loop).__name__}>") for loop in loops]
        machinery: list[Any] = []
        for loop in loops:
            for attr in LOOP_MACHINERY:
                v = getattr(loop, attr, None)
                if v is not None:
                    machinery.append(v)
        # Running frames are dead ends (their locals are roots of their own,
        # which also covers 3.11+ where a running frame does not report its
        # locals to the collector), and so are the coroutines running them.
        stops: list[Any] = running_coroutines(loops)
        frames: list[Any] = []
        frame_labels: list[tuple[str, str]] = []
        # Popped, not iterated: a loop variable would be left holding the last
        # thread's top frame, this very frame when this thread comes last - a
        # frame that holds itself, and its callers' locals with it.
        tops = list(sys._current_frames().values())
        while tops:
            f: types.FrameType | None = tops.pop()
            while f is not None:
                stops.append(f)
                code = f.f_code
                # Module-level code runs with its globals as locals: the module
                # root already covers them.
                if not code.co_filename.startswith(OWN_DIR) and f.f_locals is not f.f_globals:
                    local_vars = f.f_locals
                    stops.append(local_vars)  # a dict made for us on 3.10-3.12
                    where = f"running frame {code_name(code)} ({os.path.basename(code.co_filename)}:{f.f_lineno})"
                    for k, v in list(local_vars.items()):
                        if isinstance(v, GENERATOR_TYPES) and is_running(v):
                            # A coroutine running further up this stack (uvloop.run's
                            # wrapper holds `main` while awaiting it): a running frame.
                            stops.append(v)
                            continue
                        frames.append(v)
                        frame_labels.append(("frame", f"{where} local {k!r}"))
                f = f.f_back
        r = cls(
            roots + loops,
            labels + loop_labels,
            frames,
            frame_labels,
            list(loops),
            loop_labels,
            stops,
            machinery,
            list(own_types()),
        )
        # The query's own bookkeeping is never a holder.
        stops.extend(
            [
                roots,
                labels,
                frames,
                frame_labels,
                loops,
                loop_labels,
                machinery,
                stops,
                r.long_lived,
                r.long_lived_labels,
                r.loops,
                r.loop_labels,
                r.own_types,
            ]
        )
        return r

    def release(self) -> None:
        """Empty every list once the search is done. ``stops`` lists itself
        and the running frames, and the frames' locals are roots: left as they
        are, they form a reference cycle that keeps every local of every
        running frame alive - a finished task in a caller's variable among
        them - until a full collection."""
        for lst in (
            self.stops,
            self.frames,
            self.frame_labels,
            self.long_lived,
            self.long_lived_labels,
            self.loops,
            self.loop_labels,
            self.machinery,
            self.own_types,
        ):
            lst.clear()
