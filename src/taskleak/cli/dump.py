"""``taskleak dump PID``: every task of a running process, grouped.

Through the process's agent (the full report, text or JSON) or, on CPython
3.14+ without one, read from outside (``remote_read``: await chains only).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .connect import add_target_arguments, connect

__all__ = ["add_parser", "cmd_dump"]


def add_parser(sub: Any) -> None:
    dump = sub.add_parser(
        "dump",
        help="every task of a running process, grouped",
        description="Every task of the process grouped by creation site, suspension chain and "
        "wait target (largest group first).",
    )
    add_target_arguments(dump)
    dump.add_argument("--json", action="store_true", help="the JSON form instead of text")


def cmd_dump(args: argparse.Namespace) -> int:
    t, agent = connect(args.pid, args.inject, args.timeout, args.inject_wait)
    if agent is None:
        from .remote_read import format_tasks, read_tasks

        doc = read_tasks(t)
        print(json.dumps(doc) + "\n" if args.json else format_tasks(doc), end="", flush=True)
        return 0
    if args.json:
        print(json.dumps(agent.get_json("/api/tasks?groups=2000&names=1000")) + "\n", end="", flush=True)
    else:
        print(agent.get_text("/tasks.txt"), end="", flush=True)
    return 0
