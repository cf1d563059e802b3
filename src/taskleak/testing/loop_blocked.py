"""check(blocking=...): fail a scope in which an event loop was blocked.

A :class:`BlockingScope` keeps the watchdog running for the scope (at most
its threshold) and, at the end, returns the episodes that lasted at least the
threshold inside it; :class:`LoopBlockedError` carries them. When
the body ends inside a running loop, :meth:`BlockingScope.body_ended` ends
the episode still in progress there (the body's last statement blocked and
no await followed), so the scope counts it as the pytest option does once
its loop stops. A loop running in another thread (a sync scope in a test
thread, the service's loop on its own) is not the scope's to interrupt: an
episode still in progress there when the body ends counts by its part
inside the scope, read from the watchdog as it stands then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import taskleak._core as _core

from ..blocking import watchdog
from ..blocking.episode import Episode
from ..blocking.text import format_episode

__all__ = ["LoopBlockedError", "BlockingScope", "format_blocked"]


class LoopBlockedError(AssertionError):
    """An event loop was blocked longer than the threshold of
    ``taskleak.check(blocking=...)``; ``.episodes`` lists each block (an
    :class:`~taskleak.Episode`: duration, the line, the sampled stacks)."""

    def __init__(self, message: str, episodes: Sequence[Episode]) -> None:
        super().__init__(message)
        self.episodes: list[Episode] = list(episodes)


def format_blocked(episodes: Sequence[Episode], threshold: float, label: str) -> str:
    n = len(episodes)
    head = (
        f"taskleak: {label}: the event loop was blocked {n} time{'s' if n != 1 else ''} for longer than {threshold:g} s"
    )
    body = "\n\n".join(format_episode(e) for e in episodes)
    hint = (
        "hint: run blocking work with `await asyncio.to_thread(...)` or "
        "`loop.run_in_executor(...)`, or split it with `await asyncio.sleep(0)`"
    )
    return f"{head}\n\n{body}\n\n{hint}"


class BlockingScope:
    """The watchdog side of one check(blocking=threshold) scope."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._watch: watchdog.Watch | None = watchdog.watch_blocking(threshold)
        self._in_progress: list[Episode] | None = None  # at the body's end
        self._body_end_ns: int | None = None  # the watchdog's clock

    def body_ended(self) -> None:
        """The scope's body is over: end the episode in progress on the loop
        running in this thread, if any, and take those still in progress on
        loops in other threads as they stand now, before the scope's own
        exit work (which then never counts)."""
        if self._watch is not None:
            try:
                self._body_end_ns = _core.watchdog_now_ns()
                watchdog.end_episode_here()
                self._in_progress = watchdog.episodes_in_progress()
            except Exception:  # never turn a scope's exit into an error of ours
                pass

    def finish(self) -> list[Episode]:
        """End the scope (idempotent): the episodes it saw, oldest first.

        An episode counts by its part inside the scope: a loop iteration
        that was already busy when the scope was entered (another watch kept
        the loop watched, so its heartbeat predates the scope) and then
        blocked in the body is the body's block, and the busy time before
        the scope is not. Nor is the time after the body's end: a loop in
        another thread may block on while the scope's exit work runs (the
        grace, driving idle loops), and that episode may end and be recorded
        whole before this reads it."""
        w, self._watch = self._watch, None
        if w is None:
            return []
        try:
            start = w.started_ns
            # In progress first, recorded second: an episode that ends in
            # between is in the second (and wins: it is whole).
            going_on = self._in_progress
            if going_on is None:
                going_on = watchdog.episodes_in_progress()
            recorded = watchdog.block_episodes()
            seen = {e.seq for e in recorded}
            out = []
            stop = self._body_end_ns
            for e in recorded + [e for e in going_on if e.seq not in seen]:
                end = e.start_ns + round(e.duration * 1e9)
                if stop is not None:
                    end = min(end, stop)
                if end - max(e.start_ns, start) >= round(self.threshold * 1e9):
                    out.append(e)
            return sorted(out, key=lambda e: e.start_ns)
        finally:
            w.stop()


def validate_blocking(blocking: Any) -> float | None:
    if blocking is None:
        return None
    return watchdog.validate_threshold(blocking, "blocking")
