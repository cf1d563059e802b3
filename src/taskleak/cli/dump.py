"""``taskleak dump PID``: every task of a running process, grouped.

Through the process's agent (the full report, text or JSON) or, on CPython
3.14+ without one, read from outside (``remote_read``: await chains only).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .attach import AttachError
from .blocked_now import agent_lines, outside_lines
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
        from .remote_read import format_tasks, read_blocked_now, read_tasks

        doc = read_tasks(t)
        stuck = read_blocked_now(t)
        if args.json:
            print(json.dumps(dict(doc, blocked_now=stuck)) + "\n", end="", flush=True)
        else:
            print("".join(ln + "\n" for ln in outside_lines(stuck)) + format_tasks(doc), end="", flush=True)
        return 0
    # A loop stuck now is said first: /api/blocked is answered natively even
    # while the loop holds the GIL, the task listing needs Python.
    try:
        blocked = agent.get_json("/api/blocked?limit=0")
    except AttachError as e:
        if e.kind != "not-found":  # an older agent
            raise
        blocked = None
    now = (blocked or {}).get("in_progress") or []
    path = "/api/tasks?groups=2000&names=1000" if args.json else "/tasks.txt"
    status, body = agent.get(path)
    if status == 503 and now:
        if args.json:
            print(json.dumps({"blocked_now": now, "tasks": None}) + "\n", end="", flush=True)
        else:
            print("".join(ln + "\n" for ln in agent_lines(blocked)), end="", flush=True)
        print(f"taskleak: process {t.pid} is stuck: {body.decode('utf-8', 'replace').strip()}", file=sys.stderr)
        return 1
    if args.json:
        doc = agent.get_json(path) if status != 200 else json.loads(body)
        if now:
            doc = dict(doc, blocked_now=now)
        print(json.dumps(doc) + "\n", end="", flush=True)
    else:
        text = agent.get_text(path) if status != 200 else body.decode("utf-8", "replace")
        print("".join(ln + "\n" for ln in agent_lines(blocked)) + text, end="", flush=True)
    return 0
