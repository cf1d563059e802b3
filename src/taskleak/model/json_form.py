"""JSON-able forms of snapshots and loss events (schema: docs/json-schema.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .rows import SnapshotRows

if TYPE_CHECKING:
    from ..tracking.loss_events import LossEvent

__all__ = ["snapshot_to_dict", "groups_to_list", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


def groups_to_list(snap: SnapshotRows) -> list[dict[str, Any]]:
    groups = []
    for g in snap.row_groups():
        first = snap.at(g[0])
        pending = first.state == "pending"
        groups.append(
            {
                "count": len(g),
                "state": first.state,
                "coro": first.coro,
                "waiting_on": first.waiting_on,
                "wait_kind": first.wait.kind if pending else None,
                "orphaned": pending and snap.group_orphaned(g),
                "created_at": None if first.created_at is None else [f.to_dict() for f in first.created_at],
                "stack": [f.to_dict() for f in first.stack],
                "tasks": [snap.at(i).name for i in g],
            }
        )
    return groups


def snapshot_to_dict(snap: SnapshotRows) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "tasks": [t.to_dict() for t in snap],
        "groups": groups_to_list(snap),
        "loss_events": events_to_list(snap.loss_events),
    }


def events_to_list(events: Sequence[LossEvent]) -> list[dict[str, Any]]:
    return [e.to_dict() for e in events]
