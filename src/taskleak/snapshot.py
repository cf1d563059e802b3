"""Snapshot: every live task of every loop, at one moment."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence

from . import _core
from .frame import Frame, frames_from_raw
from .loss_recorder import LossEvent, loss_events
from .task_info import TaskInfo
from .tracking import live_tasks

__all__ = ["Snapshot", "snapshot"]


class _Shared:
    """What the snapshots derived from one census share: the native census,
    its rows and rendered-frame caches."""

    def __init__(self, census: Any, taken_ns: int) -> None:
        self.census = census
        self.size: int = len(census)
        self.taken_ns = taken_ns
        self.columns: Dict[str, List[int]] = {}
        self.creation_cache: Dict[int, List[Frame]] = {}
        self.chain_cache: Dict[int, List[Frame]] = {}
        self.infos: Dict[int, TaskInfo] = {}
        self.by_serial: Optional[Dict[int, int]] = None
        self.groups: Optional[List[List[int]]] = None

    def column(self, name: str) -> List[int]:
        col = self.columns.get(name)
        if col is None:
            col = self.columns[name] = self.census.column(name)
        return col


class Snapshot:
    """Tasks alive at one moment, with their creation sites and await chains.

    Holds strong references to the tasks until it is dropped. Filters
    (:meth:`pending`, :meth:`since`) return new snapshots over the same data.
    """

    def __init__(self, shared: _Shared, indices: Optional[Sequence[int]] = None,
                 events: Optional[List[LossEvent]] = None) -> None:
        self._s = shared
        self._idx = list(range(shared.size)) if indices is None else list(indices)
        self.loss_events: List[LossEvent] = events if events is not None else []

    # -- the tasks -------------------------------------------------------------
    @property
    def taken_ns(self) -> int:
        return self._s.taken_ns

    def _info(self, i: int) -> TaskInfo:
        info = self._s.infos.get(i)
        if info is None:
            info = self._s.infos[i] = TaskInfo(self, self._s.census.row(i))
        return info

    @property
    def tasks(self) -> List[TaskInfo]:
        return [self._info(i) for i in self._idx]

    def __iter__(self) -> Iterator[TaskInfo]:
        return (self._info(i) for i in self._idx)

    def __len__(self) -> int:
        return len(self._idx)

    def __bool__(self) -> bool:
        return bool(self._idx)

    # -- filters ---------------------------------------------------------------
    def pending(self) -> "Snapshot":
        """Only the tasks that are not done."""
        state = self._s.column("state")
        return Snapshot(self._s, [i for i in self._idx if state[i] == 0], self.loss_events)

    def since(self, earlier: "Snapshot") -> "Snapshot":
        """Only the tasks that were not alive in `earlier` (compared by identity),
        and the loss events recorded after it."""
        # Identity is safe to compare: `earlier` keeps its tasks alive.
        theirs = earlier._s.column("identity")
        before = {theirs[i] for i in earlier._idx}
        mine = self._s.column("identity")
        keep = [i for i in self._idx if mine[i] not in before]
        events = [e for e in self.loss_events if e.time * 1e9 > earlier.taken_ns]
        return Snapshot(self._s, keep, events)

    def filter(self, predicate: Any) -> "Snapshot":
        """Only the tasks for which ``predicate(task_info)`` is true."""
        return Snapshot(self._s, [i for i in self._idx if predicate(self._info(i))], self.loss_events)

    # -- grouping (done in C++ over the whole census) ----------------------------
    def groups(self) -> List[List[TaskInfo]]:
        """Tasks grouped by creation site, suspension chain, state and wait
        target type; largest group first."""
        return [[self._info(i) for i in g] for g in self._index_groups()]

    def _index_groups(self) -> List[List[int]]:
        if self._s.groups is None:
            self._s.groups = self._merged_groups()
        if len(self._idx) == self._s.size:
            return self._s.groups
        mine = set(self._idx)
        out = [m for m in ([i for i in g if i in mine] for g in self._s.groups) if m]
        out.sort(key=len, reverse=True)
        return out

    def _merged_groups(self) -> List[List[int]]:
        # The core groups by interned (code, offset) stacks; a reader sees
        # file:line. Two calls on one line, or a frame saved at an inline cache
        # entry rather than its call, differ in offset but not in what the
        # report shows: merge groups whose rendered frames are identical.
        merged: Dict[tuple, List[int]] = {}
        census = self._s.census
        for g in census.groups():
            r = census.row(g[0])
            created = None if r[6] < 0 else tuple(self._creation_frames(r[6]))
            chain = () if r[7] < 0 else tuple(self._chain_frames(r[7]))
            key = (created, chain, r[1], type(r[8]))
            merged.setdefault(key, []).extend(g)
        return sorted(merged.values(), key=len, reverse=True)

    # -- rendering -------------------------------------------------------------
    def format(self, *, max_frames: int = 6, max_names: int = 5) -> str:
        """A grouped, human-readable report (largest group first)."""
        from .report_text import format_snapshot

        return format_snapshot(self, max_frames=max_frames, max_names=max_names)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-able form (see docs/json-schema.md)."""
        from .report_json import snapshot_to_dict

        return snapshot_to_dict(self)

    def __repr__(self) -> str:
        return f"<Snapshot of {len(self)} tasks>"

    # -- internal: rendered frames, cached per interned stack ---------------------
    def _creation_frames(self, cid: int) -> List[Frame]:
        c = self._s.creation_cache.get(cid)
        if c is None:
            c = self._s.creation_cache[cid] = frames_from_raw(self._s.census.creation_frames(cid)) or []
        return c

    def _chain_frames(self, cid: int) -> List[Frame]:
        c = self._s.chain_cache.get(cid)
        if c is None:
            c = self._s.chain_cache[cid] = frames_from_raw(self._s.census.chain_frames(cid)) or []
        return c

    def _task_by_serial(self, serial: int) -> Optional[TaskInfo]:
        if self._s.by_serial is None:
            self._s.by_serial = {s: i for i, s in enumerate(self._s.column("serial")) if s}
        i = self._s.by_serial.get(serial)
        return None if i is None else self._info(i)


def snapshot(*, chain_depth: int = 64) -> Snapshot:
    """Every live task of every loop in the process (tracked or not), plus the
    loss events recorded so far."""
    tasks = live_tasks()
    taken = _core.monotonic_ns()
    census = _core.census(tasks, chain_depth)
    return Snapshot(_Shared(census, taken), None, loss_events())
