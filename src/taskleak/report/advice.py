"""What to do about each kind of leak: one line a user can act on, shared by
every report (check()'s TaskLeakError, the pytest plugin, ``taskleak run``)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ADVICE", "advice_lines", "fix_text"]

#: kind -> one actionable line. The kinds are check()'s (testing/leak.py),
#: plus "asyncgen" (an async generator nobody closed, not a task leak).
ADVICE = {
    "pending": "await or cancel these tasks before the scope ends (asyncio.TaskGroup helps)",
    "gc-pending": "keep a reference to the task until it is done, and await or cancel it "
    "(a task nobody references can be collected mid-flight)",
    "done-retained": "drop the reference once the task is done, e.g. tasks.add(t); t.add_done_callback(tasks.discard)",
    "never-retrieved": "await the task or read t.exception() (a done callback can log it), so its failure is not lost",
    "abandoned": "when gather() raises, cancel and await the branches still running "
    "(asyncio.TaskGroup does it for you)",
    "asyncgen": "close the generator: `async with contextlib.aclosing(gen) as g:`, or "
    "`loop.run_until_complete(loop.shutdown_asyncgens())` before loop.close() (asyncio.run() does it)",
}

_ORDER = ("pending", "abandoned", "gc-pending", "never-retrieved", "done-retained", "asyncgen")


def advice_lines(kinds: Iterable[str], indent: str = "  ") -> list[str]:
    """One "kind: advice" line per kind present, in report order."""
    present = set(kinds)
    return [f"{indent}{k}: {ADVICE[k]}" for k in _ORDER if k in present]


def fix_text(kinds: Iterable[str], ignore_hint: str = "") -> str:
    """The closing advice of a report: one line for one kind, a list for
    several, then `ignore_hint` (how to tolerate what is meant to stay)."""
    present = [k for k in _ORDER if k in set(kinds)]
    if len(present) == 1:
        return f"Fix: {ADVICE[present[0]]}" + (f", or {ignore_hint}." if ignore_hint else ".")
    return "Fix:\n" + "\n".join(advice_lines(present)) + (f"\nOr {ignore_hint}." if ignore_hint else "")
