"""OpenTelemetry export: observable instruments over a Monitor's latest
sample (``pip install 'taskleak[otel]'``). Instrument names follow the
OpenTelemetry naming rules (dotted, unit apart: ``taskleak.task.count``
with unit ``{task}``); the values are the same families as Prometheus."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .metrics import FamilySource

__all__ = ["instrument"]


def instrument(monitor: FamilySource, meter_provider: Any | None = None) -> list[Any]:
    """Create one observable instrument per metric family on a meter from
    ``meter_provider`` (default: the global one). Gauges become observable
    gauges, counters observable counters. Returns the instruments.

    The blocked-loop counters (``taskleak.event_loop.blocks``,
    ``taskleak.event_loop.blocked.time``) are created whether or not the
    watchdog already watches; they have no data point until it does."""
    try:
        from opentelemetry import metrics
        from opentelemetry.metrics import CallbackOptions, Observation
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "taskleak's OpenTelemetry export needs opentelemetry-api: pip install 'taskleak[otel]'"
        ) from e
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    try:
        from importlib.metadata import version

        ver: str | None = version("taskleak")
    except Exception:
        ver = None
    meter = provider.get_meter("taskleak", ver)

    def callback(name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for f in monitor.metric_families():
                if f.otel_name == name:
                    return [Observation(v, dict(labels)) for labels, v in f.samples]
            return []

        return observe

    # Every instrument is created now, including those without data yet:
    # this runs once (at service start, usually before anything calls
    # watch_blocking()), so the blocked-loop counters are declared whether
    # or not the watchdog already watches. Until it does they observe nothing (no data point,
    # not a misleading 0: no loop was looked at); from then on they report
    # its totals, starting at 0.
    out = []
    for f in monitor.metric_families(declared=True):
        make = meter.create_observable_counter if f.kind == "counter" else meter.create_observable_gauge
        out.append(make(f.otel_name, callbacks=[callback(f.otel_name)], unit=f.unit, description=f.help))
    return out
