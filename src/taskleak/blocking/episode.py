"""What the watchdog records about one blocked stretch of an event loop: an
:class:`Episode` (a value, built from the C++ core's rendered tuple)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..frame import Frame, is_library, is_machinery, user_frame

if TYPE_CHECKING:
    from .._core import RawEpisode

__all__ = ["Episode", "StackSample", "ENDINGS", "SCOPE_EXIT", "IN_PROGRESS"]

# How an episode ended: the loop ran again, the loop stopped running (its
# run_until_complete/run_forever returned), or watching stopped first
# (indexed by the core's end code).
ENDINGS = ("resumed", "loop stopped", "unwatched")
# The loop was still blocked when a check(blocking=...) scope exited inside
# it: the scope ended the episode there (watchdog.end_episode_here).
SCOPE_EXIT = "scope exit"
# Still blocked when a check(blocking=...) scope exited, on a loop running in
# another thread: counted by its part inside the scope, not ended (the loop
# is not the scope's to interrupt).
IN_PROGRESS = "in progress at scope exit"

_ASYNCIO_DIR = os.path.dirname(str(__import__("asyncio").__file__)) + os.sep
_WATCHDOG_FILE = os.sep + os.path.join("taskleak", "tracking", "watchdog.py")

# Frames of the loop itself, between which and the innermost frames the
# callback (a task's step or a plain callback) runs.
_LOOP_MACHINERY = {
    "events.py": {"_run"},
    "base_events.py": {"_run_once", "run_forever", "run_until_complete"},
    "runners.py": {"run"},
}


@dataclass(frozen=True)
class StackSample:
    """One distinct stack seen while the loop was blocked, and how many of
    the watchdog's samples (one every ~10 ms) showed it."""

    count: int
    frames: tuple[Frame, ...]  # innermost first
    coroutine: tuple[bool, ...] = ()  # per frame: a coroutine / async generator frame?

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "frames": [f.to_dict() for f in self.frames]}


@dataclass(frozen=True)
class Episode:
    """The event loop `loop` ran one callback or task step (or one iteration's
    worth of them) for `duration` seconds without returning to its selector:
    nothing else on that loop could run meanwhile.

    ``stacks`` are the loop thread's stacks sampled while it was blocked, most
    frequent first; ``site`` is the innermost frame in user code of the most
    frequent one (the line that blocked), ``running`` the task or callback the
    loop was running. ``detection_latency`` is the time from the start of the
    block to the first stack captured (None if no stack could be read).
    """

    seq: int
    loop: str
    thread: str
    start: float  # wall-clock time (time.time()) the block began
    duration: float  # seconds
    threshold: float  # the watchdog's threshold when it was noticed
    samples: int
    stacks: tuple[StackSample, ...]
    running: str | None
    site: Frame | None
    ended: str  # one of ENDINGS, SCOPE_EXIT or IN_PROGRESS
    detection_latency: float | None = None
    start_ns: int = field(default=0, repr=False, compare=False)  # the watchdog's clock (watchdog_now_ns)
    loop_id: int = field(default=0, repr=False, compare=False)
    # time.monotonic_ns() when the first stack was captured (0: none), for benchmarks
    first_sample_ns: int = field(default=0, repr=False, compare=False)

    def __str__(self) -> str:
        where = self.site.short() if self.site is not None else "(line unknown)"
        return f"event loop blocked for {self.duration:.3f} s at {where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "loop": self.loop,
            "thread": self.thread,
            "start": self.start,
            "duration": self.duration,
            "threshold": self.threshold,
            "samples": self.samples,
            "running": self.running,
            "site": None if self.site is None else self.site.to_dict(),
            "ended": self.ended,
            "detection_latency": self.detection_latency,
            "stacks": [s.to_dict() for s in self.stacks],
        }


def _is_loop_machinery(frame: Frame) -> bool:
    if frame.filename.endswith(_WATCHDOG_FILE):
        # uvloop runs callbacks from C: its run_forever, wrapped by the
        # watchdog (blocking/watchdog.py), is the last Python frame of the loop.
        return frame.function.rsplit(".", 1)[-1] == "run_forever"
    if not frame.filename.startswith(_ASYNCIO_DIR):
        return False
    names = _LOOP_MACHINERY.get(os.path.basename(frame.filename))
    return names is not None and frame.function.rsplit(".", 1)[-1] in names


def running_entry(frames: Sequence[Frame], coroutine: Sequence[bool]) -> str | None:
    """What the loop was running: the frame just inside the loop's own
    machinery (Handle._run / _run_once / a runner), innermost first. uvloop
    runs callbacks from C, so there the runner's frame is the boundary."""
    k = next((i for i, f in enumerate(frames) if _is_loop_machinery(f)), None)
    if k is None or k == 0:
        # No loop frame seen (or the block is inside it): the outermost
        # coroutine frame is a task's, else the outermost frame of user code.
        cands = [i for i, c in enumerate(coroutine) if c]
        if not cands:
            cands = [i for i, f in enumerate(frames) if not is_library(f.filename) and not is_machinery(f.filename)]
        if not cands:
            return None
        k = cands[-1] + 1
    entry = frames[k - 1]
    is_coro = coroutine[k - 1] if k - 1 < len(coroutine) else False
    return f"task {entry.function}()" if is_coro else f"callback {entry.function}()"


def episode_from_raw(
    raw: RawEpisode, loop_name: str, thread_name: str, now_ns: int, now_wall: float, loop_id: int = 0
) -> Episode:
    """An Episode from the tuple taskleak._core renders (watchdog_bindings.cpp)."""
    (
        seq,
        _token,
        _ident,
        start_ns,
        end_ns,
        _detected_ns,
        first_sample_ns,
        threshold_ns,
        samples,
        _other,
        end_kind,
        raw_stacks,
        first_sample_precise_ns,
    ) = raw
    stacks: list[StackSample] = []
    for count, raw_frames in raw_stacks:
        frames = tuple(
            Frame(fn if fn is not None else "<code object gone>", ln, name if name is not None else "?")
            for (fn, ln, name, _c) in raw_frames
        )
        stacks.append(StackSample(int(count), frames, tuple(bool(c) for (_f, _l, _n, c) in raw_frames)))
    stacks.sort(key=lambda s: -s.count)
    top = stacks[0] if stacks else None
    site = user_frame(list(top.frames)) if top is not None else None
    if site is None and top is not None and top.frames:
        site = top.frames[0]
    running = running_entry(top.frames, top.coroutine) if top is not None else None
    latency = (first_sample_ns - start_ns) / 1e9 if first_sample_ns else None
    return Episode(
        seq=int(seq),
        loop=loop_name,
        thread=thread_name,
        start=now_wall - (now_ns - start_ns) / 1e9,
        duration=max(0, end_ns - start_ns) / 1e9,
        threshold=threshold_ns / 1e9,
        samples=int(samples),
        stacks=tuple(stacks),
        running=running,
        site=site,
        ended=ENDINGS[end_kind] if 0 <= end_kind < len(ENDINGS) else "resumed",
        detection_latency=latency,
        start_ns=int(start_ns),
        loop_id=loop_id,
        first_sample_ns=int(first_sample_precise_ns),
    )
