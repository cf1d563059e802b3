"""What the renderers read from a snapshot, row by row.

``text`` and ``json_form`` render a :class:`~taskleak.Snapshot`, and
``Snapshot.format()`` / ``.to_dict()`` call them: naming the snapshot's
reading surface here, as a Protocol, lets the renderers depend on it instead
of on ``snapshot.py``, so the model's files import each other in one
direction only (snapshot -> text/json_form -> rows -> task_info).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from ..tracking.loss_events import LossEvent
from .task_info import TaskInfo

__all__ = ["SnapshotRows"]


class SnapshotRows(Protocol):
    """A snapshot as its renderers see it: census rows, columns and groups."""

    loss_events: list[LossEvent]

    @property
    def taken_ns(self) -> int: ...
    @property
    def rows(self) -> list[int]: ...
    def column(self, name: str) -> list[int]: ...
    def at(self, row: int) -> TaskInfo: ...
    def name_at(self, row: int) -> str: ...
    def row_groups(self) -> list[list[int]]: ...
    def group_orphaned(self, group: Sequence[int]) -> bool: ...
    def task_by_serial(self, serial: int) -> TaskInfo | None: ...
    def state_counts(self) -> dict[str, int]: ...
    def __iter__(self) -> Iterator[TaskInfo]: ...
    def __len__(self) -> int: ...
