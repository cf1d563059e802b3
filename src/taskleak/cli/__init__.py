"""Command-line front end: the ``taskleak`` command.

``main`` parses the arguments and dispatches; one module per command:
``run`` (run a program under tracking, report at exit), ``ps``, ``top``,
``dump``, ``snapshot``, ``why`` (inspect a running process). Reaching that
process: ``attach`` (its agent over a Unix socket), ``connect`` (agent or
outside view, and the PID arguments), ``remote_read`` and ``remote_inject``
(CPython 3.14+: read it from outside, or start the agent in it), both
through ``target_interpreter`` (the process's own interpreter). May import
every layer below; never ``testing``.
"""
