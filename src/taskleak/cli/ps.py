"""``taskleak ps``: the processes taskleak can inspect."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from typing import Any

from ..live.agent import list_agents
from .attach import Agent, AttachError, pwd_name

__all__ = ["add_parser", "cmd_ps", "format_rows", "list_processes"]


def add_parser(sub: Any) -> None:
    sub.add_parser(
        "ps",
        help="list processes with a taskleak agent (and, on 3.14+, other Python processes)",
        description="List processes that taskleak can inspect: those with an agent (serve(unix=True), "
        "`taskleak run --monitor`, TASKLEAK_MONITOR=1) and Python 3.14+ processes that "
        "can be read from outside.",
    )


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            text = " ".join(a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a)
    except OSError:
        return "?"
    return " ".join(text.split())  # one line, whatever the arguments hold (python -c "...")


def _python_314_plus(pid: int) -> str | None:
    """ "3.X" if `pid` runs CPython 3.14+, else None."""
    try:
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None
    m = re.match(r"python(3)\.(\d+)", exe)
    if m is None:
        try:
            with open(f"/proc/{pid}/maps") as f:
                m = re.search(r"libpython(3)\.(\d+)", f.read())
        except OSError:
            return None
    if m is None or int(m.group(2)) < 14:
        return None
    return f"{m.group(1)}.{m.group(2)}"


def _uses_asyncio(pid: int) -> bool | None:
    """True if the process loaded the _asyncio extension, None when that
    cannot be told: an interpreter with _asyncio built in (Debian's 3.15)
    maps no separate file for it."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            maps = f.read()
    except OSError:
        return None
    if "_asyncio" in maps:
        return True
    return None if _asyncio_built_in(pid) else False


_BUILT_IN: dict[str, bool] = {}


def _asyncio_built_in(pid: int) -> bool:
    """Whether the interpreter `pid` runs has _asyncio compiled in (asked
    once per interpreter binary; Debian's 3.15 does)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    if exe not in _BUILT_IN:
        try:
            r = subprocess.run(
                [f"/proc/{pid}/exe", "-I", "-c", "import sys; print('_asyncio' in sys.builtin_module_names)"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            _BUILT_IN[exe] = r.stdout.strip() == "True"
        except (OSError, subprocess.SubprocessError):
            _BUILT_IN[exe] = False
    return _BUILT_IN[exe]


def list_processes() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    seen = set()
    for pid, path in list_agents():
        seen.add(pid)
        row: dict[str, Any] = {"pid": pid, "source": "agent", "socket": path, "command": _cmdline(pid)}
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
            row["user"] = pwd_name(uid)
            agent = Agent(pid, path, timeout=3.0)
            info = agent.get_json("/api/info")
            row["python"] = info.get("python")
            samples = agent.get_json("/api/samples?limit=1").get("samples") or []
            if samples:
                s = samples[-1]
                row.update(tasks=s.get("tasks"), pending=s.get("pending"), rss_bytes=s.get("rss_bytes"))
            # The counts `dump` shows: every live task of the process. A
            # monitor sample counts only the tasks whose creation taskleak
            # recorded, and after --inject (or a late serve()) that leaves out
            # every task created before the agent started (ps said 3, dump 14).
            states = agent.get_json("/api/tasks?groups=1&names=0")
            row.update(tasks=states["task_count"], pending=states["states"]["pending"])
        except (AttachError, OSError, KeyError, TypeError) as e:
            row["error"] = str(e)
        rows.append(row)
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in seen or int(name) == me:
            continue
        pid = int(name)
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        if uid != os.geteuid() and os.geteuid() != 0:
            continue
        ver = _python_314_plus(pid)
        if ver is None or _uses_asyncio(pid) is False:
            continue
        rows.append({"pid": pid, "source": "remote", "python": ver, "user": pwd_name(uid), "command": _cmdline(pid)})
    return rows


def _mib(b: Any) -> str:
    return "-" if not isinstance(b, int) else f"{b / (1 << 20):.0f}M"


# The least of the command shown on a narrow terminal: past the other columns
# it is what tells two processes apart.
MIN_COMMAND = 20


def format_rows(rows: list[dict[str, Any]], width: int | None) -> list[str]:
    """The table: the header, then a line per process. `width` is the
    terminal's: a command longer than what is left of it is cut (never below
    MIN_COMMAND characters); None (not a terminal) shows it whole."""
    out = [f"{'PID':>7}  {'USER':<10} {'PYTHON':<7} {'TASKS':>7} {'PENDING':>7} {'RSS':>6}  {'VIA':<14} COMMAND"]
    for r in rows:
        via = "agent" if r["source"] == "agent" else "remote (3.14+)"
        if "error" in r:
            via = "agent (error)"
        head = (
            f"{r['pid']:>7}  {str(r.get('user', '?'))[:10]:<10} {str(r.get('python') or '?'):<7} "
            f"{str(r.get('tasks', '-')):>7} {str(r.get('pending', '-')):>7} {_mib(r.get('rss_bytes')):>6}  "
            f"{via:<14} "
        )
        command = r["command"]
        if width is not None:
            room = max(MIN_COMMAND, width - len(head))
            if len(command) > room:
                command = command[: room - 3] + "..."
        out.append(head + command)
    return out


def cmd_ps(args: argparse.Namespace) -> int:
    rows = list_processes()
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    for line in format_rows(rows, width):
        print(line)
    if not rows:
        print(
            "(no process with a taskleak agent; start one with taskleak.serve(unix=True), "
            "`taskleak run --monitor`, or TASKLEAK_MONITOR=1)"
        )
    return 0
