"""taskleak.why(task): everything taskleak can say about one task."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import IO, Any

from ..frame import Frame, creation_site, short_path
from ..model.task_info import TaskInfo
from ..wait_target import WaitTarget

__all__ = ["Why", "why"]


@dataclass
class Why:
    """The diagnosis of one task.

    ``info`` is its :class:`TaskInfo`; ``wait`` the classified wait target;
    ``awaited_by`` / ``awaits`` name the tasks that await it and that it
    awaits; ``deadlock`` is the await cycle it is part of, if any;
    ``orphaned`` and ``reason`` say whether it is provably stuck and why
    (for a task that is not, ``reason`` names who holds the Future it
    awaits, as a holder path). A failed task has ``exception`` (its repr)
    and ``raised_at`` (the frame that raised it); a finished task still
    alive has ``held_by``: the holder paths that keep it (the caller's own
    frames only when nothing else holds it)."""

    info: TaskInfo
    wait: WaitTarget | None
    awaited_by: list[str] = field(default_factory=list)
    awaits: list[str] = field(default_factory=list)
    deadlock: list[str] | None = None
    orphaned: bool = False
    reason: str = ""
    exception: str | None = None
    raised_at: Frame | None = None
    held_by: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.info.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.info.to_dict(),
            "wait": None if self.wait is None else self.wait.to_dict(),
            "awaited_by": list(self.awaited_by),
            "awaits": list(self.awaits),
            "deadlock": None if self.deadlock is None else list(self.deadlock),
            "orphaned": self.orphaned,
            "reason": self.reason,
            "exception": self.exception,
            "raised_at": None if self.raised_at is None else self.raised_at.to_dict(),
            "held_by": list(self.held_by),
        }

    def __str__(self) -> str:
        t = self.info
        lines = [f"task {t.name!r} ({t.coro}()), {t.state}" + (f", age {t.age_s:.1f}s" if t.age_s is not None else "")]
        if self.wait is not None and t.state == "pending":
            if self.wait.kind in ("running", "scheduled"):
                lines.append(f"  {self.wait.label} [{self.wait.kind}]")
            else:
                lines.append(f"  waiting on: {self.wait.label} [{self.wait.kind}]")
            if self.wait.frame is not None:
                lines.append(f"  {self.wait.summary}")
            lines.append(f"  orphaned: {'yes' if self.orphaned else 'no'} - {self.reason}")
        if self.exception is not None:
            lines.append(f"  exception: {self.exception}")
            if self.raised_at is not None:
                lines.append(
                    f"  raised at: {short_path(self.raised_at.filename)}:{self.raised_at.lineno} "
                    f"in {self.raised_at.function}"
                )
        if t.state != "pending":
            if self.held_by:
                lines.append("  still held by:")
                lines += [f"    {p}" for p in self.held_by]
            else:
                lines.append("  still held by: nothing outside the caller's own references")
        if self.deadlock:
            lines.append("  DEADLOCK: " + " awaits ".join(self.deadlock + [self.deadlock[0]]))
        if self.awaits:
            lines.append("  awaits: " + ", ".join(self.awaits))
        if self.awaited_by:
            lines.append("  awaited by: " + ", ".join(self.awaited_by))
        created = t.created_at
        if created is None:
            lines.append("  created at: (unknown: created before taskleak.install())")
        else:
            lines.append("  created at:")
            lines += [f"    {f.short()}" for f in creation_site(created)[:6]]
        if t.parent:
            lines.append(f"  created by: {t.parent}")
        if t.stack:
            lines.append("  suspended at:")
            lines += [f"    {short_path(f.filename)}:{f.lineno} in {f.function}" for f in reversed(t.stack)]
        return "\n".join(lines) + "\n"


def why(task: asyncio.Task[Any], file: IO[str] | None = None, *, quiet: bool = False) -> Why:
    """Diagnose `task`: its wait target (classified, with the first frame
    outside asyncio and the standard library), who awaits it and what it
    awaits, await cycles, and whether it is orphaned (provably stuck).

    Prints the result to `file` (``sys.stderr`` when None) unless ``quiet``,
    and returns it. Takes a snapshot of every task: call it while debugging,
    not on a hot path. Raises TypeError if `task` is not an asyncio Task."""
    if not isinstance(task, asyncio.Task):
        raise TypeError(f"why() needs an asyncio.Task, got {type(task).__name__}")
    from ..model.snapshot import snapshot
    from .task_graph import build_graph

    snap = snapshot()
    info = next((t for t in snap if t.task is task), None)
    if info is None:  # a task no registry knows about (e.g. a custom factory on 3.14)
        snap = type(snap).of_tasks([task])
        info = snap.tasks[0]
    graph = build_graph(snap)
    me = next((n for n, t in graph.tasks.items() if t.task is task), info.name)
    deadlock = next((c for c in graph.cycles if me in c), None)
    reason = info.orphan_reason
    if info.state == "pending" and not info.orphaned:
        reason = _held_future_reason(task) or reason
    exc, raised_at = _failure(task) if info.state == "failed" else (None, None)
    result = Why(
        info=info,
        wait=info.wait if info.state == "pending" else None,
        awaited_by=list(graph.awaited_by.get(me, [])),
        awaits=list(graph.awaits.get(me, [])),
        deadlock=None if deadlock is None else deadlock[deadlock.index(me) :] + deadlock[: deadlock.index(me)],
        orphaned=info.orphaned,
        reason=reason,
        exception=exc,
        raised_at=raised_at,
        held_by=_holders(task) if info.state != "pending" else [],
    )
    if not quiet:
        print(str(result), end="", file=sys.stderr if file is None else file)
    return result


def _failure(task: asyncio.Task[Any]) -> tuple[str | None, Frame | None]:
    """The exception of a failed task and the frame that raised it, read
    without retrieving it (``task.exception()`` would silence asyncio's
    "exception was never retrieved")."""
    exc = getattr(task, "_exception", None)
    if not isinstance(exc, BaseException):
        return None, None
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    where = None
    if last is not None:
        code = last.tb_frame.f_code
        where = Frame(code.co_filename, last.tb_lineno, getattr(code, "co_qualname", code.co_name))
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, where


def _holders(task: asyncio.Task[Any], max_paths: int = 3) -> list[str]:
    """Holder paths of a finished task, the application's first; the caller's
    frames (which hold `task` to ask about it) only when nothing else does."""
    from ..heap.index import who_holds

    try:
        paths = who_holds(task, max_paths=max_paths + 2)
    except Exception:  # pragma: no cover - a heap search must never break why()
        return []
    lasting = [str(p) for p in paths if p.root_kind != "frame"]
    return (lasting or [str(p) for p in paths])[:max_paths]


def _held_future_reason(task: asyncio.Task[Any]) -> str:
    """For a pending task that is not orphaned: who holds the Future it
    awaits, outside the task itself (the object someone can resolve it
    through), as a holder path."""
    from ..heap.index import paths_to

    waiter = getattr(task, "_fut_waiter", None)
    if waiter is None:
        return ""
    try:
        paths = paths_to(waiter, exclude=[task, task.get_coro()], max_paths=3)
    except Exception:  # pragma: no cover - a heap search must never break why()
        return ""
    lasting = [p for p in paths if p.root_kind != "frame"] or paths
    if not lasting:
        return ""
    return f"waiting on a Future held by {lasting[0]}: whoever holds it can resolve it"
