"""Text and JSON forms of blocked-loop episodes (taskleak.block_episodes())."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..frame import is_library, is_machinery
from .episode import Episode

__all__ = ["format_episode", "format_episodes", "episodes_to_list"]


def _not_user(filename: str) -> bool:
    return is_machinery(filename) or is_library(filename) or filename.startswith("<frozen ")


def format_episode(ep: Episode, max_stacks: int = 3, max_frames: int = 10) -> str:
    """One episode: the line that blocked, for how long, what was running,
    then the sampled stacks (most frequent first, innermost frame first)."""
    where = ep.site.short() if ep.site is not None else "(no stack could be read)"
    lines = [f"event loop blocked for {ep.duration:.3f} s (threshold {ep.threshold:.3f} s) at {where}"]
    # A loop's label is its thread's name unless that thread runs several.
    detail = [f"in thread {ep.thread!r}" if ep.loop == ep.thread else f"loop {ep.loop} in thread {ep.thread!r}"]
    if ep.running:
        detail.append(f"running {ep.running}")
    if ep.ended != "resumed":
        detail.append(f"ended: {ep.ended}")
    lines.append("  " + ", ".join(detail))
    if not ep.stacks:
        if ep.samples:
            lines.append(f"  {ep.samples} sample(s), no Python frame readable")
        return "\n".join(lines)
    sampled = sum(s.count for s in ep.stacks)
    lines.append(f"  {ep.samples} sample(s) while blocked, {len(ep.stacks)} distinct stack(s):")
    for s in ep.stacks[:max_stacks]:
        share = 100.0 * s.count / sampled if sampled else 0.0
        lines.append(f"    {s.count} sample(s) ({share:.0f}%):")
        for f in s.frames[:max_frames]:
            mark = "  " if _not_user(f.filename) else "> "
            lines.append(f"      {mark}{f.short()}")
        if len(s.frames) > max_frames:
            lines.append(f"        ... {len(s.frames) - max_frames} outer frame(s)")
    if len(ep.stacks) > max_stacks:
        rest = sum(s.count for s in ep.stacks[max_stacks:])
        lines.append(f"    ... {len(ep.stacks) - max_stacks} more stack(s), {rest} sample(s)")
    return "\n".join(lines)


def format_episodes(episodes: Sequence[Episode], title: str = "blocked event loops") -> str:
    if not episodes:
        return f"== {title}: none =="
    total = sum(e.duration for e in episodes)
    out = [f"== {title}: {len(episodes)} episode(s), {total:.3f} s in all =="]
    for ep in episodes:
        out.append("")
        out.append(format_episode(ep))
    return "\n".join(out)


def episodes_to_list(episodes: Sequence[Episode]) -> list[dict[str, Any]]:
    return [e.to_dict() for e in episodes]
