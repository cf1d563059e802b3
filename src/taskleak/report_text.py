"""Plain-text reports, grouped like Go's goroutine dumps: one block per
(creation site, suspension point, wait target), largest first."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from .frame import Frame, creation_site

if TYPE_CHECKING:
    from .loss_recorder import LossEvent
    from .snapshot import Snapshot
    from .task_info import TaskInfo

__all__ = ["format_snapshot", "format_loss_events", "format_frames"]

_INDENT = "    "


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_frames(frames: Optional[Sequence[Frame]], max_frames: int, *, unknown: str) -> List[str]:
    if frames is None:
        return [_INDENT + unknown]
    if not frames:
        return [_INDENT + "(no frames)"]
    lines = [_INDENT + f.short() for f in frames[:max_frames]]
    if len(frames) > max_frames:
        lines.append(_INDENT + f"... {len(frames) - max_frames} more frames")
    return lines


def _created_lines(created: Optional[List[Frame]], max_frames: int) -> List[str]:
    site = None if created is None else creation_site(created)
    return ["  created at:"] + format_frames(
        site, max_frames, unknown="(creation site unknown: created before taskleak.install())")


def _suspended_lines(chain: Sequence[Frame], max_frames: int) -> List[str]:
    if not chain:
        return []
    # Innermost first, like the creation stack.
    return ["  suspended at:"] + format_frames(list(reversed(chain)), max_frames, unknown="")


def _names(names: Sequence[str], max_names: int) -> str:
    shown = ", ".join(names[:max_names])
    if len(names) > max_names:
        shown += f", ... ({len(names) - max_names} more)"
    return shown


def _order(t: "TaskInfo") -> Tuple[int, str]:
    return (t.serial or 0, t.name)


def _group_block(group: List["TaskInfo"], max_frames: int, max_names: int) -> List[str]:
    first = group[0]
    head = f"{_plural(len(group), 'task')}, {first.state}, {first.coro}()"
    if first.state == "pending":
        head += f", waiting on {first.waiting_on}"
    lines = [head, _INDENT + _names([t.name for t in sorted(group, key=_order)], max_names)]
    ages = [t.age_s for t in group if t.age_s is not None]
    if ages:
        lines.append(f"  age: {min(ages):.1f}s" + (f" to {max(ages):.1f}s" if len(ages) > 1 else ""))
    parents = Counter(t.parent for t in group if t.parent)
    if parents:
        lines.append("  created by: " + ", ".join(p for p, _ in parents.most_common(3)))
    lines += _created_lines(first.created_at, max_frames)
    lines += _suspended_lines(first.stack, max_frames)
    return lines


def format_snapshot(snap: "Snapshot", *, max_frames: int = 6, max_names: int = 5) -> str:
    tasks = list(snap)
    states = Counter(t.state for t in tasks)
    groups = snap.groups()
    summary = ", ".join(f"{n} {s}" for s, n in states.most_common())
    out = [f"taskleak: {_plural(len(tasks), 'task')}" + (f" ({summary})" if summary else "")
           + f" in {_plural(len(groups), 'group')}"]
    for g in groups:
        out.append("")
        out += _group_block(g, max_frames, max_names)
    if snap.loss_events:
        out.append("")
        out.append(format_loss_events(snap.loss_events, max_frames=max_frames, max_names=max_names))
    return "\n".join(out) + "\n"


_KIND_TITLES = {
    "pending-at-shutdown": "pending when their event loop shut down (asyncio.run cancelled them silently)",
    "destroyed-pending": "destroyed while pending (\"Task was destroyed but it is pending!\")",
    "never-retrieved": "failed with an exception nobody retrieved (\"Task exception was never retrieved\")",
}
_KIND_ORDER = ("pending-at-shutdown", "destroyed-pending", "never-retrieved")


def _event_key(e: "LossEvent") -> Tuple:
    created = None if e.created_at is None else tuple(creation_site(e.created_at))
    return (e.kind, e.coro, created, tuple(e.stack), e.waiting_on.split(" (")[0], (e.exception or "").split(":")[0])


def format_loss_events(events: Sequence["LossEvent"], *, max_frames: int = 6, max_names: int = 5) -> str:
    by_key: Dict[Tuple, List["LossEvent"]] = {}
    for e in events:
        by_key.setdefault(_event_key(e), []).append(e)
    out: List[str] = []
    for kind in _KIND_ORDER:
        groups = sorted((g for k, g in by_key.items() if k[0] == kind), key=len, reverse=True)
        if not groups:
            continue
        total = sum(len(g) for g in groups)
        if out:
            out.append("")
        out.append(f"== {_plural(total, 'task')} {_KIND_TITLES[kind]} ==")
        for g in groups:
            e = g[0]
            head = f"{_plural(len(g), 'task')}, {e.coro}()"
            if e.waiting_on:
                head += f", waiting on {e.waiting_on}"
            if e.exception:
                head += f", raised {e.exception}"
            out.append("")
            out.append(head)
            out.append(_INDENT + _names([x.task_name for x in g], max_names))
            out += _created_lines(e.created_at, max_frames)
            out += _suspended_lines(e.stack, max_frames)
    return "\n".join(out)
