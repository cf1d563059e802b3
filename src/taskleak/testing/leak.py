"""What a leak check finds: :class:`Leak`, and how it is raised or warned."""

from __future__ import annotations

from dataclasses import dataclass

from ..model.task_info import TaskInfo

__all__ = ["KINDS", "ABANDONED", "ALL_KINDS", "ASYNCGEN", "ASYNCGEN_MODES", "Leak", "TaskLeakError", "TaskLeakWarning"]

#: Every leak kind, in the order reports list them (see docs/testing.md).
KINDS = ("pending", "gc-pending", "done-retained", "never-retrieved")

#: A pending task whose only consumer (a gather) finished before the scope
#: ended, found finished after the grace: a refinement of "pending", counted
#: wherever "pending" is (or when named in ``kinds``).
ABANDONED = "abandoned"
ALL_KINDS = KINDS + (ABANDONED,)

#: Not a task leak: an async generator never closed, whose aclose() task
#: asyncio made was destroyed pending (report/asyncgens.py). Reported apart;
#: it fails the scope only with ``asyncgens="fail"``.
ASYNCGEN = "asyncgen"
ASYNCGEN_MODES = ("report", "fail", "ignore")


@dataclass
class Leak:
    """One leaked task. ``held_by`` is set for done-retained leaks (the paths
    that keep the task alive); ``exception`` for never-retrieved ones;
    ``note`` says more where the kind alone does not (an abandoned task's
    finished consumer, say)."""

    kind: str
    task: TaskInfo
    held_by: list[str] | None = None
    exception: BaseException | None = None
    exception_text: str | None = None
    note: str | None = None


class TaskLeakError(AssertionError):
    """A checked scope leaked tasks; ``.leaks`` lists them."""

    def __init__(self, message: str, leaks: list[Leak]) -> None:
        super().__init__(message)
        self.leaks = leaks


class TaskLeakWarning(UserWarning):
    """Issued instead of TaskLeakError with ``on_leak="warn"``."""
