"""Diagnosis: why a task is stuck and what waits on what.

``task_graph`` (awaited-by tree and await cycles), ``awaited_by`` (where the
links come from on each CPython), ``why`` (one task, explained). May import
the model (``snapshot``, ``task_info``), ``tracking`` and below; never
``heap``, ``report`` or a front end.
"""
