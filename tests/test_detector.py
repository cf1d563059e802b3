"""taskleak.Detector on synthetic series: every behaviour the monitor relies on."""

import math
import os
import random

import pytest

import taskleak
from taskleak import Detector

WEEK = 7 * 24 * 360  # samples at 10 s


def alerts(xs, **kw):
    return Detector(**kw).feed(xs)


def noise(seed, n, level, sd):
    r = random.Random(seed)
    return [level + r.gauss(0, sd) for _ in range(n)]


def test_flat_line_plus_one_is_quiet():
    # On a flat line stddev is 0; the floor and the minimum rise keep 50 -> 51 quiet.
    assert alerts([50] * 200 + [51] * 500) == []


def test_flat_line_step_alerts_once_and_rebaselines():
    xs = [50] * 100 + [80] * 1000 + [120] * 1000
    found = alerts(xs)
    assert [(i, a.kind) for i, a in found] == [(102, "spike"), (1102, "spike")]
    a = found[0][1]
    assert a.mean == 50 and a.value == 80 and 50 < a.threshold < 80


def test_seed_rule_needs_consecutive_samples():
    xs = [100.0] * 50
    xs += [130, 130, 100] * 5 + [100.0] * 50  # two-sample bursts: quiet
    assert alerts(xs) == []
    assert [a.kind for _, a in alerts([100.0] * 50 + [130.0] * 5)] == ["spike"]


def test_seed_rule_alone_never_sees_a_straight_line():
    # The blind spot of mean + 2 sigma: the newest point of a straight line
    # sits at sqrt(3(n+1)/(n-1)) ~ 1.8 (population) standard deviations above
    # the mean of the trailing n, whatever the slope.
    n = 30
    for slope in (0.01, 1.0, 1000.0):
        xs = [slope * i for i in range(n + 1)]
        mean = sum(xs[:n]) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in xs[:n]) / n)
        assert (xs[n] - mean) / sd == pytest.approx(math.sqrt(3 * (n + 1) / (n - 1)), rel=1e-9)
        assert (xs[n] - mean) / sd < 2
    # ... so on a noisy baseline only the trend test sees it (next tests).


def test_steady_linear_leak_under_noise_is_caught_by_the_trend_test():
    r = random.Random(7)
    xs = [1000 + 0.5 * i + r.gauss(0, 30) for i in range(3000)]
    found = alerts(xs)
    assert len(found) == 1, found  # one episode, one alert
    i, a = found[0]
    assert a.kind == "trend" and i < 600
    assert 0.3 < a.slope_per_sample < 0.7


def test_slow_leak_hidden_under_noisy_load():
    # 0.1 task per sample (36 an hour at 10 s) under a stddev of 30.
    r = random.Random(3)
    xs = [1000 + 0.1 * i + r.gauss(0, 30) for i in range(8000)]
    found = alerts(xs)
    assert [a.kind for _, a in found] == ["trend"], found
    assert found[0][0] < 3000


@pytest.mark.once_per_ci
def test_long_stable_run_false_alarm_count():
    """once_per_ci (tests/conftest.py): ten simulated weeks of seeded series
    through the detectors, whose arithmetic is the same on every CPython
    (the shorter series tests below run on every version), so .ci/run runs
    this one on 3.11 and 3.15 only."""
    # One simulated week of a steady jittery series per seed, 10 seeds.
    counts = {"spike": 0, "trend": 0}
    for seed in range(10):
        for _, a in alerts(noise(seed, WEEK, 200, 14)):
            counts[a.kind] += 1
    print(f"false alarms over 10 simulated weeks (sigma=2, consecutive=3): {counts}")
    # The trend test never fires on a stable series; the seed's spike rule
    # (2 sigma, 3 in a row) fires about once a week on Gaussian jitter.
    assert counts["trend"] == 0
    assert counts["spike"] <= 20
    # sigma=3 makes it quiet.
    assert sum(len(alerts(noise(seed, WEEK, 200, 14), sigma=3.0)) for seed in range(10)) == 0


def test_periodic_bursts_returning_to_baseline_are_quiet():
    r = random.Random(1)
    xs = [100 + r.gauss(0, 3) + (80 if i % 20 < 2 else 0) for i in range(20000)]
    assert alerts(xs) == []


def test_sawtooth_batches_are_quiet():
    r = random.Random(2)
    # A batch accumulates for 20 samples, then drains (period shorter than the window).
    xs = [100 + r.gauss(0, 3) + (i % 20) * 5 for i in range(20000)]
    assert alerts(xs) == []


def test_daily_cycle_is_learned_after_one_period():
    r = random.Random(4)
    day = 8640
    xs = [1000 + 300 * math.sin(2 * math.pi * i / day) + r.gauss(0, 20) for i in range(5 * day)]
    found = alerts(xs)
    # The first morning looks like a leak (nothing to compare it with); after
    # one day in the horizon the cycle never alerts again.
    assert all(i < day for i, _ in found), found
    assert len(found) <= 2


def test_leak_on_top_of_a_daily_cycle_is_caught_after_the_first_day():
    r = random.Random(5)
    day = 8640
    xs = [1000 + 300 * math.sin(2 * math.pi * i / day) + r.gauss(0, 20) + 0.02 * i for i in range(4 * day)]
    assert any(i > day for i, a in alerts(xs))


def test_one_alert_per_episode_and_episode_ends():
    d = Detector()
    out = [d.update(x) for x in [100.0] * 50 + [200.0] * 200]
    assert sum(a is not None for a in out) == 1
    assert not d.in_episode  # level again: re-baselined
    assert d.update(200.0) is None


def test_nan_is_ignored_and_bad_arguments_are_refused():
    d = Detector()
    assert d.update(float("nan")) is None and d.count == 0
    with pytest.raises(TypeError):
        d.update("12")
    for kw in (
        {"window": 2},
        {"sigma": 0},
        {"consecutive": 0},
        {"consecutive": 40},
        {"min_rise": -1},
        {"horizon": 10},
        {"window": True},
    ):
        with pytest.raises(ValueError):
            Detector(**kw)


def test_statistics():
    core = taskleak._core.WindowDetector
    assert core.theil_sen_slope([1, 3, 5, 7, 100]) == pytest.approx(2.0)
    assert core.mann_kendall_z([1, 2, 3, 4, 5, 6, 7, 8]) > 3
    assert core.mann_kendall_z([5, 5, 5, 5, 5]) == 0
    assert core.mann_kendall_z([8, 7, 6, 5, 4, 3]) < -2


def test_public_names():
    assert {"Detector", "Anomaly", "Monitor", "Sample", "Alert"} <= set(taskleak.__all__)


# -- stale tasks: the default pager's signal for held tasks (monitor/stale_tasks.py) ------

from taskleak.monitor.stale_tasks import RiseDetector, StaleConfig  # noqa: E402


def _rise_alerts(series):
    det = RiseDetector(StaleConfig())
    return [i for i, x in enumerate(series) if det.update(x) is not None]


def test_rise_detector_ignores_steps_bursts_and_level_series():
    assert _rise_alerts([0] * 50 + [60] * 1400) == []  # connections opened at once, then kept
    assert _rise_alerts(([0] * 90 + [100] * 30) * 12) == []  # bursts of slow tasks
    assert _rise_alerts([0] * 30 + [60] * 100 + [100] * 100 + [140] * 1000) == []  # a few steps
    assert _rise_alerts([7] * 2000) == []


def test_rise_detector_opens_once_on_a_steady_rise_and_closes_when_level():
    leak = [i // 2 for i in range(300)] + [150] * 200
    alerts = _rise_alerts(leak)
    assert len(alerts) == 1 and alerts[0] <= 50, alerts
    det = RiseDetector(StaleConfig())
    for x in leak:
        det.update(x)
    assert not det.in_episode  # level for 200 samples: closed
    slow = [i // 20 for i in range(2000)]  # one task every 20 samples: seen on the longer blocks
    assert len(_rise_alerts(slow)) == 1


def _simulator():
    import runpy

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "sim_detectors.py")
    return runpy.run_path(path, run_name="sim")


def test_daily_cycle_with_connections_and_bursts_raises_no_alert_and_a_held_leak_does():
    """A simulated day (bench/sim_detectors.py, the figures of docs/monitoring.md):
    requests following a daily cycle, keep-alive connections, bursts of slow jobs,
    from a process start at a random phase. The default pager stays quiet; a
    held leak from start is named within 120 samples; the seed's count rule
    (not in the default pager) alarms on the cycle."""
    import random

    sim = _simulator()
    rnd = random.Random(4)
    clean = sim["run"](rnd, sim["DAY"], rnd.uniform(0, 86400))
    assert clean["counts"]["stale"] == clean["counts"]["lost"] == clean["counts"]["done_retained"] == 0, clean
    assert clean["counts"]["pending (count rule)"] > 0, clean
    leak = sim["run"](rnd, 200, rnd.uniform(0, 86400), "held")
    assert leak["first"].get("stale", 999) <= 120, leak


def test_rise_detector_leading_zeros_fast_path_is_exact():
    """Zeros before the first stale task are only counted; the verdicts are
    those of a detector fed every zero."""
    series = [0] * 137 + [i // 2 for i in range(400)]
    fast = RiseDetector(StaleConfig())
    slow = RiseDetector(StaleConfig())
    slow.zeros = -1  # no fast path
    got = [(i, fast.update(x)) for i, x in enumerate(series)]
    want = [(i, slow.update(x)) for i, x in enumerate(series)]
    assert got == want and any(v is not None for _, v in got)
