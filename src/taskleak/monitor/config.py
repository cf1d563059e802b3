"""The monitor's settings, validated in one place.

``Monitor(...)``, ``serve(interval=...)``, ``TASKLEAK_MONITOR*`` (autostart)
and ``taskleak run --monitor`` all read their values through
:class:`MonitorConfig` or the checks below, so a value is accepted or refused
the same way whichever door it came in by, with the same message: the
setting's name (as the caller spelt it), the accepted range, the bad value.

One check per kind of value (an amount of seconds, milliseconds or bytes, a
count, a positive factor, a path, a callback); each raises ``ValueError`` (``TypeError`` for a callback, as
before) and never lets infinity, NaN, zero, negatives, bools or absurd sizes
through. Why each bound is where it is sits next to it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from .allowlist import AllowList

__all__ = [
    "MonitorConfig",
    "check_interval",
    "parse_seconds",
    "check_amount",
    "check_count",
    "check_factor",
    "check_path",
    "check_callback",
    "check_flag",
    "MIN_INTERVAL_S",
    "MAX_INTERVAL_S",
    "MAX_WINDOW",
    "MAX_SIGMA",
    "MAX_GROUPS",
    "MAX_HISTORY",
    "MIN_HOLD_MS",
    "MAX_HOLD_MS",
    "MAX_RSS_MIN_RISE",
    "MAX_STACK_DEPTH",
]

# Sampling more often than every millisecond is a busy loop in all but name:
# each sample counts every tracked task with the GIL held (in stretches of
# max_hold_ms), so the monitor would hold the GIL most of the time.
MIN_INTERVAL_S = 0.001
# A day. The detectors learn a daily cycle (their horizon is a day of
# samples), and an alert must arrive within minutes of a leak's start; a
# longer period is almost surely a unit mistake (milliseconds given as
# seconds). Also far inside what the native clock can count (about 146
# years of nanoseconds, src/core/monitor/sampler.cpp).
MAX_INTERVAL_S = 86400.0
# The detector says nothing during its first window (the warm-up) and its
# trend test needs several windows: beyond 10 000 samples (28 hours at the
# default 10 s) a monitor would stay silent for more than a day.
MAX_WINDOW = 10_000
# A spike must clear mean + sigma * stddev: at 100 standard deviations nothing
# a leak does ever clears it, so a larger value is a typo, not a setting.
MAX_SIGMA = 100.0
# Each named group is a few Prometheus series per process; past 1000 a scrape
# carries thousands of series (and the dashboard a list nobody reads).
MAX_GROUPS = 1000
# Samples kept in memory, each with up to max_groups group rows: 100 000 is
# 11 days at the default 10 s, and already hundreds of MB at many groups.
MAX_HISTORY = 100_000
# The GIL hold bound is checked every 256 tasks; below a microsecond it would
# round to 0 ns, which the native count reads as "never let go". Above a
# second every event loop stalls while the monitor counts: that is the stall
# the bound exists to prevent.
MIN_HOLD_MS = 0.001
MAX_HOLD_MS = 1000.0
# The least RSS rise that can alert; at 1 PiB no rise ever could.
MAX_RSS_MIN_RISE = 1 << 50
# Frames kept per creation stack: the native table's limit (taskleak.install).
MAX_STACK_DEPTH = 128


def _is_number(value: Any) -> bool:
    # bool is an int to Python, but Monitor(interval=True) is a mistake.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(x: float) -> str:
    # 86400 rather than 86400.0, 1125899906842624 rather than 1.1259e+15
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def check_amount(name: str, value: Any, lo: float, hi: float, unit: str, *, note: str = "") -> float:
    """An amount of ``unit`` (seconds, milliseconds, bytes): a finite number
    in ``[lo, hi]``, as a float. ``note`` explains ``hi`` in the message."""
    if _is_number(value) and math.isfinite(value) and lo <= value <= hi:
        return float(value)
    why = f" ({note})" if note else ""
    raise ValueError(f"{name} must be a number of {unit} from {_fmt(lo)} to {_fmt(hi)}{why}, got {value!r}")


def check_count(name: str, value: Any, lo: int, hi: int, *, note: str = "") -> int:
    """A count (samples, groups, bytes, frames): an int in ``[lo, hi]``."""
    if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi:
        return value
    why = f" ({note})" if note else ""
    raise ValueError(f"{name} must be an int from {lo} to {hi}{why}, got {value!r}")


def check_factor(name: str, value: Any, hi: float) -> float:
    """A positive real factor (sigma): finite, ``0 < value <= hi``."""
    if _is_number(value) and math.isfinite(value) and 0 < value <= hi:
        return float(value)
    raise ValueError(f"{name} must be a number above 0 and at most {hi:g}, got {value!r}")


def check_path(name: str, value: Any) -> str | None:
    """A file to write to (a str or path object; returned as a str), or None.
    An int would be taken by open() as a file descriptor: refused, like an
    empty name."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, os.PathLike)) and os.fsdecode(value) != "":
        return os.fsdecode(value)
    raise ValueError(f"{name} must be a file path (str or os.PathLike) or None, got {value!r}")


def check_callback(name: str, value: Any) -> Callable[..., Any] | None:
    """A callable or None (a TypeError, as Monitor always raised)."""
    if value is None or callable(value):
        return cast(Callable[..., Any] | None, value)
    raise TypeError(f"{name} must be callable or None, got {value!r}")


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_WITH_UNIT = re.compile(r"(.+?)\s*(ms|s|m|h)", re.IGNORECASE)


def parse_seconds(text: str) -> tuple[float, bool]:
    """``(seconds, unit_given)`` of ``"10s"``, ``"500ms"``, ``"1m"``, ``"2h"``
    or a bare number (seconds, ``unit_given`` False). ValueError when it is
    neither. The range is checked by :func:`check_interval`."""
    v = text.strip()
    m = _WITH_UNIT.fullmatch(v)
    number, unit = (m.group(1), m.group(2).lower()) if m else (v, None)
    seconds = float(number) * (_UNITS[unit] if unit else 1.0)  # ValueError: not a number
    return seconds, unit is not None


def check_flag(name: str, value: Any) -> bool:
    """A switch: True or False, nothing else (1 or "yes" is a mistake)."""
    if isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be True or False, got {value!r}")


def check_interval(name: str, value: Any) -> float:
    """The sampling period in seconds (Monitor, serve, TASKLEAK_MONITOR, --monitor)."""
    return check_amount(name, value, MIN_INTERVAL_S, MAX_INTERVAL_S, "seconds", note="86400 s is a day")


@dataclass(frozen=True)
class MonitorConfig:
    """Every setting of :class:`taskleak.Monitor`, checked on construction.

    Same names and defaults as ``Monitor(...)``; the values are normalised
    (``interval``, ``max_hold_ms`` and ``rss_min_rise`` are floats, ``allow`` an
    :class:`AllowList`, ``detector_options`` a dict). A bad value raises
    ``ValueError`` naming it, its range and the value (``TypeError`` for a
    non-callable ``on_alert`` or a bad allow-list entry).
    ``detector_options`` is checked by :class:`taskleak.Detector` itself.
    """

    interval: float = 10.0
    window: int = 30
    sigma: float = 2.0
    consecutive: int = 3
    allow: AllowList = field(default_factory=AllowList)
    on_alert: Callable[..., Any] | None = None
    max_groups: int = 20
    history: int = 720
    jsonl: str | None = None
    log_alerts: bool = True
    detector_options: Mapping[str, Any] | None = None
    rss_min_rise: float = 64 << 20
    max_hold_ms: float = 0.5
    stack_depth: int = 32
    # The seed's rule on the pending count and each group's count: it follows
    # load (a ramp, a step of connections), so it pages only when asked.
    count_rules: bool = False

    def __post_init__(self) -> None:
        window = check_count("window", self.window, 3, MAX_WINDOW, note="samples")
        values: dict[str, Any] = dict(
            interval=check_interval("interval", self.interval),
            window=window,
            sigma=check_factor("sigma", self.sigma, MAX_SIGMA),
            consecutive=check_count("consecutive", self.consecutive, 1, window, note="at most window"),
            allow=self.allow if isinstance(self.allow, AllowList) else AllowList(self.allow),
            on_alert=check_callback("on_alert", self.on_alert),
            max_groups=check_count("max_groups", self.max_groups, 1, MAX_GROUPS),
            history=check_count("history", self.history, 1, MAX_HISTORY, note="samples"),
            jsonl=check_path("jsonl", self.jsonl),
            detector_options=dict(self.detector_options or {}),
            rss_min_rise=check_amount("rss_min_rise", self.rss_min_rise, 0, MAX_RSS_MIN_RISE, "bytes", note="1 PiB"),
            max_hold_ms=check_amount("max_hold_ms", self.max_hold_ms, MIN_HOLD_MS, MAX_HOLD_MS, "milliseconds"),
            stack_depth=check_count("stack_depth", self.stack_depth, 1, MAX_STACK_DEPTH),
            count_rules=check_flag("count_rules", self.count_rules),
        )
        for k, v in values.items():
            object.__setattr__(self, k, v)  # frozen: normalised once, here

    def detector_args(self) -> dict[str, Any]:
        """Keywords for each :class:`taskleak.Detector` of the monitor."""
        opts = dict(self.detector_options or {})
        # A day of history at this interval: daily cycles are learned.
        opts.setdefault("horizon", max(int(86400 / self.interval), self.window * opts.get("trend_blocks", 6)))
        return dict(window=self.window, sigma=self.sigma, consecutive=self.consecutive, **opts)
