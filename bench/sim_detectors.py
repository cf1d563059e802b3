"""The monitor's default pager on simulated services, in samples (no clock).

Feeds the monitor's own detectors - stale tasks (taskleak.monitor.stale_tasks),
lost tasks (lost_tasks), done_retained (taskleak.Detector) - with what the
native count would report at each sample of a simulated service (10 s
samples; ages and lifetimes in the native count's half-octave buckets), and
prints the two tables of docs/monitoring.md ("Time to alert" and "False
alarms"):

1. time to alert, in samples from process start (no history), for each leak
   shape under the same background load: held tasks (one every 2 samples,
   one every 20), tasks lost to the collector (one every 2 samples),
   finished tasks kept referenced (one every 2 samples);
2. false alarms of the default pager over 7 simulated days of a daily
   cycle (requests, keep-alive connections, bursts of slow jobs), the
   process restarted once a day at a random phase of the cycle; and, for
   comparison, of the seed's count rule on the pending count
   (``count_rules=True``).

    .venv/py3.11/bin/python bench/sim_detectors.py [--days 7] [--seed 18]

Deterministic for a seed. The load model is in :class:`Service`.
"""

from __future__ import annotations

import argparse
import array
import bisect
import math
import random
from dataclasses import dataclass, field

import taskleak
from taskleak import _core
from taskleak.monitor.lost_tasks import LostTasks
from taskleak.monitor.stale_tasks import StaleTasks
from taskleak.tracking.loss_events import LossEvent

INTERVAL = 10.0  # seconds per sample, as in production
DAY = int(86400 / INTERVAL)
FLOORS = [_core.age_bucket_floor_ms(b) for b in range(_core.AGE_BUCKETS)]


def bucket(ms: float) -> int:
    return max(0, bisect.bisect_right(FLOORS, ms) - 1)


def hist(ages_ms: list[float]) -> bytes | None:
    if not ages_ms:
        return None
    a = array.array("I", [0] * _core.AGE_BUCKETS)
    for ms in ages_ms:
        a[bucket(ms)] += 1
    return a.tobytes()


@dataclass
class Group:
    """Live tasks of one creation site: (created_s, ends_s) pairs, and the
    ones seen pending at the previous sample (their lifetimes are reported
    when they end, as the native count does)."""

    tasks: list[tuple[float, float]] = field(default_factory=list)
    seen: set[tuple[float, float]] = field(default_factory=set)

    def sample(self, now: float) -> tuple[bytes | None, bytes | None, float | None, int]:
        live, gone = [], []
        for t in self.tasks:
            (live if t[1] > now else gone).append(t)
        lifetimes = [(now - c) * 1000 for c, e in gone if (c, e) in self.seen]
        self.tasks = live
        self.seen = set(live)
        oldest = max(((now - c) * 1000 for c, _ in live), default=None)
        return hist([(now - c) * 1000 for c, _ in live]), hist(lifetimes), oldest, len(live)


class Service:
    """A service's task groups, per sample, from time ``t0`` (seconds into
    the daily cycle): requests (rate follows the day, 0.2 to 1.8 a second,
    each 50 ms to 2 s: visible only when one spans a sample), keep-alive
    connections (about 60 open at the day's mean, each living an
    exponential 30 minutes; at start, 60 clients reconnect at once) and a
    burst of 100 slow jobs (1 to 3 minutes each) every 2 hours."""

    def __init__(self, rnd: random.Random, t0: float) -> None:
        self.rnd, self.t0 = rnd, t0
        self.groups = {"requests": Group(), "connections": Group(), "jobs": Group()}
        self.groups["connections"].tasks = [(0.0, rnd.expovariate(1 / 1800)) for _ in range(60)]

    def load(self, now: float) -> float:
        return 1.0 + 0.8 * math.sin(2 * math.pi * (self.t0 + now) / 86400)

    def step(self, k: int) -> float:
        """Tasks created during sample interval k; returns the sample's time."""
        rnd, start = self.rnd, k * INTERVAL
        lam = self.load(start)
        for _ in range(_poisson(rnd, lam * INTERVAL)):
            c = start + rnd.random() * INTERVAL
            self.groups["requests"].tasks.append((c, c + rnd.uniform(0.05, 2.0)))
        for _ in range(_poisson(rnd, lam * INTERVAL * 60 / 1800)):
            c = start + rnd.random() * INTERVAL
            self.groups["connections"].tasks.append((c, c + rnd.expovariate(1 / 1800)))
        if int(self.t0 + start) // 7200 != int(self.t0 + start + INTERVAL) // 7200:
            for _ in range(100):
                c = start + rnd.random() * INTERVAL
                self.groups["jobs"].tasks.append((c, c + rnd.uniform(60, 180)))
        return start + INTERVAL


def _poisson(rnd: random.Random, lam: float) -> int:
    n, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rnd.random()
        if p <= limit:
            return n
        n += 1


def run(rnd: random.Random, samples: int, t0: float, leak: str | None = None) -> dict[str, object]:
    """One process life of ``samples`` samples. Returns the first alert per
    signal (sample index) and the alert counts."""
    svc = Service(rnd, t0)
    stale = StaleTasks(INTERVAL)
    lost = LostTasks(30)
    done = taskleak.Detector(horizon=DAY)
    count_rule = taskleak.Detector(horizon=DAY)
    leaked = Group()
    first: dict[str, int] = {}
    counts = {"stale": 0, "lost": 0, "done_retained": 0, "pending (count rule)": 0}
    retained = 0
    for k in range(samples):
        now = svc.step(k)
        if leak in ("held", "slow-held") and k % (2 if leak == "held" else 20) == 0:
            c = k * INTERVAL + rnd.random() * INTERVAL
            leaked.tasks.append((c, math.inf))
        pending = 0
        for name, g in list(svc.groups.items()) + ([("leak", leaked)] if leaked.tasks else []):
            ages, lifetimes, oldest, n = g.sample(now)
            pending += n
            stale.observe(name, ages, lifetimes, oldest)
        for _label, _v in stale.detect(set()):
            counts["stale"] += 1
            first.setdefault("stale", k)
        events = []
        if leak == "lost" and k % 2 == 0:
            events.append(LossEvent("destroyed-pending", "t", "lost_one", None, [], "Future", time=float(k)))
        if lost.update(events):
            counts["lost"] += 1
            first.setdefault("lost", k)
        if leak == "done-retained" and k % 2 == 0:
            retained += 1
        if done.update(retained + rnd.randint(0, 3)) is not None:
            counts["done_retained"] += 1
            first.setdefault("done_retained", k)
        if count_rule.update(pending) is not None:
            counts["pending (count rule)"] += 1
            first.setdefault("pending (count rule)", k)
    return {"first": first, "counts": counts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--trials", type=int, default=5, help="runs per leak shape (random phase each)")
    a = ap.parse_args()
    rnd = random.Random(a.seed)

    print(f"Time to alert, samples from process start (10 s samples; {a.trials} runs at random phases of the day):")
    print("| leak shape | signal | first alert, samples (min / median / max) |")
    print("|---|---|---|")
    shapes = [
        ("held, 1 task / 2 samples", "held", "stale", 400),
        ("slow held, 1 task / 20 samples", "slow-held", "stale", 2000),
        ("lost to the collector, 1 task / 2 samples", "lost", "lost", 100),
        ("done-retained, 1 task / 2 samples", "done-retained", "done_retained", 400),
    ]
    for title, shape, signal, n in shapes:
        ats = []
        for _ in range(a.trials):
            r = run(rnd, n, rnd.uniform(0, 86400), shape)
            ats.append(r["first"].get(signal))  # type: ignore[union-attr]
        got = sorted(x for x in ats if x is not None)
        missed = len(ats) - len(got)
        span = f"{got[0]} / {got[len(got) // 2]} / {got[-1]}" if got else "none"
        if missed:
            span += f" ({missed} of {len(ats)} never)"
        print(f"| {title} | {signal} | {span} |")

    print()
    print(f"False alarms over {a.days} simulated days (daily cycle, restart each day at a random phase):")
    totals: dict[str, int] = {}
    for _ in range(a.days):
        r = run(rnd, DAY, rnd.uniform(0, 86400))
        for k, v in r["counts"].items():  # type: ignore[union-attr]
            totals[k] = totals.get(k, 0) + v
    print("| signal | alerts in 7 days |".replace("7", str(a.days)))
    print("|---|---|")
    for k in ("stale", "lost", "done_retained", "pending (count rule)"):
        page = "" if k != "pending (count rule)" else " (not in the default pager)"
        print(f"| {k}{page} | {totals[k]} |")


if __name__ == "__main__":
    main()
