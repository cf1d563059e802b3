"""taskleak.dump(): every task, grouped Go-style, plus loss events and object
growth - the "what is this process doing" report, also sent on a signal."""

from __future__ import annotations

import json as _json
import os
import sys
import time
from typing import IO, Any

from ..blocking.text import episodes_to_list, format_episodes
from ..blocking.watchdog import block_episodes
from ..heap.growth import growth as _heap_growth
from ..model.json_form import SCHEMA_VERSION, events_to_list, groups_to_list
from ..model.snapshot import snapshot

__all__ = ["dump", "dump_to_dict", "format_dump"]


def _growth() -> Any:
    """heap.growth(), or None if it fails: a dump must always be written."""
    try:
        return _heap_growth(limit=10, collect=False)
    except Exception:
        return None


def _header(n: int) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"taskleak dump: pid {os.getpid()}, Python {sys.version.split()[0]}, {stamp}, {n} task{'s' if n != 1 else ''}"
    )


def format_dump(snap: Any = None, growth: Any = None) -> str:
    """The text of a dump of `snap` (a fresh snapshot when None)."""
    snap = snapshot(orphans=True) if snap is None else snap
    out = [_header(len(snap)), "", snap.format()]
    if growth is not None:
        out.append("== object growth since the previous growth() call ==")
        out.append(growth.format())
        out.append("")
    episodes = _episodes()
    if episodes:
        out.append(format_episodes(episodes[-10:], "blocked event loops (most recent)"))
        out.append("")
    return "\n".join(out)


def _episodes() -> list[Any]:
    """block_episodes(), or [] if it fails: a dump must always be written."""
    try:
        return block_episodes()
    except Exception:
        return []


def dump_to_dict(snap: Any = None, growth: Any = None) -> dict[str, Any]:
    """The JSON form of a dump (schema: docs/json-schema.md, "Dump")."""
    snap = snapshot(orphans=True) if snap is None else snap
    # Only the states present, as this document has always listed them.
    states = {s: n for s, n in snap.state_counts().items() if n}
    return {
        "schema": SCHEMA_VERSION,
        "kind": "dump",
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "time": time.time(),
        "task_count": len(snap),
        "states": states,
        "groups": groups_to_list(snap),
        "loss_events": events_to_list(snap.loss_events),
        "growth": None if growth is None else growth.to_dict(),
        "blocked_loops": episodes_to_list(_episodes()),
    }


def dump(file: IO[str] | None = None, json: bool = False, *, growth: bool = True) -> None:
    """Write every live task, grouped by creation site, suspension chain, wait
    target and orphaned flag (largest group first), the loss events so far
    and, when taskleak.growth() is available, the object growth table, to
    `file` (``sys.stderr`` when None). ``json=True`` writes the JSON form
    instead (one object, schema in docs/json-schema.md).

    Safe to call from a signal handler (see ``install(dump_signal=...)``);
    errors writing to `file` propagate."""
    file = sys.stderr if file is None else file
    g = _growth() if growth else None
    if json:
        file.write(_json.dumps(dump_to_dict(None, g)) + "\n")
    else:
        file.write(format_dump(None, g))
    try:
        file.flush()
    except Exception:
        pass
