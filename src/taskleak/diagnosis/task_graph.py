"""The awaited-by graph: which task awaits which.

"Who awaits this future" is answered by :mod:`taskleak.awaited_by`: asyncio's
native awaited-by links where the interpreter keeps them (CPython 3.14+, the
links ``asyncio.capture_call_graph()`` reads), else a reconstruction from done
callbacks (3.10-3.13: a task's wakeup on the task it awaits; ``gather()``,
``wait()``, ``shield()``, ``wait_for()`` callbacks; ``TaskGroup._on_task_done``).

A cycle in this graph (A awaits B awaits A) can never finish: a deadlock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..frame import short_path
from .awaited_by import awaiters_of, resolver

if TYPE_CHECKING:
    from ..model.snapshot import Snapshot
    from ..model.task_info import TaskInfo

__all__ = ["TaskGraph", "task_graph", "awaiters_of", "natural_key"]


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders "worker-2" before "worker-10"."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _names_summary(names: list[str], limit: int = 6) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[: limit - 2]) + ", ..., " + names[-1]


@dataclass
class TaskGraph:
    """Tasks and who awaits whom. ``awaits[name]`` / ``awaited_by[name]`` list
    task names; ``roots`` are pending tasks nobody awaits; ``cycles`` are await
    cycles (deadlocks), each a list of task names in await order."""

    tasks: dict[str, TaskInfo]
    awaits: dict[str, list[str]] = field(default_factory=dict)
    awaited_by: dict[str, list[str]] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)
    cycles: list[list[str]] = field(default_factory=list)

    def format(self, *, max_frames: int = 8) -> str:
        """A tree like ``python -m asyncio pstree`` (3.14): each task, its
        coroutine chain, and the tasks it awaits beneath it; then deadlocks.
        Tasks are in name order (``worker-2`` before ``worker-10``); sibling
        tasks whose whole subtrees are alike (same coroutine, chain, wait and
        children) are folded into one entry, ``(T) 12 x worker()``."""
        return _TreeWriter(self, max_frames).write()

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": [
                {
                    "name": n,
                    "coro": t.coro,
                    "state": t.state,
                    "waiting_on": t.waiting_on,
                    "orphaned": t.orphaned,
                    "stack": [f.to_dict() for f in t.stack],
                    "awaits": self.awaits.get(n, []),
                    "awaited_by": self.awaited_by.get(n, []),
                }
                for n, t in self.tasks.items()
            ],
            "roots": list(self.roots),
            "cycles": [list(c) for c in self.cycles],
        }


class _TreeWriter:
    """Writes TaskGraph.format()'s tree. A class rather than nested
    functions: recursive closures hold themselves through their cells, a
    reference cycle through the graph (and every task in it) that only a
    full collection would free."""

    def __init__(self, graph: TaskGraph, max_frames: int) -> None:
        self.graph = graph
        self.max_frames = max_frames
        self.lines: list[str] = []
        self.sig_cache: dict[str, Any] = {}

    def write(self) -> str:
        top = self.groups(self.graph.roots, set())
        for i, g in enumerate(top):
            self.emit(g, "", i == len(top) - 1, set())
        for c in self.graph.cycles:
            self.lines.append("")
            self.lines.append("deadlock: " + " awaits ".join(c + [c[0]]))
        return "\n".join(self.lines) + "\n"

    def signature(self, name: str, path: set[str]) -> Any:
        if name in self.sig_cache:
            return self.sig_cache[name]
        t = self.graph.tasks[name]
        if name in path:
            return ("cycle", name)
        wait = t.wait
        kids = tuple(sorted((self.signature(k, path | {name}) for k in self.graph.awaits.get(name, [])), key=repr))
        sig = (
            t.coro,
            t.orphaned,
            None if wait is None else wait.kind,
            tuple((f.filename, f.lineno, f.function) for f in t.stack[-self.max_frames :]),
            kids,
        )
        self.sig_cache[name] = sig
        return sig

    def task_line(self, name: str, count: int = 1) -> str:
        t = self.graph.tasks[name]
        flag = " [orphaned]" if t.orphaned else ""
        who = f"{count} x {t.coro}()" if count > 1 else name
        if not t.waiting_on:
            return f"(T) {who}{flag}"
        if t.waiting_on.startswith(("running", "ready to run")):
            return f"(T) {who}{flag}  {t.waiting_on}"
        return f"(T) {who}{flag}  waiting on {t.waiting_on}"

    def groups(self, names: list[str], path: set[str]) -> list[list[str]]:
        by_sig: dict[Any, list[str]] = {}
        for n in names:
            by_sig.setdefault(repr(self.signature(n, path)), []).append(n)
        return list(by_sig.values())  # in the order of each group's first name

    def emit(self, group: list[str], prefix: str, last: bool, path: set[str]) -> None:
        name = group[0]
        self.lines.append(prefix + ("└── " if last else "├── ") + self.task_line(name, len(group)))
        prefix += "    " if last else "│   "
        if len(group) > 1:
            self.lines.append(prefix + "    tasks: " + _names_summary(group))
        if name in path:
            self.lines.append(prefix + "└── ... (await cycle)")
            return
        for f in self.graph.tasks[name].stack[-self.max_frames :]:
            self.lines.append(prefix + "└──  " + f"{f.function} {short_path(f.filename)}:{f.lineno}")
            prefix += "    "
        kids = self.groups(self.graph.awaits.get(name, []), path | {name})
        for i, k in enumerate(kids):
            self.emit(k, prefix, i == len(kids) - 1, path | {name})


def _unique_names(infos: list[TaskInfo]) -> dict[int, str]:
    names: dict[int, str] = {}
    seen: dict[str, int] = {}
    for t in infos:
        n = t.name
        if n in seen:
            seen[n] += 1
            n = f"{n}#{seen[n]}"
        else:
            seen[n] = 1
        names[id(t.task)] = n
    return names


def build_graph(snap: Snapshot) -> TaskGraph:
    pending = [t for t in snap if t.state == "pending"]
    names = _unique_names(pending)
    who_awaits = resolver(pending)
    g = TaskGraph(tasks={names[id(t.task)]: t for t in pending})
    try:
        for t in pending:
            me = names[id(t.task)]
            for a in who_awaits(t.task):
                an = names.get(id(a))
                if an is None:
                    continue
                g.awaited_by.setdefault(me, []).append(an)
                g.awaits.setdefault(an, []).append(me)
    finally:
        who_awaits.close()
    # Deterministic: every list in name order, each cycle starting at its
    # first name (in await order: each task awaits the next).
    for d in (g.awaits, g.awaited_by):
        for k in d:
            d[k].sort(key=natural_key)
    g.tasks = dict(sorted(g.tasks.items(), key=lambda kv: natural_key(kv[0])))
    g.roots = [n for n in g.tasks if not g.awaited_by.get(n)]
    cycles = []
    for c in _cycles(g):
        i = min(range(len(c)), key=lambda j: natural_key(c[j]))
        cycles.append(c[i:] + c[:i])
    g.cycles = sorted(cycles, key=lambda c: natural_key(c[0]))
    return g


def _cycles(g: TaskGraph) -> list[list[str]]:
    """Elementary await cycles, each reported once (iterative DFS, colours)."""
    colour: dict[str, int] = {}
    cycles: list[list[str]] = []
    seen_sets: set[frozenset[Any]] = set()
    for start in g.tasks:
        if colour.get(start):
            continue
        stack = [(start, iter(g.awaits.get(start, [])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
                continue
            c = colour.get(nxt, 0)
            if c == 0:
                colour[nxt] = 1
                stack.append((nxt, iter(g.awaits.get(nxt, []))))
                path.append(nxt)
            elif c == 1:
                cyc = path[path.index(nxt) :]
                key = frozenset(cyc)
                if key not in seen_sets:
                    seen_sets.add(key)
                    cycles.append(cyc)
    return cycles


def task_graph(snap: Snapshot | None = None) -> TaskGraph:
    """The awaited-by graph of every pending task (of ``snap``, or of a fresh
    snapshot). ``print(task_graph().format())`` prints it as a tree."""
    if snap is None:
        from ..model.snapshot import snapshot

        snap = snapshot()
    return build_graph(snap)
