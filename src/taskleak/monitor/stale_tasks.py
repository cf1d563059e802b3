"""Stale tasks: pending tasks far older than their creation site's usual
lifetime, watched per site. The signal that does not move with load.

The pending count follows traffic: a 20x ramp makes 20x more requests in
flight, a step of keep-alive connections adds a plateau. A leak is tasks that
never finish. So per group (creation site x coroutine):

* the native count (``_core.tally_tasks``) gives the ages of the pending
  tasks and the lifetimes of tasks it saw finish, as half-octave histograms;
* :class:`Lifetimes` keeps a decaying histogram of the lifetimes and from it
  a threshold, ``max(factor * p99 lifetime, min_age samples * interval)``;
* the group's *stale* count is its pending tasks at least that old. More
  requests of the same kind do not age them; a leak adds to it steadily;
* :class:`RiseDetector` opens an episode when the low-water marks of
  consecutive blocks of samples rise strictly ``rises`` times in a row or
  more (at one of several block lengths, so that a slow leak is seen on the
  longer blocks), and the run's rise *not counting its largest single step*
  is at least ``min_rise`` and at least ``noise x sqrt(level)`` (the
  level: the last mark). A step (connections that open at once, a burst, a
  group's tasks aging into staleness together at start) rises once then
  stays flat, and is the one step not counted. A pool that keeps its
  connections grows at new highs of concurrency; a concurrency of about
  ``L`` wanders by about ``sqrt(L)``, and its high-water mark creeps up by
  less than that, in ever rarer steps (63, 64, 65, 66: below the bar of 8).
  A ramp or a daily cycle of short tasks leaves the stale count at 0; a
  held leak rises every block, without bound, so it clears any bar.

The bound for a leak: one that adds at least ``d`` stale tasks every block
of length ``B`` (at any of ``blocks``), over ``L`` stale tasks of its group
already there, opens an episode within ``k + 1`` blocks of ``B`` after its
first stale task (the block it falls in, then ``k`` rises), ``k`` the least
``k >= rises`` with ``(k - 1) * d >= max(min_rise, sqrt(L + k * d))``:
about ``1 + sqrt(L) / d``. From no base (a leak at a line of its own) and
``d >= 1`` that is ``rises + 1`` blocks, as with ``min_rise`` alone; over
1000 stale connections of its own group, one leaked task every 20 samples
(``d = 2`` on blocks of 40, ``k = 18``) is named within 19 blocks of 40
(760 samples, about 2 hours at 10 s), one every 160 samples (``d = 1`` on
blocks of 160, ``k = 34``) within 35 blocks of 160 (5,600 samples, about
16 hours at 10 s). A pool of 63 connections creeping up by one a block
would need 10 new highs in 10 blocks in a row.

Connections are not leaks. Clients that arrive one by one and stay (a
chat's WebSocket members, a device fleet, keep-alive pools growing at new
highs) add tasks that live as long as their connection: as stale, and
rising as steadily, as a slow leak. What tells them apart is the
process's open descriptors (``Sample.open_fds``): a verdict whose stale
rise the descriptors match, over the time those tasks were made (a
threshold before the verdict's blocks), is explained by connections being
kept and opens no episode. A leak shows up without new descriptors: tasks
held by a dict, heartbeats outliving their closed connections, waiters
nobody resolves. The monitor feeds in only descriptors that may still be a
connection: a TCP socket whose peer has closed (``Sample.peer_closed``,
``CLOSE_WAIT``) is not, and handlers hung after their clients gave up keep
exactly such sockets open. Where the count is unknown (not Linux), nothing
is explained.

Every time constant is in samples (``interval`` only converts the age floor
to milliseconds), so a monitor at 0.05 s behaves like one at 10 s.
"""

from __future__ import annotations

import array
import collections
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import taskleak._core as _core

__all__ = ["Lifetimes", "RiseDetector", "RiseVerdict", "StaleTasks", "StaleConfig", "stale_count"]

_BUCKETS = _core.AGE_BUCKETS
# Samples of open-descriptor counts kept: the longest verdict (160-sample
# blocks, 16 marks) and a threshold before it; a group whose threshold is
# longer than that (lifetimes of hours) is judged on the blocks it reaches.
_FD_HISTORY = 8192
_FLOORS = [_core.age_bucket_floor_ms(b) for b in range(_BUCKETS)]


def _bucket_at_least(ms: float) -> int:
    """The first bucket whose every age is >= ``ms``."""
    for b, floor in enumerate(_FLOORS):
        if floor >= ms:
            return b
    return _BUCKETS


def _counts(raw: bytes | None) -> array.array[int] | None:
    if raw is None:
        return None
    a = array.array("I")
    a.frombytes(raw)
    return a


def stale_count(ages: bytes | None, threshold_ms: float) -> int:
    """Pending tasks whose age bucket lies wholly at or above ``threshold_ms``
    (a task just past it may wait one bucket more: about a third)."""
    a = _counts(ages)
    if a is None:
        return 0
    return sum(a[_bucket_at_least(threshold_ms) :])


@dataclass(frozen=True)
class StaleConfig:
    """``factor`` x p99 lifetime, but at least ``min_age`` samples, is stale;
    lifetimes decay with a half-life of ``half_life`` samples (a day at 10 s:
    the night's short connections do not make the morning's look stale);
    ``blocks``: the block lengths, in samples, of the rise test; ``rises``:
    the least strict rises in a row of the blocks' low-water marks that open
    an episode; ``min_rise``: the least rise of the low-water mark over them,
    not counting their largest single step; ``noise``: that rise must also
    be at least ``noise x sqrt(level)``, how far a count of that size wanders
    on its own; ``keep``: the most marks a verdict shows."""

    factor: float = 4.0
    min_age: int = 20
    half_life: int = 8640
    blocks: tuple[int, ...] = (10, 40, 160)
    rises: int = 4
    min_rise: int = 3
    noise: float = 1.0
    keep: int = 16


class Lifetimes:
    """A decaying histogram of one group's lifetimes, and its threshold."""

    __slots__ = ("weights", "last", "_p99_ms")

    def __init__(self) -> None:
        self.weights = [0.0] * _BUCKETS
        self.last = 0  # sample number of the last decay
        self._p99_ms: float | None = None

    def add(self, lifetimes: bytes, n: int, half_life: int) -> None:
        # Decay is applied lazily, when lifetimes arrive: a uniform decay does
        # not move a quantile, so the threshold is recomputed only here.
        if n > self.last:
            f = 0.5 ** ((n - self.last) / half_life)
            self.weights = [w * f for w in self.weights]
            self.last = n
        counts = _counts(lifetimes)
        if counts is None:
            return
        for b, c in enumerate(counts):
            if c:
                self.weights[b] += c
        self._p99_ms = self._quantile(0.99)

    def _quantile(self, q: float) -> float | None:
        total = sum(self.weights)
        if total <= 0:
            return None
        need, acc = q * total, 0.0
        for b, w in enumerate(self.weights):
            acc += w
            if acc >= need:
                # The bucket's top: a lifetime is never underestimated.
                return _FLOORS[b + 1] if b + 1 < _BUCKETS else math.inf
        return math.inf

    def threshold_ms(self, cfg: StaleConfig, interval_s: float) -> float:
        floor = cfg.min_age * interval_s * 1000.0
        if self._p99_ms is None:
            return floor
        return max(floor, cfg.factor * self._p99_ms)


@dataclass(frozen=True)
class RiseVerdict:
    """Why a :class:`RiseDetector` opened: ``marks`` are the low-water marks
    of the last ``len(marks)`` blocks of ``block`` samples, each above the
    one before (the run's first marks left off beyond ``StaleConfig.keep``);
    ``rise``: the run's rise not counting its largest single ``step``;
    ``bar``: what it had to reach, ``max(min_rise, noise x sqrt(level))``."""

    block: int
    marks: tuple[int, ...]
    rise: int = 0
    step: int = 0
    bar: float = 0.0

    @property
    def samples(self) -> int:
        return self.block * len(self.marks)

    @property
    def slope_per_sample(self) -> float:
        return (self.marks[-1] - self.marks[0]) / max(1, self.samples - self.block)


class _Scale:
    # marks: the last blocks' low-water marks; base: the first mark of the
    # run of strict rises that ends at the last one (None before any mark);
    # run: its rises; step: the largest of them.
    __slots__ = ("block", "n", "low", "marks", "base", "run", "step")

    def __init__(self, block: int, keep: int) -> None:
        self.block = block
        self.n = 0
        self.low: int | None = None
        self.marks: collections.deque[int] = collections.deque(maxlen=keep)
        self.base: int | None = None
        self.run = 0
        self.step = 0

    def push(self, mark: int) -> None:
        prev = self.marks[-1] if self.marks else None
        self.marks.append(mark)
        if prev is not None and mark > prev:
            self.run += 1
            self.step = max(self.step, mark - prev)
        else:
            self.base, self.run, self.step = mark, 0, 0

    def reset(self) -> None:
        self.marks.clear()
        self.base, self.run, self.step = None, 0, 0


class RiseDetector:
    """Opens an episode when, at any block length, the low-water marks of
    consecutive blocks rose strictly ``rises`` times in a row or more, and
    by ``max(min_rise, noise x sqrt(level))`` or more not counting the run's
    largest single step (see the module's docstring for why and for the
    bound on a leak); closes it when the shortest blocks' last ``rises``
    rose no more (the series is level or falling), no block length rises
    any more, and no shortest block's mark rose for longer than the group's
    stale threshold: when the threshold grows (the group's lifetimes grew),
    the stale count drops and stays level until the leak's newer tasks
    reach the new threshold; the leak is still there, and a second page for
    it would be noise."""

    __slots__ = ("cfg", "scales", "in_episode", "zeros", "quiet")

    def __init__(self, cfg: StaleConfig) -> None:
        self.cfg = cfg
        self.scales = [_Scale(b, max(cfg.keep, cfg.rises + 1)) for b in cfg.blocks]
        self.in_episode = False
        # Leading zeros not yet fed to the scales, or -1 once a value was not
        # 0. Most groups never have a stale task: counting their zeros is
        # all a sample costs them (the monitor's GIL budget is per sample).
        self.zeros = 0
        self.quiet = 0  # in an episode: samples since a shortest block's mark last rose

    def _verdict(self, s: _Scale) -> RiseVerdict | None:
        cfg = self.cfg
        if s.run < cfg.rises or s.base is None:
            return None
        level = s.marks[-1]
        rise = level - s.base - s.step
        bar = max(float(cfg.min_rise), cfg.noise * math.sqrt(level))
        if rise < bar:
            return None
        marks = tuple(s.marks)[-(s.run + 1) :]
        return RiseVerdict(s.block, marks, rise=rise, step=s.step, bar=bar)

    def update(
        self, value: int, explained: Callable[[RiseVerdict], bool] | None = None, threshold: float = 0.0
    ) -> RiseVerdict | None:
        """Feed one sample's value; the verdict that opens an episode, if any.
        A verdict ``explained`` says is explained (connections being kept)
        opens none: the next block length's may. ``threshold``: the group's
        stale threshold in samples (how long an episode must stay level to
        close)."""
        if self.zeros >= 0:
            if value == 0:
                self.zeros += 1
                return None
            # The first stale task: the zeros so far, as the scales would
            # have seen them one by one.
            for s in self.scales:
                full, rest = divmod(self.zeros, s.block)
                if full:
                    s.marks.extend([0] * min(full, s.marks.maxlen or 0))
                    s.base, s.run, s.step = 0, 0, 0
                s.n, s.low = rest, (0 if rest else None)
            self.zeros = -1
        verdict: RiseVerdict | None = None
        ended = False  # a block of the shortest length ended at this sample
        for i, s in enumerate(self.scales):
            s.low = value if s.low is None else min(s.low, value)
            s.n += 1
            if s.n < s.block:
                continue
            s.push(s.low)
            s.n, s.low = 0, None
            ended = ended or i == 0
            if verdict is None:
                v = self._verdict(s)
                if v is not None and not (explained is not None and explained(v)):
                    verdict = v
        if self.in_episode:
            # Closed once the shortest blocks are level over the last
            # `rises` of them, no block length rises any more, and none
            # rose for longer than the threshold.
            m = self.scales[0].marks
            k = self.cfg.rises + 1
            if ended:
                self.quiet = 0 if len(m) >= 2 and m[-1] > m[-2] else self.quiet + self.scales[0].block
            level = ended and len(m) >= k and m[-1] <= m[-k]
            if verdict is None and level and self.quiet > threshold:
                self.in_episode = False
                # Fresh evidence at every block length: the longer blocks'
                # marks still hold the rise this episode already reported.
                for sc in self.scales:
                    sc.reset()
            return None
        if verdict is not None:
            self.in_episode = True
            self.quiet = 0
        return verdict


class _Group:
    __slots__ = ("lifetimes", "detector", "seen", "stale", "threshold_ms")

    def __init__(self, cfg: StaleConfig, threshold_ms: float) -> None:
        self.lifetimes = Lifetimes()
        self.detector = RiseDetector(cfg)
        self.seen = 0
        self.stale = 0
        # lifetimes.threshold_ms(), recomputed only when lifetimes arrive:
        # observe() runs per group per sample under the GIL.
        self.threshold_ms = threshold_ms


class StaleTasks:
    """Per group label: lifetimes, stale count and rise detector. Bounded:
    groups not seen for the longest block x (rises + 1) samples are dropped
    (their lifetimes with them), and at most ``max_groups`` are kept."""

    def __init__(self, interval_s: float, cfg: StaleConfig | None = None, max_groups: int = 2048) -> None:
        self.cfg = cfg or StaleConfig()
        self.interval_s = interval_s
        self.max_groups = max_groups
        self.groups: dict[str, _Group] = {}
        self.n = 0
        # Open descriptors at the last _FD_HISTORY samples, in a ring (-1:
        # unknown); the count at sample k sits at k % _FD_HISTORY.
        self._fds = array.array("q", [-1]) * _FD_HISTORY
        # Per group: the descriptors' low-water marks (first, last) of the
        # last verdict explained by connections being kept.
        self.explained: dict[str, tuple[int, int]] = {}

    @property
    def in_episode(self) -> bool:
        return any(g.detector.in_episode for g in self.groups.values())

    def observe(self, label: str, ages: bytes | None, lifetimes: bytes | None, oldest_age_ms: float | None) -> int:
        """One group's histograms at this sample; its stale count."""
        g = self.groups.get(label)
        if g is None:
            if len(self.groups) >= self.max_groups:
                self._forget()
            g = self.groups[label] = _Group(self.cfg, Lifetimes().threshold_ms(self.cfg, self.interval_s))
        g.seen = self.n
        if lifetimes is not None:
            g.lifetimes.add(lifetimes, self.n, self.cfg.half_life)
            g.threshold_ms = g.lifetimes.threshold_ms(self.cfg, self.interval_s)
        threshold = g.threshold_ms
        # Most groups have no task that old: skip reading the histogram.
        if ages is None or oldest_age_ms is None or oldest_age_ms < threshold:
            g.stale = 0
        else:
            g.stale = stale_count(ages, threshold)
        return g.stale

    def descriptors_explain(self, label: str, v: RiseVerdict, threshold_ms: float) -> bool:
        """Did the open descriptors rise with ``v``'s stale count, block by
        block, a threshold earlier (when those tasks were made)? Each of the
        verdict's blocks is paired with the descriptors' low-water mark over
        the same block shifted back by the group's threshold; over the pairs
        the descriptors reach (the monitor's first samples and the ring's
        end bound them), a block's descriptor rise counts up to the stale
        count's largest block rise: 60 connections opened at once explain 60
        tasks of theirs, not a leak rising beside them for the next hour.
        What a block's rise has beyond that carries into the next block, up
        to one such rise: clients arriving every 19.5 samples land 3, 1, 3, 1
        to a block of 40 while their tasks turn stale 2 by 2 (a task turns
        stale up to a third after its threshold), and a real grpc.aio
        service's subscribers so capped fell one short at sample 362.
        Explained when that reaches the stale rise less one such step (a
        connection may fall into the next block)."""
        b = v.block
        shift = int(threshold_ms / (self.interval_s * 1000.0))
        oldest = max(0, self.n + 1 - _FD_HISTORY)
        ring = self._fds
        stale: list[int] = []
        fds: list[int] = []
        for i, mark in enumerate(reversed(v.marks)):  # newest first; the newest block ends now
            hi = self.n + 1 - i * b - shift
            if hi - b < oldest:
                break
            low = min(ring[k % _FD_HISTORY] for k in range(hi - b, hi))
            if low < 0:  # a count not known
                break
            stale.append(mark)
            fds.append(low)
        if len(stale) < 3:
            return False
        stale.reverse()
        fds.reverse()
        rises = [later - earlier for earlier, later in zip(stale, stale[1:])]
        step = max(1, max(rises))
        matched = spill = 0
        for earlier, later in zip(fds, fds[1:]):
            rise = max(0, later - earlier) + spill
            counted = min(rise, step)
            spill = min(rise - counted, step)
            matched += counted
        if matched < sum(rises) - step:
            return False
        self.explained[label] = (fds[0], fds[-1])
        return True

    def detect(self, skip: set[str], open_fds: int | None = None) -> list[tuple[str, RiseVerdict]]:
        """Feed each group's stale count (0 for a group not seen at this
        sample) to its detector, except the ``skip`` ones (allow-listed); the
        groups whose episode opens now. ``open_fds``: the process's open
        descriptors at this sample that may be connections (those in
        ``CLOSE_WAIT`` left out; None: unknown), which may explain a rise
        (see the module's docstring)."""
        out = []
        n = self.n
        self._fds[n % _FD_HISTORY] = -1 if open_fds is None else open_fds
        for label, g in self.groups.items():
            if g.seen != n:
                g.stale = 0
            d = g.detector
            if g.stale == 0 and d.zeros >= 0:
                # RiseDetector.update(0) before any stale task, inlined: what
                # almost every group costs a sample.
                if label not in skip:
                    d.zeros += 1
                continue
            if label in skip:
                continue
            v = d.update(
                g.stale,
                functools.partial(self.descriptors_explain, label, threshold_ms=g.threshold_ms),
                g.threshold_ms / (self.interval_s * 1000.0),
            )
            if v is not None:
                out.append((label, v))
        horizon = max(self.cfg.blocks) * (self.cfg.rises + 1)
        for label in [k for k, g in self.groups.items() if self.n - g.seen > horizon and not g.detector.in_episode]:
            del self.groups[label]
            self.explained.pop(label, None)
        self.n += 1
        return out

    def threshold_s(self, label: str) -> float:
        g = self.groups.get(label)
        lt = g.lifetimes if g is not None else Lifetimes()
        return lt.threshold_ms(self.cfg, self.interval_s) / 1000.0

    def _forget(self) -> None:
        quiet = sorted((g.seen, k) for k, g in self.groups.items() if not g.detector.in_episode)
        for _, k in quiet[: max(1, len(quiet) // 4)]:
            del self.groups[k]
            self.explained.pop(k, None)
