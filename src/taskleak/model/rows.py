"""What the renderers read from a snapshot, row by row.

``text`` and ``json_form`` render a :class:`~taskleak.Snapshot`, and
``Snapshot.format()`` / ``.to_dict()`` call them: naming the snapshot's
reading surface here, as a Protocol, lets the renderers depend on it instead
of on ``snapshot.py``, so the model's files import each other in one
direction only (snapshot -> text/json_form -> rows -> task_info).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple, Protocol

from ..tracking.loss_events import LossEvent
from .task_info import TaskInfo

__all__ = ["GroupSummary", "SnapshotRows"]


class GroupSummary(NamedTuple):
    """Aggregates of one group of census rows (``Snapshot.group_summary``)."""

    births: int  # rows whose creation time is known
    min_created: int  # ns, over those rows (0 when births == 0)
    max_created: int
    oldest: list[tuple[int, int]]  # (serial, row) of the k lowest non-zero serials, ascending
    untracked: list[int]  # the first k rows of serial 0, in group order
    parents: list[tuple[int, int]]  # (parent serial, count), most common first, ties by first appearance
    distinct_parents: int  # how many non-zero parent serials


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
    def report_groups(self) -> Sequence[Sequence[int]]: ...
    def group_orphaned(self, group: Sequence[int]) -> bool: ...
    def task_by_serial(self, serial: int) -> TaskInfo | None: ...
    def state_counts(self) -> dict[str, int]: ...
    def state_summary(self) -> list[tuple[str, int]]: ...
    def group_summary(self, group: Sequence[int], k: int, top: int) -> GroupSummary: ...
    def name_of_serial(self, serial: int) -> str | None: ...
    def __iter__(self) -> Iterator[TaskInfo]: ...
    def __len__(self) -> int: ...
