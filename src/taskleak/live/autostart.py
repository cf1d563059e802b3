"""Start a Monitor at interpreter start-up from the environment, for
services that cannot change their code (as coverage.py does with
``COVERAGE_PROCESS_START``).

The wheel ships ``taskleak-monitor.pth`` in site-packages; Python runs its one
line at every start-up, and that line imports this module only when
``TASKLEAK_MONITOR`` is set (so an unset variable costs a dict lookup).

* ``TASKLEAK_MONITOR=on`` (or ``1``/``true``/``yes``): sample every 10 s;
  an interval with its unit (``30s``, ``500ms``, ``1m``, ``1h``): that
  interval (1 ms to a day, as ``Monitor``); a bare number other than 0 and
  1 is read as seconds, with a warning (``1`` is on, ``1.0`` one second);
  ``0``/``off``/``false``/empty: off.
* ``TASKLEAK_MONITOR_JSONL=/path/samples.jsonl``: append a JSON line per sample.
* ``TASKLEAK_MONITOR_ALLOW="heartbeat*=1,log-flusher"``: allow-list globs,
  each with an optional ``=budget``.
* ``TASKLEAK_MONITOR_PROMETHEUS=1``: register the collector with
  prometheus_client's global registry (the service exposes it as usual).
* The Unix-socket agent starts with the monitor, so ``taskleak ps/top/dump
  PID`` reach the process; ``TASKLEAK_AGENT=0`` leaves it off.

A bad value is reported on stderr and the program runs without a monitor:
start-up never fails because of taskleak.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..monitor.config import check_interval, parse_seconds

__all__ = ["parse_interval", "parse_allow", "start_from_environment", "monitor", "agent"]

monitor: Any | None = None
agent: Any | None = None  # the Unix-socket agent, for `taskleak ps/top/dump PID`

_ON = {"1", "true", "yes", "on"}
_OFF = {"", "0", "false", "no", "off"}


_warned: set[tuple[str, str]] = set()


def parse_interval(value: str, name: str = "TASKLEAK_MONITOR") -> float | None:
    """Seconds between samples, or None for "off". ValueError if unreadable.

    ``on``/``1``/``true``/``yes`` is the default interval (10 s), an interval
    with its unit (``30s``, ``500ms``, ``1m``) that interval. A bare number
    other than 0 and 1 is read as seconds, with a warning on stderr (once per
    value): ``1`` is "on" (10 s) while ``1.0`` would be 1 s, so a bare number
    says less than it seems to; the unit removes the doubt."""
    v = value.strip().lower()
    if v in _OFF:
        return None
    if v in _ON:
        return 10.0
    try:
        seconds, unit_given = parse_seconds(v)
    except ValueError:
        raise ValueError(
            f"{name}={value!r}: use on (every 10 s), an interval with its unit (30s, 500ms, 1m), or off"
        ) from None
    try:
        # The same range and message as Monitor(interval=...), config.py.
        seconds = check_interval("interval", seconds)
    except ValueError as e:
        raise ValueError(f"{name}={value!r}: {e}") from None
    if not unit_given and (name, value) not in _warned:
        _warned.add((name, value))
        print(
            f"taskleak: {name}={value!r} read as every {seconds:g} s; write {seconds:g}s to say so "
            "(a bare 1 means on: every 10 s)",
            file=sys.stderr,
        )
    return seconds


def parse_allow(value: str) -> list[str | dict[str, int]]:
    out: list[str | dict[str, int]] = []
    for item in (x.strip() for x in value.split(",")):
        if not item:
            continue
        glob, sep, budget = item.rpartition("=")
        if sep:
            try:
                out.append({glob: int(budget)})
            except ValueError:
                raise ValueError(f"TASKLEAK_MONITOR_ALLOW: budget of {glob!r} is not an int: {budget!r}") from None
        else:
            out.append(item)
    return out


def start_from_environment(environ: dict[str, str] | None = None) -> Any | None:
    """Start the monitor the environment asks for; return it (or None)."""
    global monitor, agent
    env = os.environ if environ is None else environ
    try:
        interval = parse_interval(env.get("TASKLEAK_MONITOR", ""))
        if interval is None:
            return None
        allow = parse_allow(env.get("TASKLEAK_MONITOR_ALLOW", ""))
        from ..monitor.monitor import Monitor

        mon = Monitor(interval=interval, allow=allow, jsonl=env.get("TASKLEAK_MONITOR_JSONL") or None)
        if parse_interval(env.get("TASKLEAK_MONITOR_PROMETHEUS", ""), "TASKLEAK_MONITOR_PROMETHEUS") is not None:
            from ..monitor.prometheus import register

            register(mon)
        monitor = mon.start()
        from .http_server import start_agent

        agent = start_agent(mon, env)  # never raises; TASKLEAK_AGENT=0 turns it off
        return mon
    except Exception as e:  # never break the program's start-up
        print(f"taskleak: monitor not started: {e}", file=sys.stderr)
        return None


if os.environ.get("TASKLEAK_MONITOR") is not None and monitor is None:
    start_from_environment()
