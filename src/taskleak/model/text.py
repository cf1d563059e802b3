"""Plain-text reports, grouped like Go's goroutine dumps: one block per
(creation site, suspension point, wait target), largest first."""

from __future__ import annotations

import heapq
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..frame import Frame, creation_site
from .rows import SnapshotRows

if TYPE_CHECKING:
    from ..tracking.loss_events import LossEvent

__all__ = ["format_snapshot", "format_loss_events", "format_frames"]

_INDENT = "    "


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_frames(frames: Sequence[Frame] | None, max_frames: int, *, unknown: str) -> list[str]:
    if frames is None:
        return [_INDENT + unknown]
    if not frames:
        return [_INDENT + "(no frames)"]
    lines = [_INDENT + f.short() for f in frames[:max_frames]]
    if len(frames) > max_frames:
        lines.append(_INDENT + f"... {len(frames) - max_frames} more frames")
    return lines


def created_lines(created: list[Frame] | None, max_frames: int) -> list[str]:
    site = None if created is None else creation_site(created)
    return ["  created at:"] + format_frames(
        site, max_frames, unknown="(creation site unknown: created before taskleak.install())"
    )


def suspended_lines(chain: Sequence[Frame], max_frames: int) -> list[str]:
    if not chain:
        return []
    # Innermost first, like the creation stack.
    return ["  suspended at:"] + format_frames(list(reversed(chain)), max_frames, unknown="")


def _names(names: Sequence[str], max_names: int) -> str:
    shown = ", ".join(names[:max_names])
    if len(names) > max_names:
        shown += f", ... ({len(names) - max_names} more)"
    return shown


def waiting_phrase(waiting_on: str) -> str:
    """ "waiting on X", or the state itself when the task waits on nothing
    ("running", "ready to run (scheduled)")."""
    if waiting_on.startswith(("running", "ready to run")):
        return waiting_on
    return f"waiting on {waiting_on}"


_DIGITS = re.compile(r"(\d+)")


def _natural_key(name: str) -> tuple[Any, ...]:
    """ "worker-2" before "worker-10"."""
    # Runs once per task of a group of up to 5,000: the compiled pattern, and
    # a list display rather than a generator.
    return tuple([int(p) if p.isdigit() else p for p in _DIGITS.split(name)])


#: Up to this many tasks in a group, the names shown are the first in
#: natural name order; beyond it, the oldest tasks' (sorting costs a name and a key per task).
_SORT_NAMES_UP_TO = 5000


def _group_block(snap: SnapshotRows, group: Sequence[int], max_frames: int, max_names: int) -> list[str]:
    # Aggregates come from the census natively (group_summary): a group can
    # hold 100,000 tasks, and only a handful of them are ever turned into TaskInfo.
    first = snap.at(group[0])
    head = f"{plural(len(group), 'task')}, {first.state}, {first.coro}()"
    if first.state == "pending":
        head += f", {waiting_phrase(first.waiting_on)}"
    summary = snap.group_summary(group, max_names, 3)
    if len(group) <= _SORT_NAMES_UP_TO:
        names = heapq.nsmallest(max_names, map(snap.name_at, group), key=_natural_key)
    else:
        # The oldest tracked tasks (lowest serials), then untracked ones
        # (serial 0) in row order if too few are tracked.
        rows = [row for _, row in summary.oldest]
        rows += summary.untracked[: max_names - len(rows)]
        names = sorted(map(snap.name_at, rows), key=_natural_key)
    if len(group) > max_names:
        names.append(f"... ({len(group) - max_names} more)")
    lines = [head, _INDENT + ", ".join(names)]
    if summary.births:
        oldest, newest = (snap.taken_ns - summary.min_created) / 1e9, (snap.taken_ns - summary.max_created) / 1e9
        # A range only when the ages differ at the precision shown.
        spread = summary.births > 1 and oldest - newest >= 0.1 and f"{oldest:.1f}" != f"{newest:.1f}"
        lines.append(f"  age: {newest:.1f}s" + (f" to {oldest:.1f}s" if spread else ""))
    if summary.parents:
        who = []
        for p, _ in summary.parents:
            name = snap.name_of_serial(p)
            who.append(name if name is not None else f"<task #{p}, no longer alive>")
        lines.append("  created by: " + ", ".join(who) + (", ..." if summary.distinct_parents > 3 else ""))
    if first.state == "pending" and snap.group_orphaned(group):
        lines.append("  orphaned: " + first.orphan_reason)
    lines += created_lines(first.created_at, max_frames)
    lines += suspended_lines(first.stack, max_frames)
    return lines


def format_snapshot(snap: SnapshotRows, *, max_frames: int = 6, max_names: int = 5) -> str:
    groups = snap.report_groups()
    summary = ", ".join(f"{n} {s}" for s, n in snap.state_summary())
    out = [
        f"taskleak: {plural(len(snap), 'task')}"
        + (f" ({summary})" if summary else "")
        + f" in {plural(len(groups), 'group')}"
    ]
    for g in groups:
        out.append("")
        out += _group_block(snap, g, max_frames, max_names)
    if snap.loss_events:
        out.append("")
        out.append(format_loss_events(snap.loss_events, max_frames=max_frames, max_names=max_names))
    return "\n".join(out) + "\n"


_KIND_TITLES = {
    "pending-at-shutdown": "pending when their event loop shut down (asyncio.run cancelled them silently)",
    "destroyed-pending": 'destroyed while pending ("Task was destroyed but it is pending!")',
    "never-retrieved": 'failed with an exception nobody retrieved ("Task exception was never retrieved")',
}
_KIND_ORDER = ("pending-at-shutdown", "destroyed-pending", "never-retrieved")


def _event_key(e: LossEvent) -> tuple[Any, ...]:
    created = None if e.created_at is None else tuple(creation_site(e.created_at))
    return (e.kind, e.coro, created, tuple(e.stack), e.waiting_on.split(" (")[0], (e.exception or "").split(":")[0])


def format_loss_events(events: Sequence[LossEvent], *, max_frames: int = 6, max_names: int = 5) -> str:
    by_key: dict[tuple[Any, ...], list[LossEvent]] = {}
    for e in events:
        by_key.setdefault(_event_key(e), []).append(e)
    out: list[str] = []
    for kind in _KIND_ORDER:
        groups = sorted((g for k, g in by_key.items() if k[0] == kind), key=len, reverse=True)
        if not groups:
            continue
        total = sum(len(g) for g in groups)
        if out:
            out.append("")
        out.append(f"== {plural(total, 'task')} {_KIND_TITLES[kind]} ==")
        for g in groups:
            e = g[0]
            head = f"{plural(len(g), 'task')}, {e.coro}()"
            if e.waiting_on:
                head += f", {waiting_phrase(e.waiting_on)}"
            if e.exception:
                head += f", raised {e.exception}"
            out.append("")
            out.append(head)
            out.append(_INDENT + _names(sorted((x.task_name for x in g), key=_natural_key), max_names))
            out += created_lines(e.created_at, max_frames)
            out += suspended_lines(e.stack, max_frames)
    return "\n".join(out)
