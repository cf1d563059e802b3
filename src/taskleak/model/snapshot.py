"""Snapshot: every live task of every loop, at one moment."""

from __future__ import annotations

import asyncio
import weakref
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import taskleak._core as _core

from ..frame import Frame, frames_from_raw
from ..tracking import live_census
from ..tracking.loss_events import LossEvent, loss_events
from ..wait_target import ORPHANED
from .json_form import snapshot_to_dict
from .rows import GroupSummary
from .task_info import STATES, TaskInfo
from .text import format_snapshot

__all__ = ["Snapshot", "snapshot"]


_LIVE: weakref.WeakSet[_Shared] = weakref.WeakSet()


class _Shared:
    """What the snapshots derived from one census share: the native census,
    its rows and rendered-frame caches."""

    def __init__(self, census: _core.Census, taken_ns: int, orphans_in_groups: bool = True) -> None:
        self.census = census
        self.orphans_in_groups = orphans_in_groups
        self.size: int = len(census)
        self.taken_ns = taken_ns
        self.columns: dict[str, list[int]] = {}
        self.creation_cache: dict[int, list[Frame]] = {}
        self.chain_cache: dict[int, list[Frame]] = {}
        # Weak: a TaskInfo references its Snapshot, which references this
        # object; a strong cache would close a reference cycle through every
        # task the snapshot saw, and a finished task would then outlive the
        # listing until a full collection (the monitor counting it as "done,
        # still referenced" because someone opened the dashboard).
        self.infos: weakref.WeakValueDictionary[int, TaskInfo] = weakref.WeakValueDictionary()
        self.by_serial: dict[int, int] | None = None
        # Merged groups of the whole census (a large one packed, see
        # _merged_groups), and the same as lists of ints (row_groups()).
        self.groups: list[Sequence[int]] | None = None
        self.group_lists: list[list[int]] | None = None
        self.orphans: tuple[list[int], list[str | None]] | None = None  # (verdicts, root type names) per row
        _LIVE.add(self)

    def state_column_pending(self, group: Sequence[int]) -> bool:
        # One row, not the whole 100,000-int column.
        return bool(self.census.state_counts(group[:1])[0][0])

    def column(self, name: str) -> list[int]:
        col = self.columns.get(name)
        if col is None:
            col = self.columns[name] = self.census.column(name)
        return col


class Snapshot:
    """Tasks alive at one moment, with their creation sites and await chains.

    Holds strong references to the tasks until it is dropped. Filters
    (:meth:`pending`, :meth:`since`) return new snapshots over the same data.

    Renderers read it by *row*: the position of a task in the native census
    the snapshot shares with its filtered copies (:attr:`rows`,
    :meth:`column`, :meth:`at`, :meth:`row_groups`). Aggregates over 100,000
    tasks come from the columns; only the tasks shown become TaskInfo.
    """

    def __init__(
        self, shared: _Shared, indices: Sequence[int] | None = None, events: list[LossEvent] | None = None
    ) -> None:
        self._s = shared
        # Every row in order (the unfiltered snapshot): native calls then
        # take None instead of converting 100,000 ints, and the list of rows
        # itself is made on first use (~1.5 ms of int objects for 100,000
        # tasks, which neither snapshot() nor format() needs).
        self._all = indices is None
        self._rows: list[int] | None = None if indices is None else list(indices)
        self.loss_events: list[LossEvent] = events if events is not None else []

    @classmethod
    def of_tasks(cls, tasks: Iterable[asyncio.Task[Any]], *, chain_depth: int = 64, orphans: bool = True) -> Snapshot:
        """A snapshot of exactly these tasks, taken now (no loss events).
        ``orphans``: whether reports separate orphaned tasks (see :func:`snapshot`)."""
        census = _core.census(list(tasks), chain_depth)
        return cls(_Shared(census, _core.monotonic_ns(), orphans))

    @property
    def _idx(self) -> list[int]:
        if self._rows is None:
            self._rows = list(range(self._s.size))
        return self._rows

    # -- the tasks -------------------------------------------------------------
    @property
    def taken_ns(self) -> int:
        return self._s.taken_ns

    @property
    def rows(self) -> list[int]:
        """The census rows of this snapshot's tasks (a filtered snapshot
        shares its parent's census and keeps some of its rows). A copy:
        native aggregates over an unfiltered snapshot trust its rows to be
        every row in order, so they cannot be changed from outside."""
        return list(self._idx)

    def column(self, name: str) -> list[int]:
        """One field of every census row, as ints: "state" (an index into
        STATES), "serial", "parent" (the creator's serial, 0 if none),
        "created" (ns, -1 if unknown), "identity"."""
        return self._s.column(name)

    def at(self, row: int) -> TaskInfo:
        """The TaskInfo of one census row."""
        return self._info(row)

    def name_at(self, row: int) -> str:
        """The name of one census row's task, without making its TaskInfo
        (a report sorting the names of 5,000 tasks shows five of them)."""
        info = self._s.infos.get(row)
        if info is not None:
            return info.name
        try:
            return str(self._s.census.row(row)[0].get_name())
        except Exception:
            return "?"

    def state_counts(self) -> dict[str, int]:
        """How many of this snapshot's tasks are in each state, every state
        listed (0 when none)."""
        counts = self._s.census.state_counts(None if self._all else self._idx)
        return {name: counts[k][0] for k, name in enumerate(STATES)}

    def state_summary(self) -> list[tuple[str, int]]:
        """(state, count) of the states present, most common first; states
        tied on count in the order their first task appears in :attr:`rows`
        (as ``collections.Counter.most_common`` orders them)."""
        counts = self._s.census.state_counts(None if self._all else self._idx)
        present = [(n, first, STATES[k]) for k, (n, first) in enumerate(counts) if n]
        present.sort(key=lambda c: (-c[0], c[1]))
        return [(name, n) for n, _, name in present]

    def group_summary(self, group: Sequence[int], k: int, top: int) -> GroupSummary:
        """Aggregates of the census rows `group`, computed natively (a group
        can hold 100,000 rows and a report shows a handful): how many have a
        known creation time and its min/max, the `k` lowest creation serials
        with their rows, the first `k` untracked rows, and the `top` most
        common parent serials (see :class:`GroupSummary`)."""
        return GroupSummary(*self._s.census.summarize(group, k, top))

    def name_of_serial(self, serial: int) -> str | None:
        """The name of the task of this census with creation number `serial`,
        None if it is not in the census."""
        by_serial = self._s.by_serial
        i = by_serial.get(serial) if by_serial is not None else self._s.census.row_of_serial(serial)
        return None if i is None or i < 0 else self.name_at(i)

    def _info(self, i: int) -> TaskInfo:
        info = self._s.infos.get(i)
        if info is None:
            # The waiter and leaf (row[8:]) stay in the census: see TaskInfo.
            info = TaskInfo(self, self._s.census.row(i)[:8] + (i,))
            self._s.infos[i] = info
        return info

    def _waiter(self, i: int) -> Any:
        return _core.census_objects(self._s.census, i)[0]

    def _orphan(self, i: int) -> tuple[int, str | None]:
        """(verdict, type name of the external holder | None) of row `i`; the
        analysis runs once, over every task of the census."""
        if self._s.orphans is None:
            # Rows of every live snapshot hold tasks: taskleak's references, discounted.
            rows = [info._row for shared in list(_LIVE) for info in list(shared.infos.values())]
            verdicts, roots, _ = _core.orphan_analysis(self._s.census, rows)
            del rows
            self._s.orphans = (verdicts, roots)
        return self._s.orphans[0][i], self._s.orphans[1][i]

    @property
    def tasks(self) -> list[TaskInfo]:
        return [self._info(i) for i in self._idx]

    def __iter__(self) -> Iterator[TaskInfo]:
        return (self._info(i) for i in self._idx)

    def __len__(self) -> int:
        return self._s.size if self._rows is None else len(self._rows)

    def __bool__(self) -> bool:
        return len(self) > 0

    # -- filters ---------------------------------------------------------------
    def pending(self) -> Snapshot:
        """Only the tasks that are not done."""
        state = self._s.column("state")
        return Snapshot(self._s, [i for i in self._idx if state[i] == 0], self.loss_events)

    def since(self, earlier: Snapshot) -> Snapshot:
        """Only the tasks that were not alive in `earlier` (compared by identity),
        and the loss events recorded after it."""
        # Identity is safe to compare: `earlier` keeps its tasks alive.
        theirs = earlier._s.column("identity")
        before = {theirs[i] for i in earlier._idx}
        mine = self._s.column("identity")
        keep = [i for i in self._idx if mine[i] not in before]
        events = [e for e in self.loss_events if e.time * 1e9 > earlier.taken_ns]
        return Snapshot(self._s, keep, events)

    def subset(self, rows: Sequence[int]) -> Snapshot:
        """Only the tasks of these census rows (from :attr:`rows` or
        :meth:`row_groups`), with the same loss events."""
        return Snapshot(self._s, rows, self.loss_events)

    def filter(self, predicate: Any) -> Snapshot:
        """Only the tasks for which ``predicate(task_info)`` is true."""
        return Snapshot(self._s, [i for i in self._idx if predicate(self._info(i))], self.loss_events)

    # -- grouping (done in C++ over the whole census) ----------------------------
    def groups(self) -> list[list[TaskInfo]]:
        """Tasks grouped by creation site, suspension chain, state and wait
        target type; largest group first."""
        return [[self._info(i) for i in g] for g in self.row_groups()]

    def row_groups(self) -> list[list[int]]:
        """:meth:`groups` as lists of census rows."""
        groups = self._whole_groups()
        if len(self) == self._s.size:
            if self._s.group_lists is None:
                self._s.group_lists = [g if isinstance(g, list) else list(g) for g in groups]
            return self._s.group_lists
        mine = set(self._idx)
        out = [m for m in ([i for i in g if i in mine] for g in groups) if m]
        out.sort(key=len, reverse=True)
        return out

    def report_groups(self) -> Sequence[Sequence[int]]:
        """:meth:`row_groups` as a report reads them: each group a read-only
        sequence of rows. A large group of a whole census is a compact
        array of the rows (no int object per row: a report reads a handful
        of them), a smaller one a list."""
        if len(self) == self._s.size:
            return self._whole_groups()
        return self.row_groups()

    def _whole_groups(self) -> list[Sequence[int]]:
        if self._s.groups is None:
            self._s.groups = self._merged_groups()
        return self._s.groups

    def _merged_groups(self) -> list[Sequence[int]]:
        # The core groups by interned (code, offset) stacks; a reader sees
        # file:line. Two calls on one line, or a frame saved at an inline cache
        # entry rather than its call, differ in offset but not in what the
        # report shows: merge groups whose rendered frames are identical.
        merged: dict[tuple[Any, ...], Sequence[int]] = {}
        census = self._s.census
        for packed_or_list in census.groups(None, _PACKED_FROM):
            g: Sequence[int] = (
                memoryview(packed_or_list).cast("I") if isinstance(packed_or_list, bytes) else packed_or_list
            )
            r = census.row(g[0])
            created = None if r[6] < 0 else tuple(self._creation_frames(r[6]))
            chain = () if r[7] < 0 else tuple(self._chain_frames(r[7]))
            key = (created, chain, r[1], type(r[8]))
            del r
            # The core's list itself when the key is new (no copy of a
            # 50,000-row group): groups() makes fresh lists on every call.
            same = merged.get(key)
            merged[key] = g if same is None else _joined(same, g)
        # Orphaned tasks never share a group with merely waiting ones.
        out: list[Sequence[int]] = []
        split = self._s.orphans_in_groups or self._s.orphans is not None
        for g in merged.values():
            if split and self._s.state_column_pending(g):
                orphaned = [i for i in g if self._orphan(i)[0] == ORPHANED]
                if orphaned and len(orphaned) < len(g):
                    keep = set(orphaned)
                    out.append(orphaned)
                    out.append([i for i in g if i not in keep])
                    continue
            out.append(g)
        return sorted(out, key=len, reverse=True)

    def group_orphaned(self, group: Sequence[int]) -> bool:
        """Whether a group of :meth:`row_groups` is one of orphaned tasks
        (always False when the snapshot was taken without the orphan analysis)."""
        if not (self._s.orphans_in_groups or self._s.orphans is not None):
            return False
        return bool(group) and self._orphan(group[0])[0] == ORPHANED

    # -- rendering -------------------------------------------------------------
    def format(self, *, max_frames: int = 6, max_names: int = 5) -> str:
        """A grouped, human-readable report (largest group first)."""
        return format_snapshot(self, max_frames=max_frames, max_names=max_names)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (see docs/json-schema.md)."""
        return snapshot_to_dict(self)

    def __repr__(self) -> str:
        return f"<Snapshot of {len(self)} tasks>"

    # -- internal: rendered frames, cached per interned stack ---------------------
    def _creation_frames(self, cid: int) -> list[Frame]:
        c = self._s.creation_cache.get(cid)
        if c is None:
            c = self._s.creation_cache[cid] = frames_from_raw(self._s.census.creation_frames(cid)) or []
        return c

    def _chain_frames(self, cid: int) -> list[Frame]:
        c = self._s.chain_cache.get(cid)
        if c is None:
            c = self._s.chain_cache[cid] = frames_from_raw(self._s.census.chain_frames(cid)) or []
        return c

    def task_by_serial(self, serial: int) -> TaskInfo | None:
        """The task of this census with taskleak's creation number `serial`."""
        if self._s.by_serial is None:
            # Built in C (dict over zip); serial 0 (untracked) is no key.
            by_serial = dict(zip(self._s.column("serial"), range(self._s.size)))
            by_serial.pop(0, None)
            self._s.by_serial = by_serial
        i = self._s.by_serial.get(serial)
        return None if i is None else self._info(i)


# Groups of at least this many rows come from the core packed (native uint32
# read through a memoryview): 100,000 rows in a few groups cost no int objects.
_PACKED_FROM = 64


def _joined(a: Sequence[int], b: Sequence[int]) -> Sequence[int]:
    """Two groups' rows, a's then b's (a list stays a list while both are)."""
    if isinstance(a, list) and isinstance(b, list):
        a.extend(b)
        return a
    return memoryview(_as_bytes(a) + _as_bytes(b)).cast("I")


def _as_bytes(g: Sequence[int]) -> bytes:
    return g.tobytes() if isinstance(g, memoryview) else array("I", g).tobytes()


# Orphan analysis walks everything the pending tasks reference (~2 us a task):
# reports include it by default up to this many tasks, and on request above.
ORPHAN_ANALYSIS_AUTO_LIMIT = 20_000


def snapshot(*, chain_depth: int = 64, orphans: bool | None = None) -> Snapshot:
    """Every live task of every loop in the process (tracked or not), plus the
    loss events recorded so far.

    ``orphans``: whether reports (format, groups, to_dict) separate orphaned
    tasks, which costs a walk over what the pending tasks reference. The
    default does so for snapshots of up to 20,000 tasks; ``TaskInfo.orphaned``
    is always available (computed on first access)."""
    taken = _core.monotonic_ns()
    census = live_census(chain_depth)
    if orphans is None:
        orphans = len(census) <= ORPHAN_ANALYSIS_AUTO_LIMIT
    return Snapshot(_Shared(census, taken, orphans), None, loss_events())
