"""The monitor's settings are validated once (taskleak/monitor/config.py):
Monitor(...), serve(interval=...), TASKLEAK_MONITOR* and `taskleak run
--monitor` all refuse infinity, NaN, zero, negatives, bools and absurd sizes
with a ValueError that names the setting, the value and the accepted range;
the environment path reports it and lets the program run; the native sampler
refuses a period it cannot count."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest

import taskleak
from taskleak import _core
from taskleak.cli.main import main as cli_main
from taskleak.live import autostart
from taskleak.monitor.config import MAX_INTERVAL_S, MIN_INTERVAL_S, MonitorConfig
from taskleak.monitor.monitor import _RUNNING  # every running monitor

INF, NAN = float("inf"), float("nan")

BAD_INTERVALS = [
    INF,
    -INF,
    NAN,
    0,
    0.0,
    -1,
    -0.5,
    True,
    False,
    None,
    "10",
    MAX_INTERVAL_S * 1.001,
    1e9,
    1e300,
    MIN_INTERVAL_S / 2,
    1e-12,
]


@pytest.mark.parametrize("bad", BAD_INTERVALS, ids=repr)
def test_monitor_refuses_a_bad_interval(bad):
    with pytest.raises(ValueError) as e:
        taskleak.Monitor(interval=bad)
    msg = str(e.value)
    assert msg.startswith("interval must be"), msg
    assert repr(bad) in msg and "86400" in msg, msg


@pytest.mark.parametrize("bad", [INF, NAN, 0, -1, True, 1e9], ids=repr)
def test_serve_refuses_a_bad_interval_before_starting_anything(bad):
    before = {m for m in _RUNNING if m.running}
    with pytest.raises(ValueError, match=r"^interval must be"):
        taskleak.serve(interval=bad)
    with pytest.raises(ValueError, match=r"^interval must be"):
        taskleak.serve(unix=True, interval=bad)
    after = {m for m in _RUNNING if m.running}
    assert after == before  # no monitor was started for the refused call


def test_serve_refuses_a_bad_interval_even_with_a_running_monitor():
    # The interval would not be used (serve() answers from the running
    # monitor), but it is still a mistake, and refused.
    with taskleak.Monitor(interval=60) as mon:
        for bad in (INF, NAN, 0, -1):
            with pytest.raises(ValueError, match=r"^interval must be"):
                taskleak.serve(interval=bad)
            with pytest.raises(ValueError, match=r"^interval must be"):
                taskleak.serve(monitor=mon, interval=bad)


def test_the_edges_of_the_interval_range_are_accepted():
    for ok in (MIN_INTERVAL_S, 0.05, 10, MAX_INTERVAL_S):
        m = taskleak.Monitor(interval=ok)
        assert m.interval == float(ok) and type(m.interval) is float
        assert m.config.interval == m.interval
    assert MonitorConfig().interval == 10.0


@pytest.mark.parametrize(
    "field, bad",
    [
        ("window", 2),
        ("window", 10_001),
        ("window", 30.0),
        ("window", True),
        ("window", INF),
        ("sigma", 0),
        ("sigma", -1.0),
        ("sigma", INF),
        ("sigma", NAN),
        ("sigma", 101),
        ("sigma", True),
        ("consecutive", 0),
        ("consecutive", 31),
        ("consecutive", 2.0),
        ("max_groups", 0),
        ("max_groups", 1001),
        ("max_groups", True),
        ("history", 0),
        ("history", 100_001),
        ("history", 1.5),
        ("max_hold_ms", 0),
        ("max_hold_ms", -1),
        ("max_hold_ms", INF),
        ("max_hold_ms", NAN),
        ("max_hold_ms", 1001),
        ("rss_min_rise", -1),
        ("rss_min_rise", INF),
        ("rss_min_rise", 1 << 51),
        ("rss_min_rise", True),
        ("stack_depth", 0),
        ("stack_depth", 129),
        ("stack_depth", True),
        ("jsonl", 42),
        ("jsonl", ""),
    ],
    ids=lambda v: repr(v),
)
def test_monitor_refuses_the_other_bad_settings(field, bad):
    with pytest.raises(ValueError) as e:
        taskleak.Monitor(**{field: bad})
    msg = str(e.value)
    assert msg.startswith(f"{field} must be") and msg.endswith(f"got {bad!r}"), msg


def test_consecutive_is_bounded_by_the_window_given():
    assert taskleak.Monitor(window=5, consecutive=5).config.consecutive == 5
    with pytest.raises(ValueError, match=r"consecutive must be .*at most window.*got 6"):
        taskleak.Monitor(window=5, consecutive=6)


def test_on_alert_and_the_allow_list_keep_their_type_errors():
    with pytest.raises(TypeError):
        taskleak.Monitor(on_alert="page me")
    with pytest.raises(TypeError):
        taskleak.Monitor(allow=[42])
    with pytest.raises(ValueError):
        taskleak.Monitor(allow=[{"x*": -1}])


def test_the_config_is_frozen_and_the_monitor_keeps_its_attributes():
    m = taskleak.Monitor(interval=2, window=5, allow=("heartbeat*",), max_groups=7, log_alerts=False, stack_depth=8)
    cfg = m.config
    with pytest.raises(AttributeError):
        cfg.interval = 1.0  # type: ignore[misc]
    assert (m.interval, m.window, m.max_groups, m.log_alerts, m.stack_depth) == (2.0, 5, 7, False, 8)
    assert m.allow is cfg.allow and m.allow.entries[0].pattern == "heartbeat*"


# -- the environment: reported, and the program runs -----------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "-1", "1e9", "86401", "0.0001", "1e-12"])
def test_env_interval_out_of_range_is_a_value_error_naming_the_variable(value):
    with pytest.raises(ValueError) as e:
        autostart.parse_interval(value)
    msg = str(e.value)
    assert msg.startswith(f"TASKLEAK_MONITOR={value!r}: interval must be"), msg
    assert "86400" in msg


@pytest.mark.parametrize(
    "env",
    [
        {"TASKLEAK_MONITOR": "inf"},
        {"TASKLEAK_MONITOR": "1e9"},
        {"TASKLEAK_MONITOR": "1", "TASKLEAK_MONITOR_ALLOW": "x*=-1"},
    ],
    ids=repr,
)
def test_env_bad_value_warns_and_continues_without_a_monitor(env, capsys):
    assert autostart.start_from_environment(env) is None
    err = capsys.readouterr().err
    assert err.startswith("taskleak: monitor not started: "), err
    assert "Traceback" not in err


def test_env_bad_interval_at_interpreter_start_lets_the_program_run(tmp_path):
    env = dict(os.environ, TASKLEAK_MONITOR="inf")
    p = subprocess.run(
        [sys.executable, "-c", "import taskleak.live.autostart as a; print('ran', a.monitor)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert p.returncode == 0 and p.stdout.strip() == "ran None", p.stdout + p.stderr
    assert "taskleak: monitor not started: TASKLEAK_MONITOR='inf': interval must be" in p.stderr, p.stderr


# -- the command line: argparse-style error, exit 2, no traceback ------------------------


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "1e9", "0.0001"])
def test_run_monitor_bad_interval_is_a_usage_error(value, tmp_path, capsys):
    script = tmp_path / "s.py"
    script.write_text("print('the program ran')\n")
    with pytest.raises(SystemExit) as e:
        cli_main(["run", f"--monitor={value}", str(script)])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert "the program ran" not in out
    assert "usage: taskleak run" in err
    assert "taskleak run: error: --monitor must be" in err and f"got {float(value)!r}" in err, err


def test_run_monitor_inf_end_to_end_exits_2_without_traceback(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("print('the program ran')\n")
    env = dict(os.environ)
    env.pop("TASKLEAK_MONITOR", None)
    p = subprocess.run(
        [sys.executable, "-m", "taskleak", "run", "--monitor", "inf", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert p.returncode == 2, p.stdout + p.stderr
    assert "the program ran" not in p.stdout
    assert "Traceback" not in p.stderr and "--monitor must be" in p.stderr, p.stderr


# -- the native sampler refuses a period it cannot count ---------------------------------


@pytest.mark.parametrize("bad", [INF, -INF, NAN, 0.0, -1.0, 1e300, 1e10, 1e-12], ids=repr)
def test_native_sampler_refuses_a_period_it_cannot_represent(bad):
    calls = []
    with pytest.raises(ValueError, match="interval"):
        _core.Sampler(bad, calls.append)
    assert calls == []


def test_native_sampler_accepts_a_long_period_and_sleeps_through_it():
    # A year is far beyond what the Python side allows but within what the
    # clock can count: one sample at once, then the thread waits (before the
    # fix, an unrepresentable period woke it thousands of times a second).
    calls = []
    s = _core.Sampler(365 * 86400.0, lambda rss, fds, peer_closed: calls.append((rss, fds, peer_closed)))
    s.start()
    try:
        time.sleep(0.3)
    finally:
        s.stop()
    assert s.ticks == 1 and len(calls) == 1
    # The readings it hands over: RSS bytes, open descriptors (stdin,
    # stdout, stderr at least) and sockets in CLOSE_WAIT (none here), all
    # read by the thread without the GIL.
    rss, fds, peer_closed = calls[0]
    assert rss > 1 << 20 and fds >= 3 and peer_closed == 0, calls


def test_monitor_inf_no_longer_spins():
    # Issue 17: Monitor(interval=inf).start() took 720 samples in 0.5 s.
    with pytest.raises(ValueError):
        taskleak.Monitor(interval=INF)
    m = taskleak.Monitor(interval=MAX_INTERVAL_S).start()
    try:
        time.sleep(0.3)
    finally:
        m.stop()
    assert len(m.samples()) == 1
    assert math.isfinite(m.interval)
