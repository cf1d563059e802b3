"""``taskleak dump PID``, ``taskleak snapshot PID -o FILE``, ``taskleak why PID TASK``
(and the parsers of ``ps`` and ``top``): inspect a running process through
its agent or, on CPython 3.14+ without one, from outside."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any
from urllib.parse import quote

from .attach import AttachError
from .connect import connect
from .ps import cmd_ps
from .top import cmd_top

__all__ = ["COMMANDS", "add_parsers", "run_command"]

COMMANDS = ("ps", "top", "dump", "snapshot", "why")


def add_parsers(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("pid", metavar="PID", help="process id")
        p.add_argument("--inject", action="store_true",
                       help="CPython 3.14+: start the agent inside the process with sys.remote_exec (PEP 768) "
                            "when it has none")
        p.add_argument("--inject-wait", type=float, default=10.0, metavar="S",
                       help="seconds --inject waits for the agent to start (an idle loop delays it)")
        p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for an answer")

    sub.add_parser("ps", help="list processes with a taskleak agent (and, on 3.14+, other Python processes)",
                   description="List processes that taskleak can inspect: those with an agent (serve(unix=True), "
                               "`taskleak run --monitor`, TASKLEAK_MONITOR=1) and Python 3.14+ processes that "
                               "can be read from outside.")
    top = sub.add_parser("top", help="live view of a process: task counts, RSS, loop lag, top groups, alerts",
                         description="A live terminal view, refreshed in place; q quits. Plain repeated "
                                     "output when stdout is not a terminal.")
    common(top)
    top.add_argument("-n", "--iterations", type=int, default=0, metavar="N", help="stop after N refreshes (0: never)")
    top.add_argument("-d", "--delay", type=float, default=2.0, metavar="S", help="seconds between refreshes")
    dump = sub.add_parser("dump", help="every task of a running process, grouped",
                          description="Every task of the process grouped by creation site, suspension chain and "
                                      "wait target (largest group first).")
    common(dump)
    dump.add_argument("--json", action="store_true", help="the JSON form instead of text")
    snap = sub.add_parser("snapshot", help="save a JSON snapshot of a running process's tasks")
    common(snap)
    snap.add_argument("-o", "--output", required=True, metavar="FILE.json", help="where to write it")
    why = sub.add_parser("why", help="everything taskleak can say about one task of a running process")
    common(why)
    why.add_argument("task", metavar="TASK", help="the task's name (or id)")


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def cmd_dump(args: argparse.Namespace) -> int:
    t, agent = connect(args.pid, args.inject, args.timeout, args.inject_wait)
    if agent is None:
        from .remote_314 import format_tasks, read_tasks

        doc = read_tasks(t)
        _write(json.dumps(doc) + "\n" if args.json else format_tasks(doc))
        return 0
    if args.json:
        _write(json.dumps(agent.get_json("/api/tasks?groups=2000&names=1000")) + "\n")
    else:
        _write(agent.get_text("/tasks.txt"))
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    d = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(d):
        raise AttachError(f"-o: directory does not exist: {d}", "usage")
    t, agent = connect(args.pid, args.inject, args.timeout, args.inject_wait)
    if agent is None:
        from .remote_314 import LIMITATIONS, read_tasks

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


def cmd_why(args: argparse.Namespace) -> int:
    t, agent = connect(args.pid, args.inject, args.timeout, args.inject_wait)
    if agent is None:
        from .remote_314 import LIMITATIONS, read_tasks

        doc = read_tasks(t)
        task = next((x for x in doc["tasks"] if x["name"] == args.task or str(x["id"]) == args.task
                     or hex(x["id"]) == args.task), None)
        if task is None:
            raise AttachError(f"process {t.pid} has no pending task named {args.task!r}", "not-found")
        lines = [f"task {task['name']!r} (id {hex(task['id'])}), pending", f"  note: {LIMITATIONS}",
                 "  created at: (unknown: read from outside)", "  suspended at:"]
        lines += [f"    {f[1]}:{f[2]} in {f[0]}" for f in task["stack"]]
        if task["awaited_by"]:
            lines.append("  awaited by: " + ", ".join(a["task_name"] for a in task["awaited_by"]))
        awaits = [x["name"] for x in doc["tasks"] if any(a["task_id"] == task["id"] for a in x["awaited_by"])]
        if awaits:
            lines.append("  awaits: " + ", ".join(awaits))
        _write("\n".join(lines) + "\n")
        return 0
    doc = agent.get_json("/api/why?task=" + quote(args.task, safe=""))
    text = doc.get("text")
    if not isinstance(text, str):
        raise AttachError(f"malformed reply from process {t.pid}'s agent: no text in the why answer", "malformed")
    _write(text)
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run one of COMMANDS; AttachError becomes a message and exit status 1."""
    fn = {"ps": cmd_ps, "top": cmd_top, "dump": cmd_dump, "snapshot": cmd_snapshot, "why": cmd_why}[args.command]
    try:
        return fn(args)
    except AttachError as e:
        print(f"taskleak {args.command}: {e}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, AttributeError) as e:
        # JSON of an unexpected shape: an agent of another taskleak version, or not an agent.
        print(f"taskleak {args.command}: malformed reply from process {getattr(args, 'pid', '?')}: missing or "
              f"unexpected field ({type(e).__name__}: {e}); is the agent from another taskleak version?",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
