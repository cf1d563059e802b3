"""``taskleak why PID TASK``: everything taskleak can say about one task of
a running process (the agent answers with ``taskleak.why()``'s text; read
from outside on CPython 3.14+, its await chain and who awaits it)."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from .attach import AttachError
from .connect import add_target_arguments, connect

__all__ = ["add_parser", "cmd_why"]


def add_parser(sub: Any) -> None:
    why = sub.add_parser("why", help="everything taskleak can say about one task of a running process")
    add_target_arguments(why)
    why.add_argument("task", metavar="TASK", help="the task's name (or id)")


def cmd_why(args: argparse.Namespace) -> int:
    t, agent = connect(args.pid, args.inject, args.timeout, args.inject_wait)
    if agent is None:
        from .remote_read import LIMITATIONS, read_tasks

        doc = read_tasks(t)
        task = next(
            (
                x
                for x in doc["tasks"]
                if x["name"] == args.task or str(x["id"]) == args.task or hex(x["id"]) == args.task
            ),
            None,
        )
        if task is None:
            raise AttachError(f"process {t.pid} has no pending task named {args.task!r}", "not-found")
        lines = [
            f"task {task['name']!r} (id {hex(task['id'])}), pending",
            f"  note: {LIMITATIONS}",
            "  created at: (unknown: read from outside)",
            "  suspended at:",
        ]
        lines += [f"    {f[1]}:{f[2]} in {f[0]}" for f in task["stack"]]
        if task["awaited_by"]:
            lines.append("  awaited by: " + ", ".join(a["task_name"] for a in task["awaited_by"]))
        awaits = [x["name"] for x in doc["tasks"] if any(a["task_id"] == task["id"] for a in x["awaited_by"])]
        if awaits:
            lines.append("  awaits: " + ", ".join(awaits))
        print("\n".join(lines) + "\n", end="", flush=True)
        return 0
    doc = agent.get_json("/api/why?task=" + quote(args.task, safe=""))
    text = doc.get("text")
    if not isinstance(text, str):
        raise AttachError(f"malformed reply from process {t.pid}'s agent: no text in the why answer", "malformed")
    print(text, end="", flush=True)
    return 0
