"""``taskleak snapshot PID -o FILE``: save a JSON snapshot of a running
process's tasks (the agent's ``/api/snapshot``, or on CPython 3.14+ without
an agent what ``remote_read`` sees from outside).

The file is written whole or not at all (a temporary file, then a rename).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .attach import AttachError
from .connect import add_target_arguments, connect

__all__ = ["add_parser", "cmd_snapshot"]


def add_parser(sub: Any) -> None:
    snap = sub.add_parser("snapshot", help="save a JSON snapshot of a running process's tasks")
    add_target_arguments(snap)
    snap.add_argument("-o", "--output", required=True, metavar="FILE.json", help="where to write it")


def cmd_snapshot(args: argparse.Namespace) -> int:
    d = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(d):
        raise AttachError(f"-o: directory does not exist: {d}", "usage")
    t, agent = connect(args.pid, args.inject, args.timeout, args.inject_wait)
    if agent is None:
        from .remote_read import LIMITATIONS, read_tasks

        doc = read_tasks(t)
        print(f"taskleak: note: {LIMITATIONS}", file=sys.stderr)
    else:
        doc = agent.get_json("/api/snapshot")
    tmp = args.output + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, args.output)
    print(f"taskleak: {doc.get('task_count', 0)} tasks of process {t.pid} written to {args.output}", file=sys.stderr)
    return 0
