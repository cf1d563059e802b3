"""Event-loop lag: how late a probe callback runs on each loop.

Every sample, each running loop gets one probe through
``call_soon_threadsafe``; the lag is the time from sending it to the loop
running it. A probe still unanswered at the next sample means the loop has
been busy at least that long, and that is reported.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

from ..loop_label import loop_label

__all__ = ["LoopLag"]


class LoopLag:
    def __init__(self) -> None:
        self._sent: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._lag: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def _arrived(self, loop: Any, sent: float) -> None:
        # Runs on the loop's own thread: name the loop there (uvloop keeps
        # no thread id that could be read from outside).
        self._lag[loop] = time.monotonic() - sent
        loop_label(loop, threading.current_thread().name)
        if self._sent.get(loop) == sent:
            del self._sent[loop]

    def tick(self, loops: Iterable[Any]) -> dict[str, float]:
        """Send the next probes; return the lag per loop name."""
        now = time.monotonic()
        out: dict[str, float] = {}
        for loop in list(loops):
            try:
                if loop.is_closed() or not loop.is_running():
                    self._sent.pop(loop, None)
                    continue
                sent = self._sent.get(loop)
                lag = self._lag.get(loop)
                if sent is not None:
                    # Unanswered since the last sample: busy at least this long.
                    lag = max(lag or 0.0, now - sent)
                else:
                    self._sent[loop] = now
                    loop.call_soon_threadsafe(self._arrived, loop, now)
                if lag is not None:
                    out[loop_label(loop)] = lag
            except RuntimeError:  # closed between the check and the call
                continue
        return out
