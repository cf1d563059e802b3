"""TASKLEAK_MONITOR's value: on/off, an interval with its unit, and a bare
number (read as seconds, with a one-time warning: `1` is on, every 10 s,
while `1.0` would be one second)."""

import os
import subprocess
import sys

import pytest

from taskleak.live import autostart
from taskleak.monitor.config import parse_seconds


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(autostart, "_warned", set())


@pytest.mark.parametrize("value", ["on", "ON", "1", "true", "yes", " on "])
def test_on_is_the_default_interval(value, capsys):
    assert autostart.parse_interval(value) == 10.0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("value", ["", "0", "off", "false", "no"])
def test_off(value):
    assert autostart.parse_interval(value) is None


@pytest.mark.parametrize(
    "value, seconds", [("10s", 10.0), ("500ms", 0.5), ("1m", 60.0), ("1h", 3600.0), ("2.5 s", 2.5), ("1S", 1.0)]
)
def test_an_interval_with_its_unit_is_that_interval_without_a_warning(value, seconds, capsys):
    assert autostart.parse_interval(value) == seconds
    assert capsys.readouterr().err == ""


def test_a_bare_number_is_seconds_with_a_warning_once(capsys):
    assert autostart.parse_interval("1.0") == 1.0
    err = capsys.readouterr().err
    assert "TASKLEAK_MONITOR='1.0' read as every 1 s; write 1s" in err and "a bare 1 means on" in err
    assert autostart.parse_interval("1.0") == 1.0
    assert capsys.readouterr().err == ""  # once
    assert autostart.parse_interval("30") == 30.0
    assert "write 30s" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["often", "10 sec", "s", "1ms5", "10y"])
def test_unreadable_values_say_what_is_accepted(value):
    with pytest.raises(ValueError) as e:
        autostart.parse_interval(value)
    assert str(e.value) == (
        f"TASKLEAK_MONITOR={value!r}: use on (every 10 s), an interval with its unit (30s, 500ms, 1m), or off"
    )


@pytest.mark.parametrize("value", ["0.5ms", "25h", "-1s", "0s"])
def test_units_are_range_checked_as_monitor_does(value):
    with pytest.raises(ValueError) as e:
        autostart.parse_interval(value)
    assert str(e.value).startswith(
        f"TASKLEAK_MONITOR={value!r}: interval must be a number of seconds from 0.001 to 86400"
    )


def test_parse_seconds():
    assert parse_seconds("250ms") == (0.25, True) and parse_seconds("4") == (4.0, False)
    with pytest.raises(ValueError):
        parse_seconds("four")


def run_with(value, tmp_path):
    env = {"TASKLEAK_MONITOR": value, "TASKLEAK_AGENT": "0", "PATH": "/usr/bin:/bin"}
    # Under make test-asan the sanitizer runtime must stay preloaded in the child.
    env.update(
        {k: v for k, v in os.environ.items() if k in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC")}
    )
    code = "import taskleak.live.autostart as a; print(a.monitor.interval if a.monitor else None)"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )


def test_in_a_real_process(tmp_path):
    # The .pth line starts the monitor at interpreter start-up; the program runs either way.
    p = run_with("500ms", tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "0.5" and p.stderr == "", p.stderr
    p = run_with("1.0", tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "1.0"
    assert p.stderr.count("read as every 1 s") == 1, p.stderr
    p = run_with("10 sec", tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "None"
    assert "taskleak: monitor not started: TASKLEAK_MONITOR='10 sec': use on" in p.stderr
