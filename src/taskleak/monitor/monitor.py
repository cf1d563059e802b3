"""``taskleak.Monitor``: the always-on production monitor.

A native thread (``src/core/monitor/sampler.cpp``) wakes every ``interval``
seconds and hands the RSS and the open descriptors it read to
:meth:`Monitor._tick`, which counts the tracked tasks (``_core.tally_tasks``,
GIL dropped between chunks), groups them by creation site x coroutine,
applies the allow-list, measures loop lag, feeds the detectors and
dispatches alerts. Nothing runs on an event loop's thread except the
one-line lag probe.
"""

from __future__ import annotations

import atexit
import collections
import logging
import operator
import os
import threading
import time
import types
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import taskleak._core as _core

from ..frame import frames_from_raw, site_frame, user_frame

# A Snapshot over just the example tasks of a group (Snapshot.of_tasks: a census
# of a few tasks, not of all 100k).
from ..model import Snapshot
from ..tracking import adopted_loops, install
from ..tracking.loss_events import loss_events
from ..tracking.qualname import qualname_of
from ..tracking.setup_sites import with_setup_site
from .allowlist import AllowList, AllowSpec
from .config import MonitorConfig
from .detector import Anomaly, Detector
from .loop_lag import LoopLag
from .lost_tasks import LostSite, LostTasks
from .metrics import Family, declared_families, families
from .peer_streams import watches_a_stream
from .sample import LOSS_KINDS, Alert, AlertGroup, GroupStat, Sample
from .stale_tasks import RiseVerdict, StaleTasks

if TYPE_CHECKING:
    from .._core import TaskRef

__all__ = ["Monitor"]

_TOTAL = operator.itemgetter(0)

log = logging.getLogger("taskleak")

_LOST_WORDS = {
    "destroyed-pending": 'destroyed while pending ("Task was destroyed but it is pending!")',
    "never-retrieved": "failed with an exception nobody retrieved",
}

_LOSS_NAMES = {
    "destroyed-pending": "gc-pending",
    "never-retrieved": "never-retrieved",
    "pending-at-shutdown": "pending-at-shutdown",
}

# Every running monitor, so that interpreter exit and fork can stop them.
_RUNNING: weakref.WeakSet[Monitor] = weakref.WeakSet()

# stop() called on the sampler thread itself (from on_alert): the native
# Sampler must outlive the callback it is still running, so it is kept here.
_RETIRED: list[_core.Sampler] = []
_on_sampler = threading.local()

OTHER = "other"


def running_monitor() -> Monitor | None:
    """A monitor of this process that is running now, if any (the live
    endpoint serves its samples)."""
    for m in list(_RUNNING):
        if m.running:
            return m
    return None


def _stop_all_at_exit() -> None:
    for m in list(_RUNNING):
        try:
            m.stop()
        except Exception:
            pass


atexit.register(_stop_all_at_exit)


def _after_fork_in_child() -> None:
    # The sampler thread did not survive the fork; a child of a pre-forking
    # server (gunicorn --preload) gets its own, with fresh state.
    for m in list(_RUNNING):
        try:
            m._restart_after_fork()
        except Exception:
            log.exception("taskleak: could not restart the monitor after fork")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _label(code: types.CodeType | type) -> str:
    if isinstance(code, types.CodeType):
        q = getattr(code, "co_qualname", None)
        return str(q) if q is not None else qualname_of(code)
    return str(getattr(code, "__qualname__", None) or getattr(code, "__name__", "?"))


class _GroupTrack:
    """A group's detector and its recent counts (for "growth")."""

    __slots__ = ("detector", "history", "pending", "done", "seen")

    def __init__(self, detector: Detector, window: int) -> None:
        self.detector = detector
        self.history: collections.deque[int] = collections.deque(maxlen=window + 1)  # pending + done retained
        self.pending: collections.deque[int] = collections.deque(maxlen=window + 1)
        self.done: collections.deque[int] = collections.deque(maxlen=window + 1)
        self.seen = 0

    def record(self, pending: int, done: int) -> None:
        self.history.append(pending + done)
        self.pending.append(pending)
        self.done.append(done)


class Monitor:
    """Samples task counts, RSS and loop lag every ``interval`` seconds and
    alerts on leaks.

    ``window`` / ``sigma`` / ``consecutive`` configure every detector (see
    :class:`taskleak.Detector`; ``detector_options`` passes its other
    keywords). ``allow``: the allow-list (globs, callables, ``{glob:
    budget}``). ``on_alert(alert)`` is called on the monitor's own thread,
    never on an event loop; what it raises is logged and dropped. Alerts
    also go to the ``taskleak`` logger (WARNING) and to the exporters; a
    group whose stale rise is taken for connections being kept (new open
    descriptors matched it: stale_tasks.py) is logged once at INFO.

    ``max_groups`` groups (creation site x coroutine) are reported by name,
    the rest as ``"other"``; ``history`` samples are kept for
    :meth:`samples`; ``jsonl`` is a path to append one JSON line per sample
    to. ``rss_min_rise`` (bytes) is the least RSS rise that can alert.
    ``max_hold_ms`` bounds each stretch the task count holds the GIL for.

    What pages by default: stale tasks (``"stale"``: per creation site,
    pending tasks far older than that site's usual lifetime, rising block
    after block: stale_tasks.py), tasks lost (``"lost"``), finished tasks
    still referenced (``"done_retained"``) and RSS. The seed's rule on the
    pending count and on each group's count (mean + sigma x stddev, and the
    trend test) follows load, so it runs only with ``count_rules=True``
    (signals ``"pending"`` and ``"group"``).

    ``start()`` installs creation tracking (:func:`taskleak.install`) if it
    is not on: only tasks created after that are counted. Errors: bad
    arguments raise ValueError/TypeError at construction (the ranges:
    :class:`~taskleak.monitor.config.MonitorConfig`, also ``self.config``);
    nothing the monitor does later raises into the program.
    """

    def __init__(
        self,
        interval: float = 10.0,
        window: int = 30,
        sigma: float = 2.0,
        consecutive: int = 3,
        allow: AllowSpec = (),
        on_alert: Callable[[Alert], Any] | None = None,
        *,
        max_groups: int = 20,
        history: int = 720,
        jsonl: str | None = None,
        log_alerts: bool = True,
        detector_options: Mapping[str, Any] | None = None,
        rss_min_rise: int = 64 << 20,
        max_hold_ms: float = 0.5,
        stack_depth: int = 32,
        count_rules: bool = False,
    ) -> None:
        # Every value is checked in one place (config.py), the same way for
        # Monitor(...), serve(), TASKLEAK_MONITOR and `taskleak run --monitor`.
        cfg = self.config = MonitorConfig(
            interval=interval,
            window=window,
            sigma=sigma,
            consecutive=consecutive,
            allow=AllowList(allow),
            on_alert=on_alert,
            max_groups=max_groups,
            history=history,
            jsonl=jsonl,
            log_alerts=log_alerts,
            detector_options=detector_options,
            rss_min_rise=rss_min_rise,
            max_hold_ms=max_hold_ms,
            stack_depth=stack_depth,
            count_rules=count_rules,
        )
        self.interval = cfg.interval
        self.allow = cfg.allow
        self.on_alert = cfg.on_alert
        self.max_groups = cfg.max_groups
        self.log_alerts = cfg.log_alerts
        self.stack_depth = cfg.stack_depth
        self._max_hold_ns = int(cfg.max_hold_ms * 1e6)
        self._det_args: dict[str, Any] = cfg.detector_args()
        self.window = cfg.window

        def make(**kw: Any) -> Detector:
            return Detector(**{**self._det_args, **kw})

        self._detectors: dict[str, Detector] = {
            "pending": make(),
            "done_retained": make(),
            "rss": make(min_rise=float(cfg.rss_min_rise), min_rise_ratio=0.1, min_stddev=float(1 << 20)),
        }
        self.count_rules = cfg.count_rules
        if not cfg.count_rules:
            del self._detectors["pending"]  # follows load: not a page (see the class doc)
        self._groups: dict[str, _GroupTrack] = {}
        self._stale = StaleTasks(cfg.interval)
        self._stale_skip: set[str] = set()  # allow-listed group labels of the latest sample
        self._explained_told: set[str] = set()  # groups whose rise the log was told is connections
        self._samples: collections.deque[Sample] = collections.deque(maxlen=cfg.history)
        self._alerts: collections.deque[Alert] = collections.deque(maxlen=1000)
        self._alert_counts: dict[tuple[str, str], int] = {}
        # (signal or group label, detector) -> creation site the episode's alert named first
        self._episode_sites: dict[tuple[str, str], str] = {}
        self._losses: dict[str, int] = {k: 0 for k in LOSS_KINDS}
        self._lost = LostTasks(self.window)
        self._new_losses: list[Any] = []  # loss events since the previous sample
        self._loss_seen = 0.0  # time of the newest loss event seen
        self._labels: dict[tuple[int, int], tuple[str, str, str, bool]] = {}
        self._lag = LoopLag()
        self._lock = threading.Lock()
        self._sampler: _core.Sampler | None = None
        self._started_at = time.monotonic()
        self._exporters: list[Any] = []
        self._jsonl_path = cfg.jsonl
        self._jsonl: Any = None
        self._examples: dict[str, TaskRef | None] = {}
        self._stale_after: list[tuple[int, types.CodeType | type, float]] = []
        self._generation = 0
        self._n = 0

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> Monitor:
        """Start sampling (idempotent); the first sample is taken at once."""
        with self._lock:
            if self._sampler is not None:
                return self
            install(self.stack_depth)
            _probe_task_layout()
            if self._jsonl_path is not None and self._jsonl is None:
                from .jsonl import JsonLinesLog

                self._jsonl = JsonLinesLog(self._jsonl_path)
                self._exporters.append(self._jsonl)
            self._started_at = self._loss_seen = time.monotonic()
            self._sampler = _core.Sampler(self.interval, self._tick)
            self._sampler.start()
            _RUNNING.add(self)
        return self

    def stop(self) -> None:
        """Stop sampling and join the sampler thread (idempotent). Samples,
        alerts and metrics stay readable."""
        sampler = self._sampler
        if sampler is None:
            return
        self._sampler = None
        sampler.stop()  # releases the GIL while it joins (or, from its own thread, only asks it to end)
        if getattr(_on_sampler, "active", False):
            _RETIRED.append(sampler)
        _RUNNING.discard(self)
        if self._jsonl is not None:
            self._exporters.remove(self._jsonl)
            self._jsonl.close()
            self._jsonl = None

    @property
    def running(self) -> bool:
        return self._sampler is not None

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _restart_after_fork(self) -> None:
        if self._sampler is not None:
            self._sampler.forget_after_fork()
            self._sampler = None
        self._lock = threading.Lock()
        self._lag = LoopLag()
        self.start()

    # -- reading -----------------------------------------------------------------
    def samples(self) -> list[Sample]:
        """The retained samples, oldest first (a bounded ring: ``history``)."""
        return list(self._samples)

    def latest(self) -> Sample | None:
        return self._samples[-1] if self._samples else None

    def alerts(self) -> list[Alert]:
        """Alerts so far, oldest first (the last 1000)."""
        return list(self._alerts)

    def suspected(self) -> dict[tuple[str, str], bool]:
        """``(signal, detector) -> open episode?`` for every signal watched."""
        out: dict[tuple[str, str], bool] = {}
        for name, det in list(self._detectors.items()) + [(k, g.detector) for k, g in list(self._groups.items())]:
            for kind in ("spike", "trend"):
                if name not in self._detectors and not self.count_rules:
                    continue
                if det.episode_kind == kind or name in self._detectors:
                    out[(name, kind)] = det.episode_kind == kind
        out[("lost", "count")] = self._lost.in_episode
        out[("stale", "rise")] = self._stale.in_episode
        return out

    def suspected_sites(self) -> dict[tuple[str, str], str]:
        """``(signal, detector) -> creation site`` ("file:line in function")
        of the group the alert of each open episode named first, as keyed by
        :meth:`suspected`."""
        return self._open_sites(self.suspected())

    def _open_sites(self, open_episodes: dict[tuple[str, str], bool]) -> dict[tuple[str, str], str]:
        return {k: site for k, site in list(self._episode_sites.items()) if open_episodes.get(k)}

    def alert_counts(self) -> dict[tuple[str, str], int]:
        """Alerts per (signal, detector); group alerts count under ``"group"``."""
        return dict(self._alert_counts)

    def metric_families(self, declared: bool = False, live: bool = True) -> list[Family]:
        """The metric families of the latest sample (metrics.py); with
        ``declared``, also those an exporter must declare before they have
        data (the blocked-loop counters); with ``live``, the watched loops'
        live gauges (blocked now, the current block's seconds), read now."""
        make = declared_families if declared else families
        open_episodes = self.suspected()
        return make(self.latest(), open_episodes, self.alert_counts(), self._open_sites(open_episodes), live)

    def metrics_text(self, live: bool = True) -> str:
        """The Prometheus text exposition of the latest sample (and, with
        ``live``, the watched loops' live gauges, read now)."""
        from .prometheus import exposition

        return exposition(self, live)

    def add_exporter(self, exporter: Any) -> None:
        """Something with ``on_sample(sample)`` and/or ``on_alert(alert)``."""
        self._exporters.append(exporter)

    def remove_exporter(self, exporter: Any) -> None:
        """Undo :meth:`add_exporter` (nothing if it was not added)."""
        try:
            self._exporters.remove(exporter)
        except ValueError:
            pass

    # -- sampling ----------------------------------------------------------------
    def sample_now(self) -> Sample:
        """Take a sample on the calling thread (tests, or a caller that keeps
        its own clock). Do not call it from an event loop's thread in
        production: that is what the sampler thread is for."""
        install(self.stack_depth)
        _probe_task_layout()
        return self._take(_core.rss_bytes(), *_core.open_fds())

    def _tick(self, rss: int, fds: int = -1, peer_closed: int = -1) -> None:
        # Called by the sampler thread with the GIL held; must never raise.
        _on_sampler.active = True
        try:
            self._take(rss, fds, peer_closed)
        except Exception:
            log.exception("taskleak: monitor sample failed")
        finally:
            _on_sampler.active = False
            # logging asks threading for the current thread, which registers
            # this native thread as a _DummyThread that would outlive stop().
            ident = threading.get_ident()
            if isinstance(threading._active.get(ident), threading._DummyThread):  # type: ignore[attr-defined]
                threading._active.pop(ident, None)  # type: ignore[attr-defined]

    def _take(self, rss: int, fds: int = -1, peer_closed: int = -1) -> Sample:
        with self._lock:
            sample = self._measure(rss, fds, peer_closed)
            self._samples.append(sample)
            alerts = self._detect(sample)
        for e in self._exporters:
            fn = getattr(e, "on_sample", None)
            if fn is not None:
                try:
                    fn(sample)
                except Exception:
                    log.exception("taskleak: exporter %r failed on a sample", e)
        for a in alerts:
            self._dispatch(a)
        return sample

    def _site(self, stack_id: int, code: types.CodeType | type, example: TaskRef | None) -> tuple[str, str, str, bool]:
        """(site, coroutine, "site (coroutine)", whether its tasks stand for
        streams peers keep open) of a group, cached by id. A server's
        connection handlers are named by the line that set the server up, as
        reports name them (``with_setup_site``), found from the group's
        example the first time the group is seen."""
        key = (stack_id, id(code))
        lab = self._labels.get(key)
        if lab is None:
            frames = frames_from_raw(_core.stack_frames(stack_id)) if stack_id >= 0 else None
            if not frames:
                site = "creation site unknown" if stack_id != -2 else "creation stack dropped"
            else:
                task = example() if example is not None else None
                if task is not None and not task.done():
                    frames = with_setup_site(frames, task)
                del task
                site = site_frame(frames).short()
            coro = _label(code)
            lab = self._labels[key] = (site, coro, f"{site} ({coro})", watches_a_stream(code))
        return lab

    def _measure(self, rss: int, fds: int = -1, peer_closed: int = -1) -> Sample:
        raw = _core.tally_tasks(self._max_hold_ns, self._stale_after or None)
        self._last_tally = raw
        if raw["generation"] != self._generation:
            # The native group table started afresh: ids may name other stacks now.
            self._generation = raw["generation"]
            self._labels = {}
        now_ns = _core.monotonic_ns()
        groups: list[tuple[int, str, str, int, int, int, TaskRef | None, bool, int, str]] = []
        matched: dict[int, list[tuple[int, int]]] = {}
        self._stale_skip = set()
        # This loop runs once per group per sample with the GIL held (the
        # monitor's budget is <= 1 ms per sample at 100k tasks, of which the
        # count takes most): names come from the cache without a call,
        # loop-invariant lookups are hoisted, each group's label is built once.
        raw_groups = raw["groups"]
        labels = self._labels
        site_of = self._site
        observe = self._stale.observe
        stale_groups = self._stale.groups
        # The next count's examples of groups with stale tasks: their newest
        # stale one (the kind an alert is about), from these thresholds.
        stale_after: list[tuple[int, types.CodeType | type, float]] = []
        self._stale_after = stale_after
        allow = self.allow if self.allow else None
        peer_streams = 0
        for stack_id, code, pending, done, oldest_ns, example, ages, lifetimes in raw_groups:
            lab = labels.get((stack_id, id(code)))
            site, coro, label, streams = lab if lab is not None else site_of(stack_id, code, example)
            if streams:
                peer_streams += pending
            stale = observe(label, ages, lifetimes, (now_ns - oldest_ns) / 1e6 if oldest_ns >= 0 else None)
            if stale:
                stale_after.append((stack_id, code, stale_groups[label].threshold_ms))
            if pending == 0 and done == 0:
                continue  # gone: reported only for its lifetimes
            allowed = False
            if allow is not None:
                task = example() if example is not None else None
                idx = allow.match(task, coro, site)
                del task
                if idx is not None:
                    matched.setdefault(idx, []).append((pending, done))
                    allowed = True
                    self._stale_skip.add(label)
            groups.append((pending + done, site, coro, pending, done, oldest_ns, example, allowed, stale, label))
        # Group ids stay valid while the native table pins their stacks; keep
        # the label cache about as small as the live groups.
        if len(self._labels) > 2 * len(raw_groups) + 64:
            seen_keys = {(g[0], id(g[1])) for g in raw_groups}
            self._labels = {k: v for k, v in self._labels.items() if k in seen_keys}
        al_p = al_d = 0
        for idx, counts in matched.items():
            p, d = AllowList.split(counts, self.allow.entries[idx].budget)
            al_p += p
            al_d += d
        groups.sort(key=_TOTAL, reverse=True)  # stable: ties keep the core's order
        stats: list[GroupStat] = []
        examples: dict[str, TaskRef | None] = {}
        top = self.max_groups
        for _total, site, coro, p, d, oldest_ns, example, allowed, stale, label in groups[:top]:
            stats.append(
                GroupStat(
                    site, coro, p, d, max(0.0, (now_ns - oldest_ns) / 1e9) if oldest_ns >= 0 else None, allowed, stale
                )
            )
            examples[label] = example
        if len(groups) > top:
            rest_p = rest_d = rest_stale = 0
            rest_oldest = -1
            for _total, _site, _coro, p, d, oldest_ns, example, _allowed, stale, label in groups[top:]:
                # A stale alert may name a group outside the top ones.
                examples[label] = example
                rest_p += p
                rest_d += d
                rest_stale += stale
                if oldest_ns >= 0 and (rest_oldest < 0 or oldest_ns < rest_oldest):
                    rest_oldest = oldest_ns
            stats.append(
                GroupStat(
                    OTHER,
                    OTHER,
                    rest_p,
                    rest_d,
                    (now_ns - rest_oldest) / 1e9 if rest_oldest >= 0 else None,
                    False,
                    rest_stale,
                )
            )
        self._examples = examples
        self._count_losses()
        lags = self._lag.tick(adopted_loops())
        self._n += 1
        return Sample(
            time=time.time(),
            tasks=raw["live"],
            pending=raw["pending"],
            done_retained=raw["done"],
            created_total=raw["created_total"],
            losses=dict(self._losses),
            rss_bytes=rss if rss >= 0 else None,
            loop_lag_s=max(lags.values()) if lags else None,
            groups=stats,
            allowlisted_pending=al_p,
            allowlisted_done_retained=al_d,
            loop_lags=lags,
            gil_s=raw["gil_ns"] / 1e9,
            stale=sum(g[8] for g in groups if not g[7]),
            open_fds=fds if fds >= 0 else None,
            peer_closed=peer_closed if peer_closed >= 0 else None,
            peer_streams=peer_streams,
        )

    def _tell_explained(self) -> None:
        """Log (INFO, with the alerts' switch) the first time a group's stale
        rise is taken for connections being kept: why a growing group did
        not page is then one grep away."""
        explained = self._stale.explained
        if not self.log_alerts or explained.keys() <= self._explained_told:
            return
        for label, (first, last) in explained.items():
            if label not in self._explained_told:
                log.info(
                    "taskleak: the stale tasks of %s rose as the open descriptors did (%d -> %d): taken for "
                    "connections being kept, not a leak",
                    label,
                    first,
                    last,
                )
        self._explained_told = set(explained)  # bounded: the groups StaleTasks still keeps

    def _count_losses(self) -> None:
        # Counted from the (bounded) event buffer since the monitor started;
        # kept monotonic even if someone clears the buffer.
        counts = {k: 0 for k in LOSS_KINDS}
        newest = self._loss_seen
        self._new_losses = []
        for e in loss_events():
            if e.time >= self._started_at:
                k = _LOSS_NAMES.get(e.kind)
                if k is not None:
                    counts[k] += 1
                if e.time > self._loss_seen:
                    self._new_losses.append(e)
                    newest = max(newest, e.time)
        self._loss_seen = newest
        for k, v in counts.items():
            self._losses[k] = max(self._losses[k], v)

    # -- detection -----------------------------------------------------------------
    def _detect(self, s: Sample) -> list[Alert]:
        alerts: list[Alert] = []
        budget = {g.label: self._budget_of(g) for g in s.groups}
        # Groups first: the total's alert names the groups that grew.
        for g in s.groups:
            if g.site == OTHER:
                continue
            b = budget[g.label]
            if g.allowlisted and b is None:
                continue
            track = self._groups.get(g.label)
            if track is None:
                track = self._groups[g.label] = _GroupTrack(Detector(**self._det_args), self.window)
            value = max(0, g.pending + g.done_retained - (b or 0))
            track.record(g.pending, g.done_retained)
            track.seen = self._n
            if not self.count_rules:
                continue
            a = track.detector.update(value)
            if a is not None:
                alerts.append(self._alert("group", a, s, only=g.label))
        # Groups not seen for a window go back to zero, then are forgotten.
        for label, track in list(self._groups.items()):
            if track.seen != self._n:
                if self.count_rules:
                    track.detector.update(0)
                track.record(0, 0)
                if self._n - track.seen > self.window and not track.detector.in_episode:
                    del self._groups[label]
        for site in self._lost.update(self._new_losses):
            alerts.insert(0, self._lost_alert(site, s))
        self._new_losses = []
        # A socket whose peer has gone keeps nobody's connection: only the
        # rest may explain a stale rise (stale_tasks.py), with the streams
        # peers keep open over multiplexed connections (peer_streams.py).
        kept = None if s.open_fds is None else s.open_fds - (s.peer_closed or 0) + s.peer_streams
        for label, verdict in self._stale.detect(self._stale_skip, kept):
            alerts.insert(0, self._stale_alert(label, verdict, s))
        self._tell_explained()
        if self.count_rules:
            p = self._detectors["pending"].update(s.pending - s.allowlisted_pending)
            if p is not None:
                alerts.insert(0, self._alert("pending", p, s))
        d = self._detectors["done_retained"].update(s.done_retained - s.allowlisted_done_retained)
        if d is not None:
            alerts.insert(0, self._alert("done_retained", d, s))
        if s.rss_bytes is not None:
            r = self._detectors["rss"].update(float(s.rss_bytes))
            if r is not None:
                alerts.append(self._alert("rss", r, s))
        return alerts

    def _lost_alert(self, site: LostSite, s: Sample) -> Alert:
        e = site.example
        a = Anomaly(
            kind="count",
            value=float(site.recent),
            mean=0.0,
            stddev=0.0,
            threshold=float(self._lost.min_lost),
            slope_per_sample=0.0,
            samples=self._lost.window,
        )
        group = AlertGroup(
            site=site.site,
            coro=site.coro,
            pending=0,
            done_retained=0,
            growth=site.recent,
            chain=[f.short() for f in e.stack],
            waiting_on=e.waiting_on or None,
        )
        how = ", ".join(f"{n} {_LOST_WORDS.get(k, k)}" for k, n in sorted(site.kinds.items()))
        text = (
            f"taskleak: tasks lost (lost, count): {site.recent} tasks created at {site.site} "
            f"({site.coro}) lost in the last {self._lost.window} samples: {how}"
        )
        if e.stack:
            text += f"\n        suspended at {e.stack[-1].short()}"
        if e.waiting_on:
            text += f"\n        waiting on {e.waiting_on}"
        return Alert(time=s.time, signal="lost", anomaly=a, text=text, groups=[group])

    def _budget_of(self, g: GroupStat) -> int | None:
        if not g.allowlisted:
            return None
        example = self._examples.get(g.label)
        task = example() if example is not None else None
        idx = self.allow.match(task, g.coro, g.site)
        return None if idx is None else self.allow.entries[idx].budget

    def _growth(self, signal: str) -> list[tuple[int, str]]:
        """(growth over the window, label) per group, largest first: of the
        pending tasks for a pending alert, of the finished-but-held ones for a
        done_retained alert, of both otherwise."""
        out = []
        for label, t in self._groups.items():
            hist = t.pending if signal == "pending" else t.done if signal == "done_retained" else t.history
            if len(hist) >= 2:
                out.append((hist[-1] - hist[0], label))
        out.sort(reverse=True)
        return out

    def _alert(self, signal: str, a: Anomaly, s: Sample, only: str | None = None) -> Alert:
        by_label = {g.label: g for g in s.groups}
        if only is not None:
            labels = [only]
        else:
            grown = [(growth, lab) for growth, lab in self._growth(signal) if growth > 0 and lab in by_label]
            # The groups that carry the rise; ordinary churn of other groups
            # (a few more requests in flight) is not worth naming.
            top = grown[0][0] if grown else 0
            labels = [lab for growth, lab in grown if growth * 2 >= top][:3]
        described = [self._describe_group(by_label[lab], self._groups[lab]) for lab in labels if lab in self._groups]
        groups = [g for g in described if g is not None]
        text = _alert_text(signal if only is None else only, a, s, groups, self._task_growth())
        return Alert(time=s.time, signal=signal, anomaly=a, text=text, groups=groups, group=only)

    def _task_growth(self) -> bool:
        """Did the task counts grow over the last window (or is a task
        detector in an episode)? Decides how an RSS alert reads."""
        if self._stale.in_episode or self._detectors["done_retained"].in_episode:
            return True
        if self.count_rules and self._detectors["pending"].in_episode:
            return True
        if len(self._samples) < 2:
            return False
        old = self._samples[max(0, len(self._samples) - 1 - self.window)]
        new = self._samples[-1]
        grown = (new.pending + new.done_retained) - (old.pending + old.done_retained)
        return grown > max(5, 0.05 * (old.pending + old.done_retained))

    def _describe_group(self, g: GroupStat, track: _GroupTrack) -> AlertGroup | None:
        growth = track.history[-1] - track.history[0] if len(track.history) >= 2 else 0
        chain, waiting_on, orphaned = self._example_details(g.label)
        return AlertGroup(
            site=g.site,
            coro=g.coro,
            pending=g.pending,
            done_retained=g.done_retained,
            growth=growth,
            chain=chain,
            waiting_on=waiting_on,
            orphaned=orphaned,
        )

    def _example_details(self, label: str) -> tuple[list[str], str | None, bool | None]:
        """The await chain, wait target and orphaned flag of the group's
        example task (empty if it is gone)."""
        example = self._examples.get(label)
        task = example() if example is not None else None
        chain: list[str] = []
        waiting_on = orphaned = None
        if task is not None:
            try:
                snap = Snapshot.of_tasks([task])
                info = next(iter(snap))
                chain = [f.short() for f in info.stack]
                # Name the innermost frame of user code, not asyncio's own.
                inner = user_frame(list(reversed(info.stack)))
                if inner is not None and chain and chain[-1] != inner.short():
                    chain = chain[: chain.index(inner.short()) + 1] if inner.short() in chain else chain
                if info.state == "pending":
                    waiting_on = info.waiting_on
                    orphaned = info.orphaned
                del info, snap
            except Exception:
                log.debug("taskleak: describing %s failed", label, exc_info=True)
        del task
        return chain, waiting_on, orphaned

    def _stale_alert(self, label: str, v: RiseVerdict, s: Sample) -> Alert:
        stat = next((g for g in s.groups if g.label == label), None)
        site, _, coro = label.rpartition(" (")
        coro = coro[:-1] if coro.endswith(")") else coro
        threshold_s = self._stale.threshold_s(label)
        stale = self._stale.groups[label].stale if label in self._stale.groups else v.marks[-1]
        a = Anomaly(
            kind="rise",
            value=float(stale),
            mean=float(v.marks[0]),
            stddev=0.0,
            threshold=threshold_s,
            slope_per_sample=v.slope_per_sample,
            samples=v.samples,
        )
        chain, waiting_on, orphaned = self._example_details(label)
        group = AlertGroup(
            site=stat.site if stat else site,
            coro=stat.coro if stat else coro,
            pending=stat.pending if stat else stale,
            done_retained=stat.done_retained if stat else 0,
            growth=v.marks[-1] - v.marks[0],
            chain=chain,
            waiting_on=waiting_on,
            orphaned=orphaned,
        )
        marks = ", ".join(str(m) for m in v.marks)
        text = (
            f"taskleak: suspected task leak (stale, rise): {stale} tasks created at {group.site} "
            f"({group.coro}) pending for over {threshold_s:.3g} s, far beyond that site's usual lifetime, "
            f"and more of them block after block (low-water marks {marks} over blocks of {v.block} samples: "
            f"up {v.rise} besides the largest step of {v.step}, the bar {v.bar:.3g}); "
            f"{group.pending} pending in all"
        )
        if chain:
            text += f"\n        suspended at {chain[-1]}"
        if waiting_on:
            text += f"\n        waiting on {waiting_on}" + ("  [orphaned: nothing can wake it]" if orphaned else "")
        return Alert(time=s.time, signal="stale", anomaly=a, text=text, groups=[group], group=label)

    def _dispatch(self, a: Alert) -> None:
        key = (a.signal, a.anomaly.kind)
        self._alert_counts[key] = self._alert_counts.get(key, 0) + 1
        if a.groups:
            if len(self._episode_sites) > 4 * self.max_groups + 16:
                self._episode_sites.clear()  # bounded: only open episodes are exported anyway
            name = a.group if a.signal == "group" and a.group else a.signal
            self._episode_sites[(name, a.anomaly.kind)] = a.groups[0].site
        self._alerts.append(a)
        if self.log_alerts:
            log.warning("%s", a.text)
        for e in self._exporters:
            fn = getattr(e, "on_alert", None)
            if fn is not None:
                try:
                    fn(a)
                except Exception:
                    log.exception("taskleak: exporter %r failed on an alert", e)
        if self.on_alert is not None:
            try:
                self.on_alert(a)
            except Exception:
                log.exception("taskleak: on_alert callback raised")

    def __repr__(self) -> str:
        return f"<taskleak.Monitor interval={self.interval}s running={self.running} samples={len(self._samples)}>"


def _alert_text(signal: str, a: Anomaly, s: Sample, groups: Sequence[AlertGroup], tasks_grew: bool) -> str:
    how = (
        f"above {a.threshold:.0f} (mean + sigma * stddev of the window) several samples in a row"
        if a.kind == "spike"
        else f"rising {a.slope_per_sample:+.3g} per sample over {a.samples} samples, low-water mark above {a.threshold:.0f}"
    )
    if signal == "rss":
        mib = (s.rss_bytes or 0) / (1 << 20)
        head = f"taskleak: memory growth (rss, {a.kind}): RSS {mib:.1f} MiB, {how.replace(f'{a.threshold:.0f}', f'{a.threshold / (1 << 20):.1f} MiB')}"
        if not tasks_grew:
            head += (
                "\n  the task counts did not grow: this is not a task leak (look at object growth: taskleak.growth())"
            )
        else:
            head += "\n  the task counts grew too: see the task alerts"
    elif signal == "pending":
        head = f"taskleak: suspected task leak (pending, {a.kind}): {s.pending} pending tasks, {how}"
    elif signal == "done_retained":
        head = (
            f"taskleak: suspected task leak (done_retained, {a.kind}): {s.done_retained} finished tasks "
            f"still referenced, {how}"
        )
    else:
        head = f"taskleak: suspected task leak in one group ({a.kind}): {signal}: {how}"
    head += f" (baseline mean {a.mean:.1f}, stddev {a.stddev:.1f})"
    lines = [head]
    for g in groups:
        lines.append(
            f"  {g.growth:+d}  created at {g.site}  coroutine {g.coro}: "
            f"{g.pending} pending, {g.done_retained} done but retained"
        )
        if g.chain:
            lines.append(f"        suspended at {g.chain[-1]}")
        if g.waiting_on:
            lines.append(
                f"        waiting on {g.waiting_on}" + ("  [orphaned: nothing can wake it]" if g.orphaned else "")
            )
    return "\n".join(lines)


# -- start-up probe of the C Task layout ---------------------------------------------
_probed = False


def _probe_task_layout() -> None:
    """Let the native count read task state from the struct (see
    task_tally.cpp) after checking the layout on real tasks in every state."""
    global _probed
    if _probed:
        return
    _probed = True
    import asyncio

    async def waiter(fut: Any) -> None:
        await fut

    async def other(fut: Any) -> None:
        await fut

    async def quick() -> int:
        return 1

    def probe() -> None:
        loop = asyncio.new_event_loop()
        try:
            fut = loop.create_future()
            c1, c2 = waiter(fut), other(fut)
            t1, t2 = loop.create_task(c1), loop.create_task(c2)
            done = loop.create_task(quick())
            cancelled = loop.create_task(quick())
            cancelled.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.run_until_complete(asyncio.sleep(0))
            ok = (
                done.done()
                and cancelled.cancelled()
                and not t1.done()
                and type(t1).__module__ == "_asyncio"
                and _core.probe_task_fields(t1, t2, done, cancelled, c1, c2)
            )
            if not ok:
                log.debug("taskleak: task layout probe failed; the monitor reads task state by attribute")
            fut.set_result(None)
            loop.run_until_complete(asyncio.gather(t1, t2))
            # The cancelled task keeps the CancelledError its coroutine
            # raised, whose traceback owns this frame and so every probe
            # task: a cycle that kept five done tasks alive until the next
            # collection, and a snapshot taken before it (`taskleak dump`
            # right after the agent started) reported them. Asking for the
            # result hands the stored exception over; without its
            # traceback nothing holds the tasks.
            try:
                cancelled.result()
            except asyncio.CancelledError as e:
                e.__traceback__ = None
        except Exception:
            log.debug("taskleak: task layout probe failed", exc_info=True)
        finally:
            loop.close()

    # On a thread of its own: start() may be called from inside a running loop.
    t = threading.Thread(target=probe, name="taskleak-probe")
    t.start()
    t.join()
