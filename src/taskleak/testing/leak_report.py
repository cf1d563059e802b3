"""The TaskLeakError message: leaks grouped by kind, creation site,
suspension point and wait target, largest group first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..frame import Frame, creation_site, user_frame
from ..model.text import created_lines, plural, suspended_lines
from ..report.advice import fix_text
from ..report.asyncgens import generator_lines, generator_name

if TYPE_CHECKING:
    from .leak import Leak

__all__ = ["format_leaks", "callback_origin"]

_KIND_WORDS = {
    "pending": "still pending when the scope ended",
    "gc-pending": "destroyed by the garbage collector while pending",
    "done-retained": "finished but still referenced from outside the scope",
    "never-retrieved": "failed, and nobody retrieved the exception",
    "abandoned": "abandoned: still running, but nothing can consume its result any more",
    "asyncgen": "never closed (its finally block never ran)",
}
_ORDER = ("pending", "abandoned", "gc-pending", "never-retrieved", "done-retained", "asyncgen")
_INDENT = "    "


def _key(lk: Leak) -> tuple[Any, ...]:
    t = lk.task
    created = None if t.created_at is None else tuple(creation_site(t.created_at))
    return (
        lk.kind,
        t.coro,
        created,
        tuple(t.stack),
        t.waiting_on.split(" (")[0],
        (lk.exception_text or "").split(":")[0],
        tuple(lk.held_by or ()),
        lk.note,
    )


def _coro_frame(t: Any) -> Frame | None:
    """Where the task's coroutine function is defined."""
    if t.stack:
        first: Frame = t.stack[0]
        return first
    task = getattr(t, "task", None)
    code = getattr(task.get_coro(), "cr_code", None) if task is not None else None
    if code is None:
        return None
    return Frame(code.co_filename, code.co_firstlineno, getattr(code, "co_qualname", code.co_name))


_PLUMBING = ("create_task", "ensure_future", "_ensure_future")


def callback_origin(frames: list[Frame]) -> Frame:
    """For a creation stack with no frame of the user's code: the frame that
    asked for the task (a protocol's connection_made, a callback), past
    asyncio's create_task / ensure_future plumbing."""
    for f in frames:
        if f.function.rsplit(".", 1)[-1] not in _PLUMBING:
            return f
    return frames[0]


def _created(t: Any, max_frames: int) -> list[str]:
    """The creation site; when no frame of the user's code is on the creation
    stack (a server's connection handler, a protocol callback's task), where
    the callback chain came from and what the task runs, rather than a page
    of asyncio's internals."""
    frames = t.created_at
    if not frames or user_frame(frames) is not None:
        return created_lines(frames, max_frames)
    origin = callback_origin(frames)
    out = [f"  created at: a loop callback, {origin.short()} (no frame of your code on the creation stack)"]
    coro = _coro_frame(t)
    if coro is not None:
        out.append(f"  runs: {t.coro}() of {coro.short()}")
    return out


def format_leaks(
    leaks: list[Leak],
    label: str = "check()",
    max_frames: int = 6,
    max_names: int = 5,
    notes: list[str] | tuple[str, ...] = (),
) -> str:
    """The grouped report; `notes` (what happened during the grace, say)
    come after the groups, then one line of advice per kind present."""
    groups: dict[tuple[Any, ...], list[Leak]] = {}
    for lk in leaks:
        groups.setdefault(_key(lk), []).append(lk)
    ordered = sorted(groups.values(), key=lambda g: (_ORDER.index(g[0].kind), -len(g)))
    tasks = sum(1 for lk in leaks if lk.kind != "asyncgen")
    gens = len(leaks) - tasks
    head = [plural(tasks, "leaked task")] if tasks or not gens else []
    if gens:
        head.append(plural(gens, "async generator") + " never closed")
    out = [f"taskleak: {' and '.join(head)} in {label}"]
    for g in ordered:
        out.append("")
        out += _group(g, max_frames, max_names)
    if notes:
        out.append("")
        out += [f"Note: {n}" for n in notes]
    hint = "pass ignore=[...] to taskleak.check() for tasks that are meant to outlive it"
    return "\n".join(out) + "\n\n" + fix_text([lk.kind for lk in leaks], hint)


def _group(g: list[Leak], max_frames: int, max_names: int) -> list[str]:
    lk, t = g[0], g[0].task
    if lk.kind == "asyncgen":
        # The generator is what the user made, not the aclose() task.
        out = [f"[asyncgen] {plural(len(g), 'async generator')} {_KIND_WORDS['asyncgen']}: {generator_name(t.stack)}"]
        return out + generator_lines(t.stack, t.created_at)
    out = [f"[{lk.kind}] {plural(len(g), 'task')} {_KIND_WORDS[lk.kind]}: {t.coro}()"]
    names = [x.task.name for x in g]
    out.append(
        _INDENT
        + ", ".join(names[:max_names])
        + (f", ... ({len(names) - max_names} more)" if len(names) > max_names else "")
    )
    if lk.note:
        out.append(f"  {lk.note}")
    if t.waiting_on and lk.kind in ("pending", "gc-pending", "abandoned"):
        orphan = "yes" if t.orphaned else "no"
        out.append(f"  waiting on: {t.waiting_on}; orphaned: {orphan}")
    if lk.exception_text:
        out.append(f"  exception: {lk.exception_text}")
    if lk.held_by:
        out.append("  held by:")
        out += [_INDENT + p for p in lk.held_by]
    out += _created(t, max_frames)
    out += suspended_lines(t.stack, max_frames)
    return out
