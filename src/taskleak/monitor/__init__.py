"""The production monitor: samples, detectors, allow-list and exporters.

``Monitor`` (monitor.py) samples on a native thread; ``Detector``
(detector.py) is the pure detector over one series; exporters (prometheus.py,
otel.py, jsonl.py) render the families of metrics.py. See docs/monitoring.md.
"""

from .detector import Anomaly, Detector
from .monitor import Monitor
from .sample import Alert, AlertGroup, GroupStat, Sample

__all__ = ["Alert", "AlertGroup", "Anomaly", "Detector", "GroupStat", "Monitor", "Sample"]
