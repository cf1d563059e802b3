"""Who holds an object: :func:`who_holds` and :class:`HeapIndex`.

Referrer paths from long-lived roots (module globals, classes, running frames,
event loops) to an object, found by a backwards search over a reverse
reference index that ``taskleak._core`` builds in one pass over the heap the
cyclic garbage collector tracks. No collection runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .. import _core
from ..tracking import live_tasks
from .names import code_name, qualified_type_name

__all__ = ["HeapIndex", "HolderPath", "who_holds"]

# taskleak's own frames are never holders.
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Above this many GC-tracked objects HeapIndex() refuses to build (MemoryError)
#: unless given a larger ``max_objects``: the index costs ~30-40 bytes per object.
DEFAULT_MAX_OBJECTS = 50_000_000


# ---- holder paths -------------------------------------------------------------


@dataclass
class HolderPath:
    """One chain of strong references from a root to the object asked about.

    ``root`` names where the chain starts (``module app.registry``,
    ``class app.Pool``, ``running frame main (app.py:40) local 'tasks'``,
    ``event loop <_UnixSelectorEventLoop>``, or for an object nothing tracked
    refers to, ``instance app.Service``); ``root_kind`` is one of ``module``,
    ``class``, ``frame``, ``loop``, ``unrooted``; ``steps`` are the references
    that follow, one string each (``['TASKS']``, ``[2]``, ``.live``).
    ``str(path)`` is the whole path on one line. Paths hold no reference to
    the objects they describe.
    """

    root: str
    root_kind: str
    steps: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.root + "".join(self.steps)

    def to_dict(self) -> Dict[str, Any]:
        return {"root": self.root, "root_kind": self.root_kind, "steps": list(self.steps), "path": str(self)}


class HeapIndex:
    """A reverse reference index of the GC-tracked heap, for several
    :meth:`who_holds` queries.

    Cost: building walks the heap once and asks every tracked object for its
    references (``tp_traverse``): ~40-100 ms and ~30-40 bytes per object for
    a heap of a million objects (see :attr:`bytes`). A query then costs
    roughly the size of the part of the graph it searches, usually well
    under a millisecond. Building never runs the garbage collector.

    Staleness: the index is a snapshot of object *addresses*; it holds no
    reference to any heap object. Every path a query reports is re-checked
    against the live heap (each holder must still refer to the next object),
    so a path is never invented, but references created after the build are
    not seen, and an object created after the build is found through one
    extra heap pass. :attr:`stale` tells whether the last query met index
    entries that no longer hold; build a new index to see the heap as it is
    now. Refuses (``MemoryError``) heaps above ``max_objects`` tracked objects.
    """

    def __init__(self, *, max_objects: int = DEFAULT_MAX_OBJECTS) -> None:
        if isinstance(max_objects, bool) or not isinstance(max_objects, int):
            raise TypeError(f"max_objects must be an int, not {type(max_objects).__name__}")
        if max_objects <= 0:
            raise ValueError(f"max_objects must be positive, got {max_objects}")
        self._ix = _core.build_heap_index(max_objects)
        #: True if the last query found index entries that no longer hold.
        self.stale = False

    @property
    def objects(self) -> int:
        """GC-tracked objects indexed."""
        return int(self._ix.objects)

    @property
    def edges(self) -> int:
        """References between indexed objects."""
        return int(self._ix.edges)

    @property
    def bytes(self) -> int:
        """Memory the index uses, in bytes (tables, CSR arrays, query scratch)."""
        return int(self._ix.bytes)

    @property
    def build_seconds(self) -> float:
        return float(self._ix.build_seconds)

    def who_holds(self, obj: Any, max_depth: int = 10, max_paths: int = 3) -> List[HolderPath]:
        """Up to ``max_paths`` shortest referrer paths from a root to ``obj``,
        each at most ``max_depth`` references long. See :func:`who_holds`."""
        _check_limits(max_depth, max_paths)
        roots, labels, stops = _collect_roots()
        found, self.stale = self._ix.who_holds(obj, roots, stops, max_depth, max_paths)
        if not found and self.stale:
            # The indexed object at this address may be gone and the address
            # reused by `obj`: look up its referrers live instead.
            found, _ = self._ix.who_holds(obj, roots, stops, max_depth, max_paths, True)
        del roots, stops
        return [_holder_path(root, chain, labels) for root, chain in found]

    def __repr__(self) -> str:
        return f"<HeapIndex objects={self.objects} edges={self.edges} bytes={self.bytes}>"


def who_holds(obj: Any, max_depth: int = 10, max_paths: int = 3) -> List[HolderPath]:
    """Who keeps ``obj`` alive: up to ``max_paths`` shortest chains of strong
    references (each at most ``max_depth`` long) from a root to ``obj``.

    Roots are module globals, classes (class attributes), local variables of
    frames that are running right now (in any thread, including coroutines
    on the active await chain), and event loops. Frames of taskleak itself
    are ignored. An empty list means nothing reachable from a root holds it;
    if nothing tracked refers to the object's holders at all, the chain
    starts at the topmost holder instead (``root_kind == "unrooted"``: held
    from C code, or garbage in a reference cycle).

    Cost: builds a fresh :class:`HeapIndex` each call (one heap pass, ~40-100
    ms per million objects, never a garbage collection). For several
    queries, build one ``HeapIndex()`` and call its ``who_holds``.
    """
    _check_limits(max_depth, max_paths)
    return HeapIndex().who_holds(obj, max_depth=max_depth, max_paths=max_paths)


def _check_limits(max_depth: Any, max_paths: Any) -> None:
    for name, v in (("max_depth", max_depth), ("max_paths", max_paths)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, not {type(v).__name__}")
        if v < 1:
            raise ValueError(f"{name} must be at least 1, got {v}")


def _event_loops() -> List[Any]:
    loops: Dict[int, Any] = {}

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


def _collect_roots() -> Tuple[List[Any], List[Tuple[str, str]], List[Any]]:
    """(root objects, (kind, label) per root, objects the search must not
    pass through). Computed per query: frames and loops come and go."""
    roots: List[Any] = []
    labels: List[Tuple[str, str]] = []
    for name, mod in list(sys.modules.items()):
        if isinstance(mod, types.ModuleType):
            label = ("module", f"module {name}")
            d = getattr(mod, "__dict__", None)
            if isinstance(d, dict):
                roots.append(d)
                labels.append(label)
            roots.append(mod)
            labels.append(label)
    for loop in _event_loops():
        roots.append(loop)
        labels.append(("loop", f"event loop <{type(loop).__name__}>"))
    # Running frames are dead ends (their locals are listed as roots of their
    # own, which also covers 3.11+ where a running frame does not report its
    # locals to the collector).
    stops: List[Any] = []
    for top in list(sys._current_frames().values()):
        f: Optional[types.FrameType] = top
        while f is not None:
            stops.append(f)
            code = f.f_code
            # Module-level code runs with its globals as locals: the module
            # root already covers them.
            if not code.co_filename.startswith(_OWN_DIR) and f.f_locals is not f.f_globals:
                local_vars = f.f_locals
                stops.append(local_vars)  # a dict made for us on 3.10-3.12
                where = f"running frame {code_name(code)} ({os.path.basename(code.co_filename)}:{f.f_lineno})"
                for k, v in list(local_vars.items()):
                    roots.append(v)
                    labels.append(("frame", f"{where} local {k!r}"))
            f = f.f_back
    stops.append(roots)
    stops.append(labels)
    stops.append(stops)
    return roots, labels, stops


def _describe(obj: Any) -> str:
    """An object in a few words, for the start of an unrooted path and for
    steps no attribute or index can name."""
    if isinstance(obj, type):
        return f"class {qualified_type_name(obj)}"
    if isinstance(obj, asyncio.Task):
        return f"task {obj.get_name()!r}"
    if isinstance(obj, types.CoroutineType):
        return f"coroutine {obj.__qualname__}"
    if isinstance(obj, types.FunctionType):
        return f"function {obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, types.FrameType):
        return f"frame {code_name(obj.f_code)}"
    if type(obj).__module__ == "builtins":
        return type(obj).__qualname__
    return f"instance {qualified_type_name(type(obj))}"


_ATTR_DICT = "."  # marker: the next step is a key of an attribute dict, shown as .name
_KNOWN_ATTRS = ("__self__", "__func__", "__wrapped__", "__defaults__", "__kwdefaults__", "__closure__",
                "_callback", "_args", "cr_frame", "gi_frame", "ag_frame", "cr_await", "gi_yieldfrom",
                "_coro", "_result", "_exception", "_fut_waiter", "_loop", "__objclass__")


def _frame_local_name(frame: Any, child: Any) -> Optional[str]:
    try:
        for k, v in list(frame.f_locals.items()):
            if v is child:
                return k
    except Exception:  # pragma: no cover - defensive: exotic frames
        pass
    return None


def _edge(holder: Any, child: Any) -> str:
    """How ``holder`` refers to ``child``, as a path step."""
    if isinstance(holder, type):
        # A type refers to dicts only through its attribute dict (tp_dict).
        return _ATTR_DICT if isinstance(child, dict) else f" -> {_describe(child)}"
    if isinstance(holder, types.ModuleType) and getattr(holder, "__dict__", None) is child:
        return _ATTR_DICT
    if isinstance(holder, dict):
        for k, v in list(holder.items()):
            if v is child:
                return f"[{k!r}]"
            if k is child:
                return " (a dict key)"
        return " (in a dict)"
    if isinstance(holder, (list, tuple)) or type(holder).__name__ == "deque":
        for i, v in enumerate(list(holder)):
            if v is child:
                return f"[{i}]"
    if isinstance(holder, (set, frozenset)):
        return " (set member)"
    if isinstance(holder, types.CellType):
        return ""  # the closure step already named the variable
    if isinstance(holder, types.FrameType):
        name = _frame_local_name(holder, child)
        if name is not None:
            return f" local {name!r}"
    if isinstance(holder, (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType)):
        frame = getattr(holder, "cr_frame", None) or getattr(holder, "gi_frame", None) or getattr(holder, "ag_frame", None)
        if frame is child:
            return ""  # 3.10: the frame object; its step names the local
        if frame is not None:
            name = _frame_local_name(frame, child)
            if name is not None:
                return f" local {name!r}"
    if isinstance(holder, asyncio.Future) and getattr(holder, "get_coro", None) is not None:
        if holder.get_coro() is child:
            return f" coroutine {getattr(child, '__qualname__', '?')}"
    try:
        d = object.__getattribute__(holder, "__dict__")
    except Exception:
        d = None
    if d is child:
        return _ATTR_DICT
    if isinstance(d, dict):
        for k, v in list(d.items()):
            if v is child:
                return f".{k}"
    for name in _KNOWN_ATTRS:
        try:
            if getattr(holder, name, None) is child:
                return f".{name}"
        except Exception:
            continue
    for klass in type(holder).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            try:
                if getattr(holder, name, None) is child:
                    return f".{name}"
            except Exception:
                continue
    return f" -> {_describe(child)}"


def _steps(chain: List[Any]) -> List[str]:
    steps: List[str] = []
    i = 0
    while i + 1 < len(chain):
        holder, child = chain[i], chain[i + 1]
        closure = getattr(holder, "__closure__", None) if isinstance(holder, types.FunctionType) else None
        if closure is not None and child is closure and i + 2 < len(chain):
            # function -> closure tuple -> cell: name the free variable.
            cell = chain[i + 2]
            names = holder.__code__.co_freevars
            idx = next((j for j, c in enumerate(closure) if c is cell), None)
            var = names[idx] if idx is not None and idx < len(names) else "?"
            steps.append(f" (closure {var!r})")
            i += 2
            continue
        s = _edge(holder, child)
        if steps and steps[-1] == _ATTR_DICT:
            # obj.__dict__['name'] reads better as obj.name
            if s.startswith("['") and s.endswith("']") and s[2:-2].isidentifier():
                s = "." + s[2:-2]
            elif s.startswith("[") or s.startswith("."):
                s = ".__dict__" + s
            else:
                s = ".__dict__" + s
            steps[-1] = s
        else:
            steps.append(s)
        i += 1
    if steps and steps[-1] == _ATTR_DICT:
        steps[-1] = ".__dict__"
    return [s for s in steps if s]


def _holder_path(root: int, chain: List[Any], labels: List[Tuple[str, str]]) -> HolderPath:
    if root >= 0:
        kind, label = labels[root]
        if kind == "frame":
            # chain[0] is the local variable's value: the label named it.
            return HolderPath(label, kind, _steps(chain))
        return HolderPath(label, kind, _steps(chain))
    if root == -1:
        return HolderPath(f"class {qualified_type_name(chain[0])}", "class", _steps(chain))
    return HolderPath(_describe(chain[0]), "unrooted", _steps(chain))
