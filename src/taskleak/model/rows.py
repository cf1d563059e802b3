"""What the renderers read from a snapshot, row by row.

``text`` and ``json_form`` render a :class:`~taskleak.Snapshot`, and
``Snapshot.format()`` / ``.to_dict()`` call them: naming the snapshot's
reading surface here, as a Protocol, lets the renderers depend on it instead
of on ``snapshot.py``, so the model's files import each other in one
direction only (snapshot -> text/json_form -> rows -> task_info).
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Protocol, Sequence

from ..tracking.loss_events import LossEvent
from .task_info import TaskInfo

__all__ = ["SnapshotRows"]


class SnapshotRows(Protocol):
    """A snapshot as its renderers see it: census rows, columns and groups."""

    loss_events: List[LossEvent]

    @property
    def taken_ns(self) -> int: ...
    @property
    def rows(self) -> List[int]: ...
    def column(self, name: str) -> List[int]: ...
    def at(self, row: int) -> TaskInfo: ...
    def row_groups(self) -> List[List[int]]: ...
    def group_orphaned(self, group: Sequence[int]) -> bool: ...
    def task_by_serial(self, serial: int) -> Optional[TaskInfo]: ...
    def state_counts(self) -> Dict[str, int]: ...
    def __iter__(self) -> Iterator[TaskInfo]: ...
    def __len__(self) -> int: ...
