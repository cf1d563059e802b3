"""Diagnosis: why a task is stuck and what waits on what.

``task_graph`` (awaited-by tree and await cycles), ``awaited_by`` (where the
links come from on each CPython), ``why`` (one task, explained: its holders
come from the heap analysis). May import ``heap``, the model and below;
never ``report``, ``monitor`` or a front end.
"""
