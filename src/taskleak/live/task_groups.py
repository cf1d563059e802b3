"""The grouped task listing the endpoint serves (``/api/tasks``,
``/api/snapshot``, ``/tasks.txt``), capped so that a process with 100,000
tasks answers with a bounded document: groups are rendered largest first up
to a limit, each with a bounded list of task names, and the rest is counted.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from ..frame import creation_site, user_frame
from ..model.json_form import SCHEMA_VERSION, events_to_list
from ..model.snapshot import Snapshot, snapshot
from ..report.dump import format_dump

__all__ = ["take_snapshot", "tasks_payload", "tasks_text", "snapshot_payload"]


def take_snapshot() -> Snapshot:
    return snapshot()


def _frame(f: Any) -> dict[str, Any]:
    d: dict[str, Any] = f.to_dict()
    d["short"] = f.short()  # "file:line in function" with library paths shortened
    return d


def _group(snap: Snapshot, gid: int, g: list[int], max_names: int, max_frames: int) -> dict[str, Any]:
    # Aggregates come from the census natively: a dashboard polls this
    # with the GIL held, and a group can hold 100,000 tasks (Python loops
    # over them took ~45 ms of a poll at 100,000 tasks, 3.11).
    summary = snap.group_summary(g, max_names, 3)
    first = snap.at(g[0])
    pending = first.state == "pending"
    # The oldest tracked tasks (lowest serials), then untracked ones in row order.
    shown = [row for _, row in summary.oldest]
    shown += summary.untracked[: max_names - len(shown)]
    made = first.created_at
    site_frames = None if made is None else creation_site(made)
    site = None
    if made:
        f = user_frame(made) or (site_frames or made)[0]
        site = f.short()
    created_by = []
    for p, _ in summary.parents:
        # By name: task_by_serial() would index all the rows first.
        name = snap.name_of_serial(p)
        created_by.append(name if name is not None else f"<task #{p}, no longer alive>")
    orphaned = pending and snap.group_orphaned(g)
    return {
        "id": gid,
        "count": len(g),
        "state": first.state,
        "coro": first.coro,
        "site": site,
        "created_at": None if site_frames is None else [_frame(f) for f in site_frames[:max_frames]],
        # The await chain, outermost coroutine first (as TaskInfo.stack).
        "chain": [_frame(f) for f in first.stack[-max_frames:]],
        "waiting_on": first.waiting_on if pending else None,
        "wait_kind": first.wait.kind if pending else None,
        "orphaned": bool(orphaned),
        "orphan_reason": first.orphan_reason if orphaned else None,
        "created_by": created_by,
        "oldest_age_s": None if not summary.births else (snap.taken_ns - summary.min_created) / 1e9,
        "newest_age_s": None if not summary.births else (snap.taken_ns - summary.max_created) / 1e9,
        "tasks": [snap.name_at(i) for i in shown],
        "tasks_truncated": len(g) > max_names,
    }


def _header(snap: Snapshot) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "time": time.time(),
        "task_count": len(snap),
        "states": snap.state_counts(),
    }


def tasks_payload(snap: Snapshot, max_groups: int = 200, max_names: int = 20, max_frames: int = 16) -> dict[str, Any]:
    """``/api/tasks``: the largest `max_groups` groups, each with up to
    `max_names` task names; ``other`` counts what was left out."""
    groups = snap.row_groups()
    shown = groups[:max_groups]
    rest = groups[max_groups:]
    out = _header(snap)
    out.update(
        {
            "kind": "tasks",
            "group_count": len(groups),
            "groups": [_group(snap, i, g, max_names, max_frames) for i, g in enumerate(shown)],
            "other": {"groups": len(rest), "tasks": sum(len(g) for g in rest)},
            "loss_events": events_to_list(snap.loss_events[-100:]),
        }
    )
    return out


def snapshot_payload(
    snap: Snapshot, max_groups: int = 1000, max_names: int = 100, max_tasks: int = 1000
) -> dict[str, Any]:
    """``/api/snapshot`` (what ``taskleak snapshot PID`` saves): the grouped
    listing with wider caps, plus one full record per task up to `max_tasks`."""
    out = tasks_payload(snap, max_groups, max_names, 64)
    out["kind"] = "snapshot"
    tasks = []
    for n, t in enumerate(snap):
        if n >= max_tasks:
            break
        tasks.append(t.to_dict())
    out["tasks"] = tasks
    out["tasks_truncated"] = len(snap) > max_tasks
    out["loss_events"] = events_to_list(snap.loss_events)
    return out


def tasks_text(snap: Snapshot, max_groups: int = 200) -> str:
    """``/tasks.txt``: the grouped dump of the largest `max_groups` groups."""
    groups = snap.row_groups()
    if len(groups) <= max_groups:
        return format_dump(snap)
    keep = [i for g in groups[:max_groups] for i in g]
    part = snap.subset(keep)
    rest = groups[max_groups:]
    note = (
        f"(showing the {max_groups} largest of {len(groups)} groups; "
        f"{sum(len(g) for g in rest)} tasks in {len(rest)} smaller groups left out)\n"
    )
    return note + format_dump(part)


def find_task(snap: Snapshot, name: str) -> Any | None:
    """The live task named `name` (or whose id() in hex/decimal is `name`);
    names need not be unique: a pending task wins over a finished one."""
    found = None
    for t in snap:
        if t.name == name:
            if t.state == "pending":
                return t.task
            found = found or t.task
    if found is not None:
        return found
    try:
        ident = int(name, 0)
    except ValueError:
        return None
    for t in snap:
        if id(t.task) == ident:
            return t.task
    return None
