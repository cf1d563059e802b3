"""The allow-list: tasks that are expected to live (heartbeats, log
flushers), so they do not count towards a leak - up to a budget.

An entry is a glob (matched against the task's name, its coroutine's
qualified name and its creation site ``file:line in function``), a
callable ``(task) -> bool``, or a mapping ``{glob_or_callable: budget}``:
``{"heartbeat*": 1}`` means one such task is normal and a second one
counts as a leak, so the allow-list cannot hide a heartbeat that leaks per
connection. Matching is per group (creation site x coroutine), on one task
of the group: tasks created at the same line by the same coroutine share
their naming.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AllowEntry", "AllowList", "AllowSpec"]

AllowSpec = str | Callable[[Any], bool] | Mapping[Any, int | None] | Iterable[Any]

log = logging.getLogger("taskleak")


@dataclass
class AllowEntry:
    pattern: str | Callable[[Any], bool]
    budget: int | None  # None: any number

    def describe(self) -> str:
        p = self.pattern if isinstance(self.pattern, str) else getattr(self.pattern, "__qualname__", repr(self.pattern))
        return p if self.budget is None else f"{p} (budget {self.budget})"


def _entry(pattern: Any, budget: int | None) -> AllowEntry:
    if not (isinstance(pattern, str) or callable(pattern)):
        raise TypeError(f"allow-list entries are globs or callables, got {pattern!r}")
    if isinstance(pattern, str) and not pattern:
        raise ValueError("an empty allow-list glob matches nothing; remove it")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
        raise ValueError(f"allow-list budget must be an int >= 0 or None, got {budget!r} for {pattern!r}")
    return AllowEntry(pattern, budget)


class AllowList:
    def __init__(self, spec: AllowSpec = ()) -> None:
        self.entries: list[AllowEntry] = []
        if isinstance(spec, (str, Mapping)) or callable(spec):
            spec = [spec]
        for item in spec:
            if isinstance(item, Mapping):
                self.entries += [_entry(k, v) for k, v in item.items()]
            else:
                self.entries.append(_entry(item, None))
        self._warned: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self.entries)

    def match(self, task: Any, coro: str, site: str) -> int | None:
        """Index of the first entry matching this group's example task."""
        name = None
        for i, e in enumerate(self.entries):
            if isinstance(e.pattern, str):
                if name is None:
                    try:
                        name = task.get_name() if task is not None else ""
                    except Exception:
                        name = ""
                if any(fnmatch.fnmatchcase(s, e.pattern) for s in (name, coro, site)):
                    return i
            elif task is not None:
                try:
                    if e.pattern(task):
                        return i
                except Exception as exc:  # a user predicate must not stop the monitor
                    if i not in self._warned:
                        self._warned.add(i)
                        log.warning(
                            "taskleak: allow-list predicate %s raised %r; treated as no match", e.describe(), exc
                        )
        return None

    @staticmethod
    def split(counts: list[tuple[int, int]], budget: int | None) -> tuple[int, int]:
        """(allowed pending, allowed done-retained) of one entry, given the
        (pending, done_retained) of each group it matched."""
        p = sum(c[0] for c in counts)
        d = sum(c[1] for c in counts)
        if budget is None:
            return p, d
        ap = min(p, budget)
        return ap, min(d, budget - ap)
