"""taskleak: find leaked asyncio tasks.

For each task: where it was created, where it is suspended, what it waits on.
Start with :func:`install` (cheap, process-wide creation tracking), then take a
:func:`snapshot` and print ``snapshot().format()``.
"""

from __future__ import annotations

import sys as _sys

if getattr(_sys, "_is_gil_enabled", lambda: True)() is False:  # pragma: no cover - 3.13t
    raise ImportError(
        "taskleak does not support free-threaded CPython builds yet (the core relies on the GIL); "
        "use a regular CPython build")

from . import qualname as _qualname
from .check import KINDS, Leak, LeakCheck, TaskLeakError, TaskLeakWarning, check
from .frame import Frame
from .heap import Growth, GrowthRow, HeapIndex, HolderPath, growth, who_holds
from .loss_recorder import LossEvent, clear_loss_events, loss_events
from .snapshot import Snapshot, snapshot
from .task_info import TaskInfo
from .tracking import install, is_installed, status, uninstall
from .dump import dump
from .task_graph import TaskGraph, task_graph
from .wait_target import WaitTarget
from .why import Why, why

_qualname.enable_if_needed()

__version__ = "0.1.0"

__all__ = [
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
]
