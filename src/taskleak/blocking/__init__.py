"""Blocked event loops: the watchdog, its episodes and how they read.

``watchdog`` (watch_blocking(), block_episodes(): a native thread that needs
no GIL notices a loop stuck longer than a threshold and samples where it is
stuck), ``episode`` (Episode: one stall, its duration and sampled stacks),
``text`` (episodes in words and as JSON-able dicts). The front ends glue it in:
``testing/loop_blocked.py`` (check(blocking=)), ``testing/pytest_blocking.py``
(--taskleak-blocking), the monitor's exporters and the live endpoint. See
docs/blocking.md. Imports only ``taskleak._core`` and the primitives.
"""

from .episode import Episode
from .watchdog import Watch, block_episodes, watch_blocking

__all__ = ["Episode", "Watch", "block_episodes", "watch_blocking"]
