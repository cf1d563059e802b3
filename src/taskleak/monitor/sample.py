"""What the monitor records: one :class:`Sample` per interval, and an
:class:`Alert` when a detector opens an episode."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .detector import Anomaly

__all__ = ["Sample", "GroupStat", "Alert", "AlertGroup", "LOSS_KINDS", "SIGNALS", "stable_label"]

#: What a detector watches: an alert's ``signal`` and the ``signal`` label of
#: the metrics. A group's own detector is "group"; which group is apart.
SIGNALS = ("pending", "done_retained", "rss", "group", "lost", "stale")

# Loss kinds as the monitor names them (tracking calls the first one
# "destroyed-pending").
LOSS_KINDS = ("gc-pending", "never-retrieved", "pending-at-shutdown")


@dataclass(frozen=True)
class GroupStat:
    """Tasks of one creation site x coroutine in a sample."""

    site: str  # innermost user frame of the creation stack, "file:line in function"
    coro: str  # the coroutine's qualified name
    pending: int
    done_retained: int
    oldest_age_s: float | None
    allowlisted: bool = False
    stale: int = 0  # pending tasks far older than the group's usual lifetime (stale_tasks.py)

    @property
    def label(self) -> str:
        """The group's name in alerts and samples: ``"site (coro)"``."""
        return f"{self.site} ({self.coro})"

    @property
    def metric_label(self) -> str:
        """The group's name in metrics: its label without the line number, so
        that a deploy that moves code keeps the series (see :func:`stable_label`)."""
        return stable_label(self.label)


_LINE = re.compile(r":\d+ in ")


def stable_label(label: str) -> str:
    """``"app/jobs.py:42 in start (worker)"`` -> ``"app/jobs.py in start
    (worker)"``: file, function and coroutine, which survive a deploy that
    moves lines; the line stays in the alert's text. Groups of one function
    that differ only by line share a series (their counts add up)."""
    return _LINE.sub(" in ", label, count=1)


@dataclass(frozen=True)
class Sample:
    """One reading of the process. ``time`` is ``time.time()``; counts are of
    tracked tasks (created after :func:`taskleak.install`); ``pending`` and
    ``done_retained`` include allow-listed tasks, which are also counted
    apart. ``loop_lag_s`` is the largest lag over the running loops,
    ``open_fds`` the process's open file descriptors (sockets among them),
    ``peer_closed`` the TCP sockets among them whose peer has closed its
    side while this process keeps them open (``CLOSE_WAIT``: a request
    handler that hung after its client gave up, a pool that does not notice
    closed connections), ``peer_streams`` the streams peers keep open
    over multiplexed connections, known by a task of the server that
    waits for each to close (grpc.aio's RPCs: ``monitor/peer_streams.py``),
    ``loop_lags`` per loop. ``groups``: the top groups by size, then one
    ``"other"`` group for the rest."""

    time: float
    tasks: int
    pending: int
    done_retained: int
    created_total: int
    losses: dict[str, int]
    rss_bytes: int | None
    loop_lag_s: float | None
    groups: list[GroupStat]
    allowlisted_pending: int = 0
    allowlisted_done_retained: int = 0
    loop_lags: dict[str, float] = field(default_factory=dict)
    gil_s: float = 0.0  # GIL held by the task count (summed over its chunks)
    stale: int = 0  # stale tasks of the groups not allow-listed (GroupStat.stale)
    open_fds: int | None = None  # file descriptors open in the process (None: not on this platform)
    peer_closed: int | None = None  # TCP sockets among them in CLOSE_WAIT (None: not on this platform)
    peer_streams: int = 0  # streams peers keep open over multiplexed connections (grpc.aio RPCs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["groups"] = [dict(asdict(g), group=g.label) for g in self.groups]
        return d


@dataclass(frozen=True)
class AlertGroup:
    """A group named in an alert, with one of its tasks as an example."""

    site: str
    coro: str
    pending: int
    done_retained: int
    growth: int  # tasks gained over the detector's window
    chain: list[str] = field(default_factory=list)  # example task's await chain, outermost first
    waiting_on: str | None = None
    orphaned: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Alert:
    """A suspected leak. ``signal`` is one of :data:`SIGNALS`: ``"pending"``,
    ``"done_retained"``, ``"rss"`` or ``"group"`` (one group's own detector,
    named by ``group``, its label; these two only with ``count_rules``),
    ``"stale"`` (one group's pending tasks far beyond its usual lifetime,
    rising: the group in ``group``) or ``"lost"`` (tasks of one creation site
    destroyed while pending or failed unretrieved: monitor/lost_tasks.py);
    ``anomaly`` is the detector's verdict."""

    time: float
    signal: str
    anomaly: Anomaly
    text: str
    groups: list[AlertGroup] = field(default_factory=list)
    group: str | None = None

    @property
    def detector(self) -> str:
        return self.anomaly.kind

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "signal": self.signal,
            "group": self.group,
            "anomaly": self.anomaly.to_dict(),
            "text": self.text,
            "groups": [g.to_dict() for g in self.groups],
        }

    def __str__(self) -> str:
        return self.text
