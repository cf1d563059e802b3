"""Who holds an object: :func:`who_holds` and :class:`HeapIndex`.

Referrer paths from long-lived roots (module globals, classes, event loops,
running frames) to an object, ranked so that the paths explaining the
retention come first. :func:`who_holds` searches forward from the roots in
C++ (``_core.forward_search``) and stops at the first level that reaches the
object; :class:`HeapIndex` builds a reverse reference index in one pass over
the heap the cyclic garbage collector tracks, for many queries. No
collection runs.
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
from .names import code_name, module_of_type, qualified_type_name

__all__ = ["HeapIndex", "HolderPath", "who_holds", "holder_paths"]

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
    under a millisecond. Building never runs the garbage collector. For a
    single query, :func:`who_holds` is faster: it searches forward from the
    roots without building an index.

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
        """Up to ``max_paths`` referrer paths from a root to ``obj``, each at
        most ``max_depth`` references long, ranked as :func:`who_holds` ranks
        them."""
        _check_target(obj, "HeapIndex.who_holds")
        _check_limits(max_depth, max_paths)
        r = _Roots.collect(classes=False)  # the index knows its classes
        roots = r.long_lived + r.frames
        labels = r.long_lived_labels + r.frame_labels
        # Ask for more than wanted: ranking may push the shortest (often a
        # caller's frame) behind paths from long-lived roots.
        want = max_paths * 4
        found, self.stale = self._ix.who_holds(obj, roots, r.stops, max_depth, want)
        if self.stale or not found:
            # The indexed object at this address may be gone and the address
            # reused by `obj` (its old referrers then lead nowhere, or
            # nowhere true): also look up its referrers live.
            more, _ = self._ix.who_holds(obj, roots, r.stops, max_depth, want, True)
            found = found + more
        own = set(r.own_types)
        paths: List[HolderPath] = []
        seen = set()
        for root, chain in found:
            if any(type(o) in own for o in chain[:-1]):
                continue
            p = _holder_path(root, chain, labels)
            if str(p) not in seen:
                seen.add(str(p))
                paths.append(p)
        del roots, found
        return _rank(paths)[:max_paths]

    def __repr__(self) -> str:
        return f"<HeapIndex objects={self.objects} edges={self.edges} bytes={self.bytes}>"


def who_holds(obj: Any, max_depth: int = 10, max_paths: int = 3) -> List[HolderPath]:
    """Who keeps ``obj`` alive: up to ``max_paths`` chains of strong
    references (each at most ``max_depth`` long) from a root to ``obj``,
    the ones that explain the retention first.

    Ranking: paths from long-lived roots come first - module globals
    (``root_kind == "module"``), class attributes (``"class"``), state hung
    on an event loop (``"loop"``) - shortest first within each kind. Local
    variables of frames running right now, the caller's own included
    (``"frame"``), come after them, and the loop's own machinery (its ready
    queue, timers and selector) last. taskleak's own objects (a snapshot, a
    ``TaskInfo``...) are never part of a path, and its frames are never
    roots. If nothing reachable from a root holds ``obj`` but something
    tracked does, the chain starts at the topmost holder (``"unrooted"``:
    held from C code, or garbage in a reference cycle). An empty list means
    nothing the collector tracks refers to ``obj``.

    Cost: a breadth-first search forward from the roots that stops at the
    first level reaching ``obj`` (no index, no garbage collection; a few
    ms for an object a few references from a module global, in a heap of a
    million objects). Only when no root reaches ``obj`` is a
    :class:`HeapIndex` built. For many queries, build one ``HeapIndex()``.

    Raises ``TypeError`` for ``None``, ``True``, ``False``, ``...`` and
    ``NotImplemented`` (shared singletons everything refers to) and for
    non-int limits, ``ValueError`` for limits below 1.
    """
    _check_target(obj, "who_holds")
    _check_limits(max_depth, max_paths)
    return holder_paths(obj, max_depth=max_depth, max_paths=max_paths)


def holder_paths(obj: Any, *, exclude: List[Any] = (), max_depth: int = 10,  # type: ignore[assignment]
                 max_paths: int = 3) -> List[HolderPath]:
    """who_holds() whose paths never pass through the objects in ``exclude``
    (why(): a Future's holders other than the task awaiting it)."""
    r = _Roots.collect()
    r.stops.extend(exclude)
    paths: List[HolderPath] = []
    # Phase by phase, in the order of the ranking, until enough are found:
    # a breadth-first search ends at the first level that reaches `obj`,
    # so a caller's local variable (one reference away) would otherwise
    # hide the module global three references away.
    phases = (
        (r.long_lived, r.long_lived_labels, r.stops + r.machinery),
        # The long-lived roots are dead ends here: what they hold was searched.
        (r.frames, r.frame_labels, r.stops + r.machinery + r.long_lived),
        # The loops' machinery last; modules and classes are dead ends (a
        # callback's globals would otherwise lead back into sys.modules).
        (r.loops, r.loop_labels, r.stops + r.long_lived[:len(r.long_lived) - len(r.loops)]),
    )
    seen = set()
    for roots, labels, stops in phases:
        if len(paths) >= max_paths or not roots:
            continue
        found, _visited, _exhausted = _core.forward_search(obj, roots, stops, r.own_types, max_depth, max_paths * 2)
        for root, chain in found:
            p = _holder_path(root, chain, labels)
            if str(p) not in seen:
                seen.add(str(p))
                paths.append(p)
        del found
    if not paths:
        # Nothing rooted: the index finds where the holders' chains end.
        return HeapIndex().who_holds(obj, max_depth=max_depth, max_paths=max_paths)
    return _rank(paths)[:max_paths]


_KIND_RANK = {"module": 0, "class": 1, "loop": 2, "unrooted": 3, "frame": 4}
#: Attributes of an event loop that are asyncio's own machinery: a task or
#: handle held there is scheduled, not retained by the application.
LOOP_MACHINERY = ("_ready", "_scheduled", "_selector")


def _is_machinery(p: HolderPath) -> bool:
    return p.root_kind == "loop" and bool(p.steps) and p.steps[0].lstrip(".").split("[")[0] in LOOP_MACHINERY


def _rank(paths: List[HolderPath]) -> List[HolderPath]:
    """Long-lived roots first (module, class, loop state, unrooted), then the
    running frames, then the loop's machinery; shortest first within each."""
    def key(p: HolderPath) -> Tuple[int, int]:
        rank = 5 if _is_machinery(p) else _KIND_RANK.get(p.root_kind, 3)
        return (rank, len(p.steps))

    return sorted(paths, key=key)


_SINGLETONS = (None, True, False, Ellipsis, NotImplemented)


def _check_target(obj: Any, fn: str) -> None:
    if any(obj is s for s in _SINGLETONS):
        raise TypeError(f"{fn}() needs the object whose holders you want, not {obj!r}: {obj!r} is a "
                        "shared singleton that nearly everything refers to")


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


def _is_own_module(name: str) -> bool:
    return name == "taskleak" or name.startswith("taskleak.")


_own_types_cache: Tuple[int, List[type]] = (-1, [])


def _own_types() -> List[type]:
    """Every class taskleak defines: their instances (a Snapshot, a
    TaskInfo, a HeapIndex...) are never part of a holder path."""
    global _own_types_cache
    mods = [m for name, m in list(sys.modules.items()) if _is_own_module(name) and isinstance(m, types.ModuleType)]
    if _own_types_cache[0] == len(mods):
        return _own_types_cache[1]
    found: Dict[int, type] = {}
    for m in mods:
        for v in list(vars(m).values()):
            if isinstance(v, type) and _is_own_module(module_of_type(v)):
                found[id(v)] = v
    _own_types_cache = (len(mods), list(found.values()))
    return _own_types_cache[1]


def _all_classes() -> List[type]:
    """Every class alive, from object.__subclasses__() down (a class can hold
    state without being a module global: a class made in a function)."""
    out: List[type] = []
    seen = set()
    stack: List[type] = [object]
    while stack:
        cls = stack.pop()
        try:
            subs: List[type] = type.__subclasses__(cls)
        except Exception:  # pragma: no cover - exotic metaclasses
            continue
        for sub in subs:
            if id(sub) not in seen:
                seen.add(id(sub))
                out.append(sub)
                stack.append(sub)
    return out


_GENS = (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType)


def _is_running(gen: Any) -> bool:
    return bool(getattr(gen, "cr_running", False) or getattr(gen, "gi_running", False)
                or getattr(gen, "ag_running", False))


def _running_coroutines(loops: List[Any]) -> List[Any]:
    """The coroutines on the await chain of each loop's running task: their
    frames are running frames (reached otherwise through asyncio's
    current-task bookkeeping)."""
    out: List[Any] = []
    for loop in loops:
        try:
            task = asyncio.current_task(loop)
        except Exception:
            continue
        c = task.get_coro() if task is not None else None
        while isinstance(c, _GENS) and len(out) < 10_000:
            out.append(c)
            c = getattr(c, "cr_await", None) or getattr(c, "gi_yieldfrom", None) or getattr(c, "ag_await", None)
    return out


@dataclass
class _Roots:
    """Everything a query starts from, gathered per query (frames and loops
    come and go). The lists are the caller's to keep alive for the search."""

    long_lived: List[Any]
    long_lived_labels: List[Tuple[str, str]]
    frames: List[Any]
    frame_labels: List[Tuple[str, str]]
    loops: List[Any]
    loop_labels: List[Tuple[str, str]]
    stops: List[Any]
    machinery: List[Any]
    own_types: List[Any]

    @classmethod
    def collect(cls, classes: bool = True) -> "_Roots":
        roots: List[Any] = []
        labels: List[Tuple[str, str]] = []
        for name, mod in list(sys.modules.items()):
            if isinstance(mod, types.ModuleType) and not _is_own_module(name):
                label = ("module", f"module {name}")
                d = getattr(mod, "__dict__", None)
                if isinstance(d, dict):
                    roots.append(d)
                    labels.append(label)
                roots.append(mod)
                labels.append(label)
        for klass in _all_classes() if classes else ():
            if not _is_own_module(module_of_type(klass)):
                roots.append(klass)
                labels.append(("class", f"class {qualified_type_name(klass)}"))
        loops = _event_loops()
        loop_labels = [("loop", f"event loop <{type(loop).__name__}>") for loop in loops]
        machinery: List[Any] = []
        for loop in loops:
            for attr in LOOP_MACHINERY:
                v = getattr(loop, attr, None)
                if v is not None:
                    machinery.append(v)
        # Running frames are dead ends (their locals are roots of their own,
        # which also covers 3.11+ where a running frame does not report its
        # locals to the collector), and so are the coroutines running them.
        stops: List[Any] = _running_coroutines(loops)
        frames: List[Any] = []
        frame_labels: List[Tuple[str, str]] = []
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
                        if isinstance(v, _GENS) and _is_running(v):
                            # A coroutine running further up this stack (uvloop.run's
                            # wrapper holds `main` while awaiting it): a running frame.
                            stops.append(v)
                            continue
                        frames.append(v)
                        frame_labels.append(("frame", f"{where} local {k!r}"))
                f = f.f_back
        r = cls(roots + loops, labels + loop_labels, frames, frame_labels, list(loops), loop_labels, stops,
                machinery, list(_own_types()))
        # The query's own bookkeeping is never a holder.
        stops.extend([roots, labels, frames, frame_labels, loops, loop_labels, machinery, stops, r.long_lived,
                      r.long_lived_labels, r.loops, r.loop_labels, r.own_types])
        return r


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
                return str(k)
    except Exception:  # pragma: no cover - defensive: exotic frames
        pass
    return None


#: Containers at least this long get their positions indexed once per rendering
#: (a memo) when several paths pass through them: 10,000 finished tasks in one
#: list would otherwise cost 10,000 scans of it.
_MEMO_MIN = 32
Memo = Dict[int, Dict[int, str]]


def _positions(holder: Any) -> Dict[int, str]:
    """id(member) -> the step naming it, first occurrence first, as _edge
    would find it by scanning."""
    out: Dict[int, str] = {}
    if isinstance(holder, dict):
        for k, v in list(holder.items()):
            out.setdefault(id(v), f"[{k!r}]")
            out.setdefault(id(k), " (a dict key)")
    else:
        for i, v in enumerate(list(holder)):
            out.setdefault(id(v), f"[{i}]")
    return out


def _edge(holder: Any, child: Any, memo: Optional[Memo] = None) -> str:
    """How ``holder`` refers to ``child``, as a path step."""
    if memo is not None and (isinstance(holder, (dict, list, tuple)) or type(holder).__name__ == "deque") \
            and len(holder) >= _MEMO_MIN:
        pos = memo.get(id(holder))
        if pos is None:
            pos = memo[id(holder)] = _positions(holder)
        step = pos.get(id(child))
        if step is not None:
            return step
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
        if getattr(holder, "get_coro")() is child:
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


def _steps(chain: List[Any], memo: Optional[Memo] = None) -> List[str]:
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
        s = _edge(holder, child, memo)
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


def _holder_path(root: int, chain: List[Any], labels: List[Tuple[str, str]], memo: Optional[Memo] = None) -> HolderPath:
    """`memo`: shared by the paths of one rendering (see _MEMO_MIN); valid
    only while the containers in it stay alive and unchanged."""
    if root >= 0:
        kind, label = labels[root]
        # For a frame root, chain[0] is the local variable's value: the label named it.
        return HolderPath(label, kind, _steps(chain, memo))
    if root == -1:
        return HolderPath(f"class {qualified_type_name(chain[0])}", "class", _steps(chain, memo))
    return HolderPath(_describe(chain[0]), "unrooted", _steps(chain, memo))
