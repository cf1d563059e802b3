"""Renderers: one file per output form over the one model (Snapshot, TaskInfo).

``text`` and ``json_form`` render snapshots and loss events; ``dump`` is the
whole-process report; ``signal_dump`` sends it on a signal. May import the
analysis layers (``diagnosis``, ``heap``) and everything below; never a front end.
"""

# Importing the renderers registers them behind Snapshot.format() / .to_dict().
from . import json_form, text  # noqa: E402,F401
