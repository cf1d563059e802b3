"""The model: what taskleak knows about the tasks of a process at one moment.

``snapshot`` (Snapshot, snapshot(): every live task, read from a native
census), ``task_info`` (TaskInfo: one task, fields computed on first
access), and their forms, kept beside them as tracemalloc keeps
``Snapshot``, ``Traceback`` and ``format()`` together: ``text`` (the grouped
report) and ``json_form`` (the JSON-able form), which read a snapshot through
``rows`` (the Protocol naming what they read). May import ``tracking`` and the
primitives below it.
"""

# Not the function snapshot(): `taskleak.model.snapshot` stays the module of
# that name (`import taskleak.model.snapshot as m` would otherwise get the function).
from .snapshot import Snapshot
from .task_info import STATES, DetachedTaskInfo, TaskInfo

__all__ = ["STATES", "DetachedTaskInfo", "Snapshot", "TaskInfo"]
