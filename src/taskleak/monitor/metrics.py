"""The monitor's metrics as data: one list of families that every exporter
renders (Prometheus text, prometheus_client, OpenTelemetry). Adding a metric
is one entry in :func:`families`.

Families are computed from data (the latest Sample and the detectors'
counters), not from a Monitor: the exporters reach them through
:class:`FamilySource` (a Monitor is one), so no exporter imports the monitor
that imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..blocking import watchdog
from .sample import SIGNALS, Sample, stable_label

__all__ = ["Family", "FamilySource", "families", "declared_families"]

Labels = dict[str, str]


@dataclass
class Family:
    name: str  # Prometheus name; counters end in _total
    kind: str  # "gauge" | "counter"
    help: str
    otel_name: str  # OpenTelemetry instrument name
    unit: str  # UCUM unit for OpenTelemetry ("{task}", "s", "1")
    samples: list[tuple[Labels, float]] = field(default_factory=list)


class FamilySource(Protocol):
    """Anything that can list its metric families (a :class:`~taskleak.Monitor`)."""

    def metric_families(self, declared: bool = False, live: bool = True) -> list[Family]: ...


#: (signal, detector) -> value, as Monitor.suspected() and .alert_counts() give them.
DetectorCounts = Mapping[tuple[str, str], float]


def _flag(b: bool) -> str:
    return "true" if b else "false"


def families(
    s: Sample | None,
    open_episodes: DetectorCounts,
    alert_counts: DetectorCounts,
    sites: Mapping[tuple[str, str], str] | None = None,
    live: bool = True,
) -> list[Family]:
    """The families of one sample (None before the first), the detectors'
    open episodes (Monitor.suspected()), alert counts (Monitor.alert_counts())
    and the creation site each open episode's alert named (Monitor.suspected_sites()).
    ``live``: with the watched loops' live gauges, read now (not from the
    sample); the debug endpoint renders them natively itself."""
    sites = sites or {}
    out: list[Family] = []
    tasks = Family(
        "taskleak_asyncio_tasks",
        "gauge",
        "Live asyncio tasks created since taskleak tracking started, by state.",
        "taskleak.task.count",
        "{task}",
    )
    created = Family(
        "taskleak_asyncio_tasks_created_total",
        "counter",
        "asyncio tasks created since taskleak tracking started.",
        "taskleak.task.created",
        "{task}",
    )
    losses = Family(
        "taskleak_asyncio_task_losses_total",
        "counter",
        "Tasks lost since the monitor started, by kind (gc-pending, never-retrieved, pending-at-shutdown).",
        "taskleak.task.losses",
        "{task}",
    )
    groups = Family(
        "taskleak_asyncio_group_tasks",
        "gauge",
        "Tasks of the largest groups (creation site x coroutine), by state; the rest as 'other'.",
        "taskleak.task.group.count",
        "{task}",
    )
    stale = Family(
        "taskleak_asyncio_stale_tasks",
        "gauge",
        "Pending tasks of the largest groups older than many times their group's usual lifetime "
        "(a leak makes it rise; load does not).",
        "taskleak.task.stale",
        "{task}",
    )
    peer_closed = Family(
        "taskleak_sockets_peer_closed",
        "gauge",
        "TCP sockets the process keeps open after their peer closed its side (CLOSE_WAIT): a handler "
        "that hung, or a connection nobody closes, leaves them behind.",
        "taskleak.socket.peer_closed",
        "{socket}",
    )
    peer_streams = Family(
        "taskleak_streams_peer_open",
        "gauge",
        "Streams peers keep open over a shared connection (HTTP/2: a grpc.aio RPC's task waits for its "
        "peer to close the stream): connections being kept, as open sockets are.",
        "taskleak.stream.peer_open",
        "{stream}",
    )
    lag = Family(
        "taskleak_event_loop_lag_seconds",
        "gauge",
        "Delay before a probe callback ran on each event loop, at the latest sample.",
        "taskleak.event_loop.lag",
        "s",
    )
    suspected = Family(
        "taskleak_leak_suspected",
        "gauge",
        "1 while a detector's leak episode is open on a signal, else 0.",
        "taskleak.leak.suspected",
        "1",
    )
    alerts = Family(
        "taskleak_alerts_total",
        "counter",
        "Leak alerts raised, by signal (group alerts as 'group') and detector.",
        "taskleak.alerts",
        "{alert}",
    )
    if s is not None:
        ap, ad = s.allowlisted_pending, s.allowlisted_done_retained
        tasks.samples = [
            ({"state": "pending", "allowlisted": "false"}, float(s.pending - ap)),
            ({"state": "pending", "allowlisted": "true"}, float(ap)),
            ({"state": "done_retained", "allowlisted": "false"}, float(s.done_retained - ad)),
            ({"state": "done_retained", "allowlisted": "true"}, float(ad)),
        ]
        created.samples = [({}, float(s.created_total))]
        losses.samples = [({"kind": k}, float(v)) for k, v in sorted(s.losses.items())]
        # Labelled without the line (GroupStat.metric_label): groups of one
        # function that differ only by line add up into one series.
        per_label: dict[tuple[str, str, str], float] = {}
        for g in s.groups:
            for state, v in (("pending", g.pending), ("done_retained", g.done_retained)):
                key = (g.metric_label, state, _flag(g.allowlisted))
                per_label[key] = per_label.get(key, 0.0) + float(v)
        groups.samples = [
            ({"group": lab, "state": state, "allowlisted": al}, v) for (lab, state, al), v in per_label.items()
        ]
        per_stale: dict[tuple[str, str], float] = {}
        for g in s.groups:
            skey = (g.metric_label, _flag(g.allowlisted))
            per_stale[skey] = per_stale.get(skey, 0.0) + float(g.stale)
        stale.samples = [({"group": lab, "allowlisted": al}, v) for (lab, al), v in per_stale.items()]
        lag.samples = [({"loop": name}, v) for name, v in sorted(s.loop_lags.items())]
        if s.peer_closed is not None:
            peer_closed.samples = [({}, float(s.peer_closed))]
        peer_streams.samples = [({}, float(s.peer_streams))]
    suspected.samples = [
        (suspected_labels(sig, det, sites.get((sig, det)) if on else None), 1.0 if on else 0.0)
        for (sig, det), on in sorted(open_episodes.items())
    ]
    for sig in ("pending", "done_retained", "rss", "group"):
        for det in ("spike", "trend"):
            alerts.samples.append(({"signal": sig, "detector": det}, float(alert_counts.get((sig, det), 0))))
    alerts.samples.append(({"signal": "lost", "detector": "count"}, float(alert_counts.get(("lost", "count"), 0))))
    alerts.samples.append(({"signal": "stale", "detector": "rise"}, float(alert_counts.get(("stale", "rise"), 0))))
    out += [tasks, created, losses, groups, stale, peer_closed, peer_streams, lag, suspected, alerts]
    out += _blocked_families(live=live)
    return out


def suspected_labels(signal: str, detector: str, site: str | None = None) -> Labels:
    """Labels of one (signal, detector) of Monitor.suspected(): ``signal``
    stays in its fixed vocabulary (SIGNALS); a group's detector is
    ``signal="group"`` with the group's stable label in ``group``. While an
    episode is open, ``site`` is the creation line its alert named first:
    what Alertmanager needs to say where the leak is (a label that exists
    only during an incident, so it costs no series the rest of the time)."""
    labels = (
        {"signal": signal, "detector": detector}
        if signal in SIGNALS
        else {"signal": "group", "group": stable_label(signal), "detector": detector}
    )
    if site:
        labels["site"] = site
    return labels


def declared_families(
    s: Sample | None,
    open_episodes: DetectorCounts,
    alert_counts: DetectorCounts,
    sites: Mapping[tuple[str, str], str] | None = None,
    live: bool = True,
) -> list[Family]:
    """Every family an exporter may ever report, whether or not it has data
    now: :func:`families` plus the blocked-loop families before the watchdog
    watches (with no samples)."""
    out = families(s, open_episodes, alert_counts, sites, live)
    have = {f.name for f in out}
    return out + [f for f in _blocked_families(declare=True, live=live) if f.name not in have]


def _live_families(read: bool = True) -> list[Family]:
    """Each watched loop, now: blocked or not, and the current block's
    seconds so far. Read from the native watchdog at the moment of the
    scrape (the monitor's sample may be seconds old), so that a loop stuck
    in a call that releases the GIL (time.sleep, a blocking socket read, a
    lock) shows in prometheus_client's and OpenTelemetry's exports as it
    does in the endpoint's /metrics (blocked_now.cpp renders the same
    names, labels and help there, natively)."""
    now = Family(
        "taskleak_event_loop_blocked_now",
        "gauge",
        "1 while the loop is blocked right now (an episode in progress), answered natively while it is stuck.",
        "taskleak.event_loop.blocked_now",
        "1",
    )
    secs = Family(
        "taskleak_event_loop_current_block_seconds",
        "gauge",
        "Seconds the loop has been blocked so far in the episode in progress (0 when it is not blocked).",
        "taskleak.event_loop.current_block.duration",
        "s",
    )
    for label, blocked, seconds in watchdog.loop_gauges() if read else []:
        now.samples.append(({"loop": label}, 1.0 if blocked else 0.0))
        secs.samples.append(({"loop": label}, float(seconds)))
    return [now, secs]


def _blocked_families(declare: bool = False, live: bool = True) -> list[Family]:
    """Blocked-loop counters from the native watchdog (docs/blocking.md), once
    it watches: `watch_blocking()`, `check(blocking=)`, `taskleak run --blocking`.

    Before that there is nothing to report (no loop was looked at, which is
    not the same as "no loop blocked"): no family, or with ``declare`` the
    families without samples, for exporters that must declare their
    instruments up front (OpenTelemetry)."""
    watching = watchdog.is_watching() or watchdog.blocked_totals().blocks > 0
    if not watching and not declare:
        return []
    seconds = Family(
        "taskleak_event_loop_blocked_seconds_total",
        "counter",
        "Time event loops spent blocked longer than the watchdog's threshold, by loop.",
        "taskleak.event_loop.blocked.time",
        "s",
    )
    blocks = Family(
        "taskleak_event_loop_blocks_total",
        "counter",
        "Episodes of an event loop blocked longer than the watchdog's threshold, by loop.",
        "taskleak.event_loop.blocks",
        "{block}",
    )
    if not watching:
        return [seconds, blocks] + (_live_families(read=False) if live else [])
    totals = watchdog.blocked_totals()
    # One series per loop label from the first sample on: the loops that
    # blocked, and at 0 the loops watched that never did (the same label as
    # the lag gauge's, so the two join).
    per_loop = dict.fromkeys(watchdog.watchdog_status().get("loops", []), (0, 0.0))
    per_loop.update(totals.per_loop)
    for name, (n, secs) in sorted(per_loop.items()):
        blocks.samples.append(({"loop": name}, float(n)))
        seconds.samples.append(({"loop": name}, float(secs)))
    return [seconds, blocks] + (_live_families() if live else [])
