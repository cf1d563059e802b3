"""Prometheus export: the text exposition (no dependency) and a
``prometheus_client`` collector. Both render :func:`metrics.families`, read
from a :class:`~metrics.FamilySource` (a Monitor).

Names follow Prometheus conventions: base units, ``_total`` counters, no
pid label, and nothing that duplicates prometheus_client's ``process_*``
metrics (RSS is exported by its process collector; the monitor's RSS
detector still watches it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .metrics import FamilySource

__all__ = ["exposition", "TaskleakCollector", "register"]


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v)}.0"
    return repr(float(v))


def exposition(mon: FamilySource, live: bool = True) -> str:
    """Prometheus text format 0.0.4 of the monitor's latest sample (with
    ``live``: and the watched loops' live gauges, read now)."""
    lines = []
    for f in mon.metric_families(live=live):
        lines.append(f"# HELP {f.name} {f.help}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for labels, value in f.samples:
            lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{f.name}{{{lab}}} {_fmt(value)}" if lab else f"{f.name} {_fmt(value)}")
    return "\n".join(lines) + "\n"


class TaskleakCollector:
    """A prometheus_client collector over a :class:`taskleak.Monitor`:
    ``REGISTRY.register(TaskleakCollector(mon))`` (or :func:`register`)."""

    def __init__(self, monitor: FamilySource) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for f in self.monitor.metric_families():
            keys = sorted({k for labels, _ in f.samples for k in labels})
            if f.kind == "counter":
                fam: Any = CounterMetricFamily(f.name[: -len("_total")], f.help, labels=keys)
            else:
                fam = GaugeMetricFamily(f.name, f.help, labels=keys)
            for labels, value in f.samples:
                fam.add_metric([labels.get(k, "") for k in keys], value)
            yield fam


def register(monitor: FamilySource, registry: Any | None = None) -> TaskleakCollector:
    """Register a collector for ``monitor`` with ``registry`` (default:
    prometheus_client's global REGISTRY). ImportError if prometheus_client
    is not installed: ``pip install 'taskleak[prometheus]'``."""
    try:
        from prometheus_client import REGISTRY
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "taskleak's Prometheus collector needs prometheus_client: "
            "pip install 'taskleak[prometheus]' (or use Monitor.metrics_text())"
        ) from e
    c = TaskleakCollector(monitor)
    (registry if registry is not None else REGISTRY).register(c)
    return c
