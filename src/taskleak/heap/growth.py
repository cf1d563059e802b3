"""Which object types are growing: :func:`growth`, like ``objgraph.show_growth``.

One C++ pass (``taskleak._core.type_census``) over the heap the cyclic garbage
collector tracks counts objects by type, and live coroutines per coroutine
function; asyncio types and coroutine rows are highlighted.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import taskleak._core as _core

from .names import code_name, module_of_type, qualified_type_name

__all__ = ["Growth", "GrowthRow", "growth"]


@dataclass
class GrowthRow:
    """One line of :func:`growth`: ``count`` live objects named ``name`` now,
    ``delta`` more than at the previous call. ``kind`` is ``"type"`` or
    ``"coroutine"`` (live coroutine objects of one coroutine function, named
    ``coroutine qualname (file.py:line)``); ``highlight`` marks asyncio and
    uvloop types and coroutine rows."""

    name: str
    count: int
    delta: int
    kind: str = "type"
    highlight: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "delta": self.delta,
            "kind": self.kind,
            "highlight": self.highlight,
        }


@dataclass
class Growth:
    """The result of :func:`growth`: rows sorted by growth, largest first."""

    rows: list[GrowthRow]
    total_objects: int
    collected: bool
    first: bool

    def __iter__(self) -> Iterator[GrowthRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> GrowthRow:
        return self.rows[i]

    def format(self) -> str:
        if self.first:
            return (
                f"baseline taken: {self.total_objects} objects tracked; call growth() again to see "
                "which types grew since now"
            )
        if not self.rows:
            return "no growth since the previous call"
        width = max(len(r.name) for r in self.rows)
        lines = [f"  {'type':<{width}}  {'count':>10}  {'delta':>9}"]
        for r in self.rows:
            mark = "*" if r.highlight else " "
            lines.append(f"{mark} {r.name:<{width}}  {r.count:>10}  {r.delta:>+9}")
        if any(r.highlight for r in self.rows):
            lines.append("(* asyncio object, or live coroutines of one coroutine function)")
        return "\n".join(lines)

    __str__ = format

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_objects": self.total_objects,
            "collected": self.collected,
            "first": self.first,
            "rows": [r.to_dict() for r in self.rows],
        }


_previous: dict[str, int] | None = None


def _is_asyncio_type(t: type) -> bool:
    mod = module_of_type(t)
    return mod in ("asyncio", "_asyncio", "uvloop") or mod.startswith("asyncio.") or mod.startswith("uvloop.")


_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _is_own(mod: str) -> bool:
    return mod == "taskleak" or mod.startswith("taskleak.")


def _census() -> tuple[int, dict[str, int], dict[str, bool]]:
    total, by_type, by_code = _core.type_census()
    counts: dict[str, int] = {}
    hot: dict[str, bool] = {}
    for t, n in by_type:
        if _is_own(module_of_type(t)):
            continue  # taskleak's own objects (snapshots, TaskInfo, Frame...) are not the application's growth
        name = qualified_type_name(t)
        counts[name] = counts.get(name, 0) + n
        if _is_asyncio_type(t):
            hot[name] = False
    for code, n in by_code:
        if code.co_filename.startswith(_OWN_DIR):
            continue
        name = f"coroutine {code_name(code)} ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"
        counts[name] = counts.get(name, 0) + n
        hot[name] = True
    return total, counts, hot


def growth(limit: int | None = 10, collect: bool = False, file: TextIO | None = None) -> Growth:
    """Object counts by type and their growth since the previous call, like
    ``objgraph.show_growth``. The first call takes the baseline: it returns
    no rows (``first`` is true, and ``format()`` says so).

    Only rows that grew are returned, largest growth first, at most ``limit``
    of them (``None``: all). Besides one row per type, live coroutine objects
    are counted per coroutine function (``coroutine heartbeat (app.py:12)``,
    ``kind="coroutine"``); those rows and asyncio/uvloop types are
    highlighted. Counts are of objects the garbage collector tracks (not
    ints or strings); taskleak's own objects (snapshots, ``TaskInfo``,
    ``Frame``...) are left out. With ``file``, the table is also printed
    there.

    Cost: one heap walk (~10-30 ms per million objects) and no garbage
    collection unless ``collect=True`` (then ``gc.collect()`` runs first,
    so unreachable cycles are not counted). The previous counts are kept
    by name, so types that died in between still compare correctly.
    """
    global _previous
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise TypeError(f"limit must be an int or None, not {type(limit).__name__}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if collect:
        gc.collect()
    total, counts, hot = _census()
    before = _previous or {}
    first = _previous is None
    _previous = counts
    rows = (
        []
        if first
        else [
            GrowthRow(name, n, n - before.get(name, 0), "coroutine" if hot.get(name) else "type", name in hot)
            for name, n in counts.items()
            if n > before.get(name, 0)
        ]
    )
    rows.sort(key=lambda r: (-r.delta, -r.count, r.name))
    if limit is not None:
        rows = rows[:limit]
    result = Growth(rows, total, bool(collect), first)
    if file is not None:
        print(result.format(), file=file)
    return result
