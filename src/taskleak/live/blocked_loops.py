"""What the debug endpoint answers about blocked event loops (``/api/blocked``,
read by the dashboard's "blocked loop" panel and ``taskleak top``): the
native watchdog's totals and its most recent episodes (docs/blocking.md).

Bounded: at most ``MAX_EPISODES`` episodes, the first ``MAX_STACKS`` stacks
of each and ``MAX_FRAMES`` frames of a stack, the ``MAX_LOOPS`` loops that
blocked longest. An episode's stacks carry what a task chain of
``/api/tasks`` carries - file, line and function of each frame, never a
local variable or a line of source - and the endpoint's token and Host
rules apply to this path like to every other.
"""

from __future__ import annotations

import json
from typing import Any

import taskleak._core as _core

from ..blocking import watchdog
from ..blocking.episode import Episode
from ..frame import Frame

__all__ = ["blocked_payload", "blocked_parts", "MAX_EPISODES", "DEFAULT_EPISODES"]

DEFAULT_EPISODES = 20
MAX_EPISODES = 100
MAX_STACKS = 3
MAX_FRAMES = 20
MAX_LOOPS = 20


def _frame(f: Frame) -> dict[str, Any]:
    d = f.to_dict()
    d["short"] = f.short()
    return d


def _episode(ep: Episode) -> dict[str, Any]:
    sampled = sum(s.count for s in ep.stacks)
    return {
        "seq": ep.seq,
        "loop": ep.loop,
        "thread": ep.thread,
        "start": ep.start,
        "duration": ep.duration,
        "threshold": ep.threshold,
        "samples": ep.samples,
        "running": ep.running,
        "ended": ep.ended,
        "in_progress": False,
        "detection_latency": ep.detection_latency,
        "site": None if ep.site is None else _frame(ep.site),
        "stacks": [
            {
                "count": s.count,
                "share": (s.count / sampled) if sampled else None,
                "frames": [_frame(f) for f in s.frames[:MAX_FRAMES]],
                "frames_truncated": max(0, len(s.frames) - MAX_FRAMES),
            }
            for s in ep.stacks[:MAX_STACKS]
        ],
        "stacks_truncated": max(0, len(ep.stacks) - MAX_STACKS),
    }


def blocked_payload(limit: int = DEFAULT_EPISODES) -> dict[str, Any]:
    """The watchdog's state, totals and latest ``limit`` episodes, newest
    first, and the episodes in progress now (``in_progress``: a loop blocked
    at this moment, with its duration so far; ``blocked_now`` says if any).

    ``watching`` is False while nothing asked for the watchdog
    (``taskleak.watch_blocking()``, ``taskleak run --blocking``): then the
    counts say nothing about the loops, and the dashboard says so."""
    limit = max(0, min(int(limit), MAX_EPISODES))
    head, episodes = _recorded(limit)
    now, _text = watchdog.blocked_now()
    return {**head, "episodes": episodes, "blocked_now": bool(now), "in_progress": now}


def blocked_parts() -> tuple[bytes, list[bytes], int, bool, float]:
    """What the native path (src/core/live/) serves as /api/blocked: the head
    members as JSON (no braces), each of the latest ``MAX_EPISODES`` recorded
    episodes as JSON, newest first, and the watchdog's blocks, running and
    threshold they were rendered from (read first: an episode closed
    meanwhile leaves it stale, and Python is asked then). The native side
    appends the episodes in progress."""
    st = _core.watchdog_stats()
    head, episodes = _recorded(MAX_EPISODES)
    members = json.dumps(head, default=str, allow_nan=False)[1:-1].encode()
    return (
        members,
        [json.dumps(e, default=str, allow_nan=False).encode() for e in episodes],
        int(st["blocks"]),
        bool(st["running"]),
        float(st["threshold"]),
    )


def _clean(x: Any) -> Any:
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def _recorded(limit: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    totals = watchdog.blocked_totals()  # delivers closed episodes first
    status = watchdog.watchdog_status()
    episodes = watchdog.block_episodes()
    loops = sorted(totals.per_loop.items(), key=lambda kv: -kv[1][1])[:MAX_LOOPS]
    latest: list[Episode] = episodes[-limit:][::-1] if limit else []
    head = {
        "watching": watchdog.is_watching(),
        "threshold": status.get("threshold") if watchdog.is_watching() else None,
        "stacks": status.get("stacks") if watchdog.is_watching() else None,  # how stacks are read
        "blocks": totals.blocks,
        "blocked_seconds": totals.blocked_seconds,
        "loops": [{"loop": name, "blocks": int(n), "blocked_seconds": float(s)} for name, (n, s) in loops],
        "kept": len(episodes),
    }
    return _clean(head), [_clean(_episode(e)) for e in latest]
