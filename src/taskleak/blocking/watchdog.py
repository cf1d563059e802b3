"""Blocked event loops: the Python side of the native watchdog.

How a loop's heartbeat tells "waiting for I/O" from "blocked":

* selector loops (asyncio's default): ``_run_once`` calls
  ``loop._selector.select()`` once per iteration, which waits in the poll
  object's ``poll()`` (epoll on Linux). A C++ stand-in for that poll object
  (``PollerHeartbeat``) publishes IDLE on entering ``poll()`` (however long
  the wait, an idle loop is never flagged) and BUSY with a timestamp on
  leaving it. BUSY for longer than the threshold is a block, measured from
  the end of one poll() to the start of the next. Selectors without a poll
  object get a wrapper of ``select()`` itself (``SelectHeartbeat``, ~4x the
  per-iteration cost: it re-enters the interpreter).
* other loops (uvloop, whose selector is libuv's, in C): a periodic beat
  (``call_later``) stamps the heartbeat every ``period`` seconds; a beat
  later than ``threshold + period`` is a block, and its duration is how late
  the next beat came.
* a loop that is not running is STOPPED: asyncio loops are seen starting and
  stopping through ``asyncio.events._set_running_loop``, uvloop loops
  through ``run_forever``.

The watchdog thread (C++, ``src/core/watchdog/``) never takes the GIL: it
notices a stale heartbeat and samples the loop thread's Python stack every
``interval`` even while C code holds the GIL (a regex, a sort). When the
loop resumes, its own thread renders the episode and hands it to this module
(:func:`_on_episode`).
"""

from __future__ import annotations

import asyncio
import asyncio.events
import atexit
import collections
import dataclasses
import itertools
import os
import selectors
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import taskleak._core as _core

from ..frame import library_paths
from ..loop_label import loop_label
from ..tracking.installer import add_adopt_listener, adopted_loops, remove_adopt_listener
from .episode import IN_PROGRESS, SCOPE_EXIT, Episode, episode_from_raw

if TYPE_CHECKING:
    from .._core import RawEpisode

__all__ = [
    "DEFAULT_THRESHOLD",
    "Watch",
    "watch_blocking",
    "block_episodes",
    "clear_block_episodes",
    "blocked_totals",
    "BlockTotals",
    "watchdog_status",
    "is_watching",
    "add_change_listener",
    "remove_change_listener",
    "blocked_now",
    "episodes_in_progress",
    "loop_gauges",
    "end_episode_here",
]

DEFAULT_THRESHOLD = 0.1
SAMPLE_INTERVAL = 0.01  # the watchdog's tick: staleness check and stack sample
MAX_EPISODES = 1000  # kept for block_episodes(); totals count every one

_lock = threading.RLock()
_watches: dict[int, float] = {}  # live Watch id -> threshold
_watch_ids = itertools.count(1)
_tokens = itertools.count(1)
_episodes: collections.deque[Episode] = collections.deque(maxlen=MAX_EPISODES)
_episodes_lock = threading.RLock()  # re-entered when a loop dies (finalizer) mid-read
_stacks_ok = False


@dataclass
class _Watched:
    token: int
    slot: int
    gen: int
    name: str
    beats: bool  # periodic beat instead of a select hook
    selector: Any = None  # the selector carrying our select wrapper
    beat_handle: Any = None
    active_thread: int | None = None
    finalizer: Any = None


_loops: weakref.WeakKeyDictionary[Any, _Watched] = weakref.WeakKeyDictionary()

# Selectors that wait in `self._selector.poll()` of one of these poll objects.
_POLLER_SELECTORS = tuple(
    getattr(selectors, n) for n in ("EpollSelector", "PollSelector", "DevpollSelector") if hasattr(selectors, n)
)
_POLLERS = tuple(
    getattr(__import__("select"), n) for n in ("epoll", "poll", "devpoll") if hasattr(__import__("select"), n)
)
_names: dict[int, str] = {}  # token -> loop label, while the loop is watched
# loop label -> [blocks, blocked seconds], for the most recent labels that blocked.
# Keyed by the stable label (loop_label.py), so a thread's new loop adds to
# the same counters as the one it replaced: one series across restarts.
_per_loop: collections.OrderedDict[str, list[Any]] = collections.OrderedDict()
MAX_LOOPS_TOTALLED = 256
_active = threading.local()  # .watched: the _Watched running in this thread; .cutting: see end_episode_here
# Called (no argument, must be cheap and never raise) when what /api/blocked
# shows changed: an episode was recorded, watching started or stopped.
_change_listeners: list[Any] = []
_hook: Any = None  # our current asyncio.events._set_running_loop wrapper
_saved_uvloop_run_forever: Any = None


# ---- episodes --------------------------------------------------------------


def _thread_name(ident: int) -> str:
    t = threading._active.get(ident)  # type: ignore[attr-defined]
    return t.name if t is not None else f"thread {ident}"


def _on_episode(raw: RawEpisode) -> None:
    """The sink the C++ core calls with each rendered episode (any thread,
    GIL held, never from inside the watchdog thread)."""
    token = raw[1]
    cutting = getattr(_active, "cutting", None)
    ep = episode_from_raw(
        raw,
        _names.get(token, f"loop #{token}"),
        _thread_name(raw[2]),
        _core.watchdog_now_ns(),
        time.time(),
        loop_id=token,
    )
    if cutting is not None and token == cutting and ep.ended == "loop stopped":
        ep = dataclasses.replace(ep, ended=SCOPE_EXIT)
    with _episodes_lock:
        _episodes.append(ep)
        tot = _per_loop.get(ep.loop)
        if tot is None:
            tot = _per_loop[ep.loop] = [0, 0.0]
            while len(_per_loop) > MAX_LOOPS_TOTALLED:
                _per_loop.popitem(last=False)
        tot[0] += 1
        tot[1] += ep.duration
    _notify_change()


def _notify_change() -> None:
    for fn in list(_change_listeners):
        try:
            fn()
        except Exception:
            pass


def add_change_listener(fn: Any) -> None:
    """Call ``fn()`` whenever an episode is recorded or watching starts or
    stops (the live endpoint re-renders its cached /api/blocked then)."""
    _change_listeners.append(fn)


def remove_change_listener(fn: Any) -> None:
    try:
        _change_listeners.remove(fn)
    except ValueError:
        pass


def block_episodes(since: int | None = None) -> list[Episode]:
    """Episodes of blocked event loops recorded so far (the most recent
    1000), oldest first. ``since``: only episodes whose ``seq`` is greater.
    Empty unless the watchdog runs (:func:`watch_blocking`, ``check(blocking=)``,
    ``taskleak run --blocking``)."""
    _core.watchdog_collect()
    with _episodes_lock:
        eps = list(_episodes)
    if since is not None:
        eps = [e for e in eps if e.seq > since]
    return eps


def clear_block_episodes() -> None:
    """Forget the recorded episodes (totals keep counting)."""
    _core.watchdog_collect()
    with _episodes_lock:
        _episodes.clear()


@dataclass(frozen=True)
class BlockTotals:
    """Cumulative counts since the process started watching: what the
    monitor exports as ``taskleak_event_loop_blocks_total`` and
    ``taskleak_event_loop_blocked_seconds_total``. ``per_loop`` maps a loop's
    stable label (the name of its thread, ``MainThread``; see loop_label.py)
    to ``(blocks, blocked_seconds)`` for the 256 most recent labels that blocked;
    ``blocks`` and ``blocked_seconds`` count every episode of every loop since
    the process started watching and never decrease."""

    blocks: int
    blocked_seconds: float
    per_loop: dict[str, tuple[int, float]]


def blocked_totals() -> BlockTotals:
    _core.watchdog_collect()
    st = _core.watchdog_stats()
    with _episodes_lock:
        per = {name: (int(v[0]), float(v[1])) for name, v in _per_loop.items()}
    return BlockTotals(st["blocks"], st["blocked_seconds"], per)


class WatchdogStatus(TypedDict):
    """What :func:`watchdog_status` returns (a plain dict)."""

    running: bool
    threshold: float  # seconds a loop may stay busy
    interval: float  # seconds between the watchdog's checks
    stacks: str  # how stacks are read ("debug-offsets via process_vm_readv", ...)
    blocks: int
    blocked_seconds: float
    dropped: int
    samples: int
    loops: list[str]  # the watched loops' names


def watchdog_status() -> WatchdogStatus:
    """running, threshold, interval, how stacks are read ("debug-offsets via
    process_vm_readv", ...), totals, samples taken, watched loops."""
    st = _core.watchdog_stats()
    with _lock:
        loops = [w.name for w in list(_loops.values())]
    return WatchdogStatus(**st, loops=loops)


def blocked_now() -> tuple[list[dict[str, Any]], str]:
    """The episodes in progress right now (a loop blocked at this moment):
    their duration so far, the stacks sampled so far and the line, as
    /api/blocked's ``in_progress`` shows them, and one line of text
    ("MainThread blocked for 8.2 s at app.py:41 in handler (re.match)", or "").
    Read from the watchdog's copies without the loop's help."""
    import json

    doc, text = _core.live_blocked_now()
    return json.loads(doc), text


def episodes_in_progress() -> list[Episode]:
    """The episodes still going on now, each as an :class:`Episode` whose
    ``duration`` is the time so far and ``ended`` is IN_PROGRESS (the
    stacks sampled so far; ``seq`` is the one it will be recorded with).
    Read from the watchdog's copies: the loops need not run."""
    now_ns, now_wall = _core.watchdog_now_ns(), time.time()
    out = []
    for raw in _core.watchdog_open_episodes():
        ep = episode_from_raw(
            raw, _names.get(raw[1], f"loop #{raw[1]}"), _thread_name(raw[2]), now_ns, now_wall, loop_id=raw[1]
        )
        out.append(dataclasses.replace(ep, ended=IN_PROGRESS))
    return out


def loop_gauges() -> list[tuple[str, bool, float]]:
    """Each watched loop now, one per stable label, sorted: ``(label,
    blocked now, seconds blocked so far)`` - what /metrics' live gauges
    show. Read from the watchdog's slots without the loops' help."""
    return _core.live_loop_gauges()


def is_watching() -> bool:
    return bool(_watches)


# ---- loops -------------------------------------------------------------------


def _period(threshold: float) -> float:
    return min(0.05, max(0.005, threshold / 4))


def _release(w: _Watched) -> None:
    """The loop is gone or unwatched: free its slot (closing any episode in
    progress) and deliver what it recorded while its name is known."""
    try:
        _core.watchdog_release(w.slot, w.gen)
        _core.watchdog_collect()
    except Exception:
        pass
    _names.pop(w.token, None)


def _attach(loop: Any) -> _Watched | None:
    """The record of `loop`, creating it (and hooking its selector) if new."""
    w = _loops.get(loop)
    if w is not None:
        return w
    token = next(_tokens)
    slot, gen = _core.watchdog_acquire(token)
    name = loop_label(loop, threading.current_thread().name)  # runs on the loop's thread
    _names[token] = name
    sel = getattr(loop, "_selector", None)
    w = _Watched(token, slot, gen, name, beats=True)
    if isinstance(sel, _POLLER_SELECTORS) and type(getattr(sel, "_selector", None)) in _POLLERS:
        sel._selector = _core.PollerHeartbeat(sel._selector, slot, gen)
        w.beats = False
        w.selector = sel
    elif isinstance(sel, selectors.BaseSelector) and hasattr(sel, "__dict__") and "select" not in sel.__dict__:
        sel.select = _core.SelectHeartbeat(sel.select, slot, gen)  # type: ignore[method-assign]
        w.beats = False
        w.selector = sel
    try:
        w.finalizer = weakref.finalize(loop, _release, w)
    except TypeError:  # a loop without weak references: released at unwatch
        pass
    _loops[loop] = w
    return w


def _detach(loop: Any, w: _Watched) -> None:
    sel = w.selector
    if sel is not None:
        poller = getattr(sel, "_selector", None)
        if isinstance(poller, _core.PollerHeartbeat):
            sel._selector = poller.__wrapped__
        if isinstance(sel.__dict__.get("select"), _core.SelectHeartbeat):
            del sel.select
    _cancel_beat(w)
    if w.finalizer is not None:
        w.finalizer.detach()
    _release(w)


def _cancel_beat(w: _Watched) -> None:
    h, w.beat_handle = w.beat_handle, None
    if h is not None:
        try:
            h.cancel()
        except Exception:
            pass


def _schedule_beat(loop: Any, w: _Watched, period: float) -> None:
    def beat() -> None:
        if w.beat_handle is None:
            return
        _core.watchdog_beat(w.slot, w.gen)
        w.beat_handle = loop.call_later(period, beat)

    w.beat_handle = loop.call_soon(beat)


def _loop_started(loop: Any) -> None:
    """`loop` starts running in this thread."""
    with _lock:
        if not _watches:
            return
        w = _attach(loop)
        if w is None:
            return
        period = _period(min(_watches.values())) if w.beats else 0.0
        _core.watchdog_activate(w.slot, w.gen, threading.get_ident(), period)
        # Names for answers given while this loop is stuck (no Python then).
        _core.watchdog_set_names(w.slot, w.gen, w.name, threading.current_thread().name)
        w.active_thread = threading.get_ident()
        _active.watched = w
        if w.beats:
            _cancel_beat(w)
            _schedule_beat(loop, w, period)


def end_episode_here() -> None:
    """End, now, the episode in progress of the loop running in this thread
    (if it is watched and blocked past the threshold), and deliver it.

    A scope that exits in the same loop iteration as its last block (the
    body's last statement blocks, and no await follows) would otherwise
    leave the episode open: the loop has not returned to poll() yet, so
    nothing has closed it. The loop is marked stopped and running again at
    once (the watchdog's slot API has no other way to close an episode from
    the loop thread); the episode ends here, with ``ended == "scope exit"``,
    so the scope's own exit work never counts, and the loop's next block is
    measured from now. A loop with no episode open is only re-stamped busy
    from now. No-op outside a watched running loop."""
    w = getattr(_active, "watched", None)
    if w is None or w.active_thread != threading.get_ident():
        return
    with _lock:
        if not _watches:
            return
        period = _period(min(_watches.values())) if w.beats else 0.0
        _active.cutting = w.token
        try:
            _core.watchdog_deactivate(w.slot, w.gen)  # closes an open episode and delivers it
        finally:
            _active.cutting = None
            _core.watchdog_activate(w.slot, w.gen, threading.get_ident(), period)


def _loop_stopped() -> None:
    """The loop running in this thread stopped."""
    w = getattr(_active, "watched", None)
    if w is None:
        return
    _active.watched = None
    w.active_thread = None
    _cancel_beat(w)
    _core.watchdog_deactivate(w.slot, w.gen)


def _make_set_running_loop_hook(previous: Any) -> Any:
    """A wrapper of asyncio.events._set_running_loop (asyncio's loops call it
    when they start and stop running). Each is a closure over what it wraps:
    taskleak's installer wraps the same function, and either may be undone
    first, so a hook can end up wrapped twice (harmless: both notifications
    are idempotent) but never calls itself."""

    def _set_running_loop(loop: Any) -> None:
        previous(loop)
        try:
            if loop is None:
                _loop_stopped()
            else:
                _loop_started(loop)
        except Exception:  # never break the loop's start or stop
            pass

    _set_running_loop._taskleak_watchdog = True  # type: ignore[attr-defined]
    _set_running_loop.__wrapped__ = previous  # type: ignore[attr-defined]
    return _set_running_loop


def _patch_uvloop() -> None:
    """uvloop sets its running loop from C (a binding taken at import): see
    its runs through run_forever, which run_until_complete calls by name."""
    global _saved_uvloop_run_forever
    uvloop = sys.modules.get("uvloop")
    cls = getattr(uvloop, "Loop", None)
    if cls is None or _saved_uvloop_run_forever is not None:
        return
    original = cls.run_forever

    def run_forever(self: Any) -> Any:
        try:
            _loop_started(self)
        except Exception:
            pass
        try:
            return original(self)
        finally:
            try:
                _loop_stopped()
            except Exception:
                pass

    run_forever._taskleak_original = original  # type: ignore[attr-defined]
    cls.run_forever = run_forever
    _saved_uvloop_run_forever = original


def _unpatch_uvloop() -> None:
    global _saved_uvloop_run_forever
    cls = getattr(sys.modules.get("uvloop"), "Loop", None)
    if cls is not None and _saved_uvloop_run_forever is not None:
        if getattr(cls.run_forever, "_taskleak_original", None) is _saved_uvloop_run_forever:
            cls.run_forever = _saved_uvloop_run_forever
    _saved_uvloop_run_forever = None


def _start() -> None:
    global _hook, _stacks_ok
    threshold = min(_watches.values())
    _core.watchdog_set_sink(_on_episode)
    _core.live_set_library_paths(*library_paths(), os.getcwd() + os.sep)
    _stacks_ok = _core.watchdog_start(threshold, SAMPLE_INTERVAL)
    _ensure_hooks()
    _watch_running_loop()
    add_adopt_listener(_watch_from_its_thread)
    _watch_loops_running_elsewhere()


def _watch_running_loop() -> None:
    """Watching starts inside a running loop: watch it from now on."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None and getattr(_active, "watched", None) is None:
        _loop_started(running)


def _watch_from_its_thread(loop: Any) -> None:
    """A loop already running, maybe in another thread, when watching starts
    or when tracking first sees it: the hook on _set_running_loop only sees
    loops that start from now on, so the loop is asked to attach itself from
    its own thread at its next iteration (a block in progress right now is
    not seen; the next one is). Only asyncio's own loops: their stop reaches
    the hook, where uvloop's, set from C, would not, and a watched loop whose
    stop is missed would look blocked for ever."""
    if not isinstance(loop, asyncio.BaseEventLoop) or not loop.is_running():
        return
    w = _loops.get(loop)
    if w is not None and w.active_thread is not None:
        return
    try:
        loop.call_soon_threadsafe(_attach_if_running_here, loop)
    except Exception:  # closed meanwhile
        pass


def _attach_if_running_here(loop: Any) -> None:
    try:
        if asyncio.events._get_running_loop() is loop and getattr(_active, "watched", None) is None:
            _loop_started(loop)
    except Exception:  # a callback on someone else's loop: never raise there
        pass


def _watch_loops_running_elsewhere() -> None:
    for loop in adopted_loops():
        _watch_from_its_thread(loop)


def _ensure_hooks() -> None:
    global _hook
    if _hook is None or asyncio.events._set_running_loop is not _hook:
        # (Re)install: someone may have put the original back over ours.
        _hook = _make_set_running_loop_hook(asyncio.events._set_running_loop)
        asyncio.events._set_running_loop = _hook
    _patch_uvloop()


def _stop() -> None:
    global _hook
    remove_adopt_listener(_watch_from_its_thread)
    _core.watchdog_stop()
    _core.watchdog_collect()
    if _hook is not None and asyncio.events._set_running_loop is _hook:
        asyncio.events._set_running_loop = getattr(_hook, "__wrapped__")
    # else: someone wrapped our hook since; it stays in their chain and does
    # nothing while no Watch is alive.
    _hook = None
    _unpatch_uvloop()
    for loop, w in list(_loops.items()):
        try:
            _detach(loop, w)
        except Exception:
            pass
    _loops.clear()
    _active.watched = None


class Watch:
    """A request to watch for blocked event loops, from :func:`watch_blocking`.
    Use ``.stop()`` or ``with``; the watchdog runs while any Watch is alive,
    at the smallest threshold asked for."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.started_ns = _core.watchdog_now_ns()
        self._id: int | None = next(_watch_ids)
        with _lock:
            first = not _watches
            _watches[self._id] = threshold
            if first:
                _start()
            else:
                _core.watchdog_set_threshold(min(_watches.values()))
                _ensure_hooks()
                _watch_running_loop()
        _notify_change()

    @property
    def stacks_available(self) -> bool:
        """False where this system cannot read another thread's stack (then
        episodes carry durations without stacks)."""
        return _stacks_ok

    def episodes(self) -> list[Episode]:
        """Episodes that began since this Watch started, at least
        ``threshold`` long."""
        return [e for e in block_episodes() if e.start_ns >= self.started_ns and e.duration >= self.threshold]

    def stop(self) -> None:
        """Stop this request (idempotent). The last one stops the thread,
        unhooks the loops and joins the thread."""
        with _lock:
            if self._id is None:
                return
            _watches.pop(self._id, None)
            self._id = None
            if not _watches:
                _stop()
            else:
                _core.watchdog_set_threshold(min(_watches.values()))
        _notify_change()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def validate_threshold(threshold: Any, name: str = "threshold") -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"{name} must be a number of seconds > 0, got {threshold!r}")
    if threshold < 2 * SAMPLE_INTERVAL:
        raise ValueError(
            f"{name} must be at least {2 * SAMPLE_INTERVAL} s (the watchdog samples every "
            f"{SAMPLE_INTERVAL} s), got {threshold!r}"
        )
    return float(threshold)


def watch_blocking(threshold: float = DEFAULT_THRESHOLD) -> Watch:
    """Start noticing event loops blocked for longer than ``threshold``
    seconds (default 0.1), in every thread, from their next run (and the
    loop running here, if any). Episodes go to :func:`block_episodes`.

    Returns a :class:`Watch`; ``watch.stop()`` (or leaving ``with``) ends it.
    Raises ValueError for a threshold below 0.02 s or not a number."""
    return Watch(validate_threshold(threshold))


def _stop_all_at_exit() -> None:
    with _lock:
        if _watches:
            _watches.clear()
            try:
                _stop()
            except Exception:
                pass


def _after_fork_in_child() -> None:
    # The watchdog thread did not survive the fork; the watches did not either.
    # (the C++ state was reset by its own pthread_atfork handler)
    _watches.clear()
    _loops.clear()
    _active.watched = None


atexit.register(_stop_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
