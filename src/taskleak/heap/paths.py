"""Holder paths in words: :class:`HolderPath`, and how a chain of objects
found by a search becomes one (``module app.registry.TASKS[2]``).

A search (``_core.forward_search``, a :class:`~taskleak.heap.index.HeapIndex`
query) returns a root and the chain of objects from it to the target;
:func:`path_from_chain` names each step by how the holder refers to the next
object: a dict key, a list position, an attribute, a closure variable, a
frame's local. The chain is read only while rendering; the path keeps none
of its objects.
"""

from __future__ import annotations

import asyncio
import types
from dataclasses import dataclass, field
from typing import Any

from .names import code_name, qualified_type_name
from .roots import is_running

__all__ = ["HolderPath", "Memo", "describe", "path_from_chain"]


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
    steps: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.root + "".join(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "root_kind": self.root_kind, "steps": list(self.steps), "path": str(self)}


def describe(obj: Any) -> str:
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
_KNOWN_ATTRS = (
    "__self__",
    "__func__",
    "__wrapped__",
    "__defaults__",
    "__kwdefaults__",
    "__closure__",
    "_callback",
    "_args",
    "cr_frame",
    "gi_frame",
    "ag_frame",
    "cr_await",
    "gi_yieldfrom",
    "_coro",
    "_result",
    "_exception",
    "_fut_waiter",
    "_loop",
    "__objclass__",
)


def _frame_local_name(frame: Any, child: Any) -> str | None:
    """The local of a frame on a holder path that holds `child`.

    The frame is not running: running frames stop every path (their locals
    are roots of their own). On CPython 3.10-3.12, ``frame.f_locals`` is a
    dict snapshot that the frame keeps until it next reads its locals: left
    as it is, naming a holder would itself hold `child` (a finished task the
    caller had already let go of). The snapshot is emptied after the lookup;
    that loses nothing, as the next read refills it from the frame's own
    slots, and a frame that is not running is inside no trace function that
    could write the emptied dict back. 3.13+ returns a live view instead (a
    ``FrameLocalsProxy``, not a dict), which keeps nothing and must never be
    cleared: that would delete the locals."""
    try:
        snapshot = frame.f_locals
        try:
            for k, v in list(snapshot.items()):
                if v is child:
                    return str(k)
        finally:
            if type(snapshot) is dict:
                snapshot.clear()
    except Exception:  # pragma: no cover - defensive: exotic frames
        pass
    return None


#: Containers at least this long get their positions indexed once per rendering
#: (a memo) when several paths pass through them: 10,000 finished tasks in one
#: list would otherwise cost 10,000 scans of it.
_MEMO_MIN = 32
#: id(container) -> {id(member): the step naming it}; see :func:`path_from_chain`.
Memo = dict[int, dict[int, str]]


def _positions(holder: Any) -> dict[int, str]:
    """id(member) -> the step naming it, first occurrence first, as _edge
    would find it by scanning."""
    out: dict[int, str] = {}
    if isinstance(holder, dict):
        for k, v in list(holder.items()):
            out.setdefault(id(v), f"[{k!r}]")
            out.setdefault(id(k), " (a dict key)")
    else:
        for i, v in enumerate(list(holder)):
            out.setdefault(id(v), f"[{i}]")
    return out


def _edge(holder: Any, child: Any, memo: Memo | None = None) -> str:
    """How ``holder`` refers to ``child``, as a path step."""
    if (
        memo is not None
        and (isinstance(holder, (dict, list, tuple)) or type(holder).__name__ == "deque")
        and len(holder) >= _MEMO_MIN
    ):
        pos = memo.get(id(holder))
        if pos is None:
            pos = memo[id(holder)] = _positions(holder)
        step = pos.get(id(child))
        if step is not None:
            return step
    if isinstance(holder, type):
        # A type refers to dicts only through its attribute dict (tp_dict).
        return _ATTR_DICT if isinstance(child, dict) else f" -> {describe(child)}"
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
        frame = (
            getattr(holder, "cr_frame", None) or getattr(holder, "gi_frame", None) or getattr(holder, "ag_frame", None)
        )
        if frame is child:
            return ""  # 3.10: the frame object; its step names the local
        if frame is not None and not is_running(holder):
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
    return f" -> {describe(child)}"


def _steps(chain: list[Any], memo: Memo | None = None) -> list[str]:
    steps: list[str] = []
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


def path_from_chain(root: int, chain: list[Any], labels: list[tuple[str, str]], memo: Memo | None = None) -> HolderPath:
    """The :class:`HolderPath` of one search result: ``root`` is the index of
    the root in ``labels`` (``(root_kind, label)`` per root, as the search
    was given them), -1 for a class the heap index found by itself, any
    other negative value for a chain that starts at no root (``chain[0]``
    is then the topmost holder). ``chain`` runs from the root's object to
    the target.

    ``memo``: shared by the paths of one rendering (see ``_MEMO_MIN``); valid
    only while the containers in it stay alive and unchanged."""
    if root >= 0:
        kind, label = labels[root]
        # For a frame root, chain[0] is the local variable's value: the label named it.
        return HolderPath(label, kind, _steps(chain, memo))
    if root == -1:
        return HolderPath(f"class {qualified_type_name(chain[0])}", "class", _steps(chain, memo))
    return HolderPath(describe(chain[0]), "unrooted", _steps(chain, memo))
