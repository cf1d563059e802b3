"""Command-line front end: ``taskleak run`` and the commands to come.

``main`` (argument parsing, the ``taskleak`` script) and ``run`` (run a
program under tracking, report at exit). May import every layer below; never
``testing``.
"""
