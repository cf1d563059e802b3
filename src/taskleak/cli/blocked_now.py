"""The "BLOCKED NOW" lines of ``taskleak top`` and ``taskleak dump``: a loop
stuck at this moment, from the agent's /api/blocked (``in_progress``, which
the agent answers natively even while the loop holds the GIL) or, on CPython
3.14+ without an agent, from stacks read from outside (remote_read.py)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["agent_lines", "outside_lines"]


def agent_lines(blocked: dict[str, Any] | None, width: int = 200) -> list[str]:
    """ "BLOCKED NOW 8.2 s at app.py:41 in handler (re.match)  [loop MainThread, 812 samples]"
    per episode in progress in an /api/blocked answer."""
    out = []
    for e in (blocked or {}).get("in_progress") or []:
        where = e["site"]["short"] if e.get("site") else "(line not sampled yet)"
        line = f"BLOCKED NOW {e['duration']:.1f} s at {where}" + (f" ({e['call']})" if e.get("call") else "")
        line += f"  [loop {e['loop']}, {e['samples']} samples]"
        out.append(line[:width])
    return out


def outside_lines(stuck: list[dict[str, Any]], width: int = 200) -> list[str]:
    """The same from remote_read.read_blocked_now (no start time: "at least")."""
    out = []
    for s in stuck:
        site = s["site"]
        line = (
            f"BLOCKED NOW >= {s['at_least']:.1f} s at {os.path.basename(site['filename'])}:{site['lineno']} "
            f"in {site['function']}" + (f" ({s['call']})" if s.get("call") else "")
        )
        out.append((line + f"  [thread {s['thread_id']}, read from outside]")[:width])
    return out
