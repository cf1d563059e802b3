"""TaskInfo: what taskleak knows about one task at snapshot time."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ..frame import Frame, site_frame
from ..tracking.setup_sites import with_setup_site
from ..wait_target import ORPHANED, WaitTarget, classify_wait, describe_wait, orphan_reason

__all__ = ["TaskInfo", "STATES"]

STATES = ("pending", "done", "cancelled", "failed")

# What a TaskInfo keeps of its census row (taskleak._core.Census.row()[:8]):
# task, state, serial, parent_serial, created_ns, thread, creation_id,
# chain_id; then the row's index in the census.
TaskRow = tuple["asyncio.Task[Any]", int, int, int, int | None, int, int, int, int]


class TaskSource(Protocol):
    """What a TaskInfo reads its lazy fields from: the Snapshot that made it.
    Named here so that task_info never imports snapshot (which imports it)."""

    @property
    def taken_ns(self) -> int: ...
    def _creation_frames(self, cid: int) -> list[Frame]: ...
    def _chain_frames(self, cid: int) -> list[Frame]: ...
    def task_by_serial(self, serial: int) -> TaskInfo | None: ...
    def _waiter(self, index: int) -> Any: ...
    def _orphan(self, index: int) -> tuple[int, str | None]: ...


class TaskInfo:
    """One task in a :class:`~taskleak.Snapshot`.

    Fields are computed on first access, so a snapshot of 100,000 tasks costs
    little until something is read. ``task`` is the task object itself.
    """

    __slots__ = ("_snap", "_row", "_cache", "__weakref__")

    def __init__(self, snap: TaskSource, row: TaskRow) -> None:
        self._snap = snap
        self._row = row
        self._cache: dict[str, Any] = {}

    # row layout: task, state, serial, parent_serial, created_ns, thread,
    # creation_id, chain_id, census index. The waiter and leaf objects are read
    # from the census when needed, never kept here: a reference held by
    # taskleak must not make a Future look reachable (see orphaned).

    @property
    def task(self) -> asyncio.Task[Any]:
        return self._row[0]

    @property
    def name(self) -> str:
        try:
            return str(self._row[0].get_name())
        except Exception:
            return "?"

    @property
    def coro(self) -> str:
        """Qualified name of the task's coroutine function."""
        try:
            c = self._row[0].get_coro()
        except Exception:
            return "?"
        return getattr(c, "__qualname__", None) or type(c).__name__

    @property
    def state(self) -> str:
        """ "pending", "done", "cancelled" or "failed" (done with an exception)."""
        return STATES[self._row[1]]

    @property
    def serial(self) -> int | None:
        """taskleak's creation number for tracked tasks, None if untracked."""
        return self._row[2] or None

    @property
    def age_s(self) -> float | None:
        """Seconds since creation at snapshot time; None if created before install()."""
        created = self._row[4]
        return None if created is None else (self._snap.taken_ns - created) / 1e9

    @property
    def thread(self) -> int | None:
        """Ident of the thread that created the task, None if unknown."""
        return self._row[5] or None

    @property
    def created_at(self) -> list[Frame] | None:
        """Creation stack, innermost frame first; None if the creation site is unknown
        (task created before install(), or its stack was dropped at the table's cap)."""
        cid = self._row[6]
        if cid < 0:
            return None
        frames = self._snap._creation_frames(cid)
        # A pending task a loop callback created (a server's connection
        # handler): the line that set the server up, where it is known.
        return with_setup_site(frames, self._row[0]) if self._row[1] == 0 else frames

    @property
    def site(self) -> Frame | None:
        """Where the task was created, as one frame: the innermost frame of
        your code (not asyncio, the standard library, site-packages, taskleak
        or the test runner) among the frames that made it, else the innermost
        of those (a library's: no frame of yours made a task its protocol
        callback made); None if the creation site is unknown."""
        frames = self.created_at
        if not frames:
            return None
        return site_frame(frames)

    @property
    def parent(self) -> str | None:
        """Name of the task that created this one, if it was created inside a task."""
        ps = self._row[3]
        if not ps:
            return None
        other = self._snap.task_by_serial(ps)
        return other.name if other is not None else f"<task #{ps}, no longer alive>"

    @property
    def stack(self) -> list[Frame]:
        """The await chain: outermost coroutine first, innermost suspended frame last."""
        cid = self._row[7]
        return [] if cid < 0 else self._snap._chain_frames(cid)

    def blocked_on(self) -> Any:
        """The Future the innermost await is blocked on (``task._fut_waiter``)
        at snapshot time, or None. A new reference each call: do not keep it,
        or the Future looks reachable to the orphan analysis."""
        return self._snap._waiter(self._row[8])

    @property
    def waiting_on(self) -> str:
        """What the innermost await is blocked on; "" if the task is not pending."""
        if "waiting_on" not in self._cache:
            self._cache["waiting_on"] = (
                describe_wait(self._row[0], self.stack, self.blocked_on()) if self._row[1] == 0 else ""
            )
        return str(self._cache["waiting_on"])

    @property
    def wait(self) -> WaitTarget:
        """The classified wait target (kind, label, third-party frame)."""
        if "wait" not in self._cache:
            self._cache["wait"] = classify_wait(self._row[0], self.stack, self.blocked_on(), pending=self._row[1] == 0)
        wait: WaitTarget = self._cache["wait"]
        return wait

    @property
    def orphaned(self) -> bool:
        """True when the task is provably stuck: it waits on a Future that
        nothing outside its own reference cycle can reach, so nothing can ever
        resolve it (see docs/task-graph.md). Computed for the whole snapshot on
        first access. Never a false alarm: when in doubt, False."""
        return self._snap._orphan(self._row[8])[0] == ORPHANED

    @property
    def orphan_reason(self) -> str:
        """Why the task is or is not orphaned, in one sentence ("" if not pending)."""
        if self._row[1] != 0:
            return ""
        verdict, root = self._snap._orphan(self._row[8])
        return orphan_reason(verdict, root, self.stack)

    def to_dict(self) -> dict[str, Any]:
        created = self.created_at
        return {
            "name": self.name,
            "coro": self.coro,
            "state": self.state,
            "age_s": self.age_s,
            "created_at": None if created is None else [f.to_dict() for f in created],
            "parent": self.parent,
            "stack": [f.to_dict() for f in self.stack],
            "waiting_on": self.waiting_on,
            "orphaned": self.orphaned,
            "thread": self.thread,
        }

    def __repr__(self) -> str:
        return f"<TaskInfo {self.name!r} {self.coro}() {self.state}>"


class DetachedTaskInfo(TaskInfo):
    """A TaskInfo for a task that no longer exists (captured in a loss event):
    same fields, fixed values, ``task`` is None."""

    __slots__ = ()

    def __init__(self, values: dict[str, Any]) -> None:
        self._snap = None  # type: ignore[assignment]
        self._row = ()  # type: ignore[assignment]  # no census row: every field below is overridden
        self._cache = values

    @classmethod
    def from_event(cls, e: Any) -> DetachedTaskInfo:
        state = "failed" if e.kind == "never-retrieved" else "pending"
        return cls(
            {
                "name": e.task_name,
                "coro": e.coro,
                "state": state,
                "age_s": e.age_s,
                "created_at": e.created_at,
                "stack": e.stack,
                "waiting_on": e.waiting_on,
                "serial": e.serial,
                "event": e.kind,
            }
        )

    task = property(lambda self: None)
    name = property(lambda self: self._cache["name"])
    coro = property(lambda self: self._cache["coro"])
    state = property(lambda self: self._cache["state"])
    serial = property(lambda self: self._cache["serial"])
    age_s = property(lambda self: self._cache["age_s"])
    thread = property(lambda self: None)
    created_at = property(lambda self: self._cache["created_at"])
    parent = property(lambda self: None)
    stack = property(lambda self: self._cache["stack"])
    waiting_on = property(lambda self: self._cache["waiting_on"])
    orphaned = property(lambda self: bool(self._cache.get("orphaned", False)))
    orphan_reason = property(lambda self: self._cache.get("orphan_reason", ""))
    wait = property(lambda self: None)

    def blocked_on(self) -> Any:
        return None  # the task is gone, and so is what it waited on
