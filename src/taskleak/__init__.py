"""taskleak: find leaked asyncio tasks.

For each task: where it was created, where it is suspended, what it waits on.
Start with :func:`install` (cheap, process-wide creation tracking), then take a
:func:`snapshot` and print ``snapshot().format()``.

PYTEST_DONT_REWRITE: with ``TASKLEAK_MONITOR`` set, this package is imported
at interpreter start (the .pth hook), before pytest loads taskleak's plugin;
the marker keeps pytest from warning that it cannot rewrite this module
(which has no asserts), a warning that ``-W error`` turns into a failure.
"""

from __future__ import annotations

import sys as _sys

if getattr(_sys, "_is_gil_enabled", lambda: True)() is False:  # pragma: no cover - 3.13t
    raise ImportError(
        "taskleak does not support free-threaded CPython builds yet (the core relies on the GIL); "
        "use a regular CPython build"
    )


from . import tracking as _tracking
from .blocking import Episode, Watch, block_episodes, watch_blocking
from .diagnosis.task_graph import TaskGraph, task_graph
from .diagnosis.why import Why, why
from .frame import Frame
from .heap import Growth, GrowthRow, HeapIndex, HolderPath, who_holds
from .heap.growth import growth
from .live import Server, serve
from .model import Snapshot, TaskInfo
from .model.snapshot import snapshot
from .monitor import Alert, AlertGroup, Anomaly, Detector, GroupStat, Monitor, Sample
from .report import signal_dump as _signal_dump
from .report.dump import dump
from .testing.check import LeakCheck, check
from .testing.leak import KINDS, Leak, TaskLeakError, TaskLeakWarning
from .testing.loop_blocked import LoopBlockedError
from .tracking.installer import is_installed, status
from .tracking.loss_events import LossEvent, clear_loss_events, loss_events
from .tracking.qualname import enable_if_needed as _enable_qualnames
from .wait_target import WaitTarget

_enable_qualnames()


def install(stack_depth: int = 32, dump_signal: int | None = None) -> None:
    """Track the creation of every asyncio Task in this process from now on.

    Idempotent and thread-safe; calling it again only changes ``stack_depth``
    (frames kept per creation stack, 1-128) and, if given, ``dump_signal``.
    Tasks created before install() still appear in snapshots, with "creation
    site unknown".

    ``dump_signal`` (e.g. ``signal.SIGUSR1``): on that signal, write
    :func:`dump` to stderr, like faulthandler - also while the event loop is
    busy or blocked in Python code. Only from the main thread (a ValueError
    otherwise, and for signals that cannot be caught); :func:`uninstall`
    restores the previous handler.
    """
    # Tracking is the lowest layer and knows nothing of reports: the signal
    # dump is composed here, one layer above both.
    if dump_signal is not None:
        _signal_dump.check_dump_signal(dump_signal)
    _tracking.install(stack_depth)
    if dump_signal is not None:
        _signal_dump.set_dump_signal(int(dump_signal))


def uninstall() -> None:
    """Stop recording new tasks (and dumping on a signal). Records of live
    tasks stay until they die; snapshots keep working. Idempotent."""
    _signal_dump.restore_dump_signal()
    _tracking.uninstall()


__version__ = "0.2.0"

__all__ = [
    "Alert",
    "AlertGroup",
    "Anomaly",
    "Detector",
    "GroupStat",
    "Monitor",
    "Sample",
    "Server",
    "serve",
    "KINDS",
    "Leak",
    "LeakCheck",
    "TaskLeakError",
    "TaskLeakWarning",
    "check",
    "Frame",
    "Growth",
    "GrowthRow",
    "HeapIndex",
    "HolderPath",
    "growth",
    "who_holds",
    "LossEvent",
    "Snapshot",
    "TaskInfo",
    "clear_loss_events",
    "install",
    "is_installed",
    "loss_events",
    "snapshot",
    "status",
    "uninstall",
    "dump",
    "task_graph",
    "TaskGraph",
    "WaitTarget",
    "Why",
    "why",
    # blocked event loops (docs/blocking.md)
    "Episode",
    "LoopBlockedError",
    "Watch",
    "block_episodes",
    "watch_blocking",
]
