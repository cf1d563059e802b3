"""Async generators that were never closed.

When an unfinished async generator is dropped, asyncio's finalizer hook
schedules ``aclose()`` on its loop as a task (coroutine
``async_generator_athrow``). A test that closes its hand-made loop without
``loop.shutdown_asyncgens()`` leaves that task pending, and it is destroyed
with the loop: the generator's ``finally`` never ran. That is the user's
generator left open, not a task the user made, so it is reported as such -
where the generator was suspended (its own frame) and how to close it - and
never as a task leak.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..frame import Frame, creation_site
from ..model.text import plural
from .advice import ADVICE

__all__ = ["ATHROW", "is_asyncgen_event", "generator_lines", "generator_name", "format_unclosed_asyncgens"]

#: The coroutine type of asyncio's aclose() task for an abandoned generator.
ATHROW = "async_generator_athrow"


def is_asyncgen_event(event: Any) -> bool:
    """A loss event (or Leak-like record) of asyncio's aclose() task destroyed
    before it ran: an async generator never closed."""
    return getattr(event, "kind", None) == "destroyed-pending" and getattr(event, "coro", None) == ATHROW


def generator_frame(stack: Sequence[Frame]) -> Frame | None:
    """The generator's own frame: the outermost frame the aclose() task's
    await chain reaches (the task's coroutine is the generator's athrow)."""
    return stack[0] if stack else None


def generator_lines(stack: Sequence[Frame], created_at: Sequence[Frame] | None, indent: str = "  ") -> list[str]:
    """What is known of one unclosed generator: where it is suspended (its
    own frame), and what was running when it was dropped (the creation
    site of asyncio's aclose() task)."""
    f = generator_frame(stack)
    out = [f"{indent}suspended at: {f.short()}" if f is not None else f"{indent}(its frame is gone)"]
    site = creation_site(list(created_at)) if created_at else []
    if site:
        out.append(f"{indent}dropped unfinished while running: {site[0].short()}")
    out.append(
        f"{indent}asyncio's aclose() task for it was destroyed pending "
        "(its loop was closed without loop.shutdown_asyncgens())"
    )
    return out


def generator_name(stack: Sequence[Frame]) -> str:
    f = generator_frame(stack)
    return f"{f.function}()" if f is not None else "async generator"


def format_unclosed_asyncgens(events: Sequence[Any]) -> str:
    """For ``taskleak run``'s report: `events` (loss events of aclose()
    tasks) grouped by the generator's frame."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for e in events:
        groups.setdefault((tuple(e.stack[:1]), tuple(creation_site(e.created_at or [])[:1])), []).append(e)
    out = [f"== {plural(len(events), 'async generator')} never closed (their finally blocks never ran) =="]
    for g in sorted(groups.values(), key=len, reverse=True):
        out.append("")
        out.append(f"{plural(len(g), 'async generator')}, {generator_name(g[0].stack)}")
        out += generator_lines(g[0].stack, g[0].created_at)
    out.append("")
    out.append(f"Fix: {ADVICE['asyncgen']}")
    return "\n".join(out)
