"""``taskleak top PID``: a live view of one process, refreshed in place.

On a terminal the screen is redrawn every ``--delay`` seconds and ``q``
quits; otherwise (a pipe, a file) each refresh is printed as plain text,
one block after another, with no escape codes.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import sys
import time
from typing import Any

from .attach import Agent, AttachError, Target
from .blocked_now import agent_lines, outside_lines
from .connect import add_target_arguments, connect

__all__ = ["add_parser", "cmd_top", "render", "blocked_line"]


def add_parser(sub: Any) -> None:
    top = sub.add_parser(
        "top",
        help="live view of a process: task counts, RSS, loop lag, top groups, alerts",
        description="A live terminal view, refreshed in place; q quits. Plain repeated "
        "output when stdout is not a terminal.",
    )
    add_target_arguments(top)
    top.add_argument("-n", "--iterations", type=int, default=0, metavar="N", help="stop after N refreshes (0: never)")
    top.add_argument("-d", "--delay", type=float, default=2.0, metavar="S", help="seconds between refreshes")


def _mib(b: int | None) -> str:
    return "-" if b is None else f"{b / (1 << 20):.1f} MiB"


def _lag(s: float | None) -> str:
    return "-" if s is None else f"{s * 1000:.1f} ms"


def _secs(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def blocked_line(blocked: dict[str, Any] | None, width: int = 100) -> str | None:
    """One line about blocked event loops from the agent's /api/blocked:
    the watchdog's totals, then the latest episode (how long, how long ago,
    the line that blocked). None when the agent does not say (an older one)."""
    if blocked is None:
        return None
    if not blocked.get("watching") and not blocked.get("blocks"):
        return "blocked loops: not watched (taskleak.watch_blocking() or taskleak run --blocking S in the process)"[
            :width
        ]
    head = f"blocked loops: {blocked['blocks']} ({_secs(blocked['blocked_seconds'])} in all" + (
        f", threshold {_secs(blocked['threshold'])})" if blocked.get("watching") else ", watchdog stopped)"
    )
    eps = blocked.get("episodes") or []
    if eps:
        e = eps[0]
        where = e["site"]["short"] if e.get("site") else "(line unknown)"
        ago = max(0.0, time.time() - e["start"] - e["duration"])
        when = time.strftime("%H:%M:%S", time.localtime(e["start"]))
        head += f"  latest {_secs(e['duration'])} at {when} ({ago:.0f}s ago) {where}"
        if e.get("running"):
            head += f" [{e['running']}]"
    return head[:width]


def render(
    info: dict[str, Any],
    samples: list[dict[str, Any]] | None,
    alerts: list[dict[str, Any]],
    width: int = 100,
    blocked: dict[str, Any] | None = None,
) -> str:
    """The text of one refresh, from the agent's /api/info, /api/samples,
    /api/alerts and /api/blocked. ``samples`` None: the agent could not
    answer them (its loop holds the GIL; the BLOCKED NOW line says where)."""
    out = [
        f"taskleak top - pid {info.get('pid')}  Python {info.get('python')}  {' '.join(info.get('argv') or [])}"[:width]
    ]
    out += agent_lines(blocked, width)
    bline = blocked_line(blocked, width)
    if not samples:
        out.append(
            "(no sample yet)"
            if samples is not None
            else "(task counts unavailable: the process did not run Python code to answer them)"
        )
        if bline:
            out.append(bline)
        return "\n".join(out) + "\n"
    s = samples[-1]
    first = samples[0]
    span = s["time"] - first["time"]
    out.append(
        f"tasks {s['tasks']}  pending {s['pending']}  done-retained {s['done_retained']}  "
        f"created {s['created_total']}  RSS {_mib(s.get('rss_bytes'))}  loop lag {_lag(s.get('loop_lag_s'))}"
    )
    losses = ", ".join(f"{k} {v}" for k, v in (s.get("losses") or {}).items() if v)
    if losses:
        out.append(f"losses: {losses}")
    if bline:
        out.append(bline)
    out.append("")
    out.append(
        f"{'PENDING':>8} {'DONE-RET':>8} {'GROWTH':>7}  GROUP (creation site, coroutine)"
        + (f"   growth over {span:.0f}s" if span > 0 else "")
    )
    for g in s.get("groups") or []:
        # Against the group's first sample in the window, not the window's
        # first sample: a group born after that (start-up tasks made after
        # the monitor's first sample) has grown only if it has more now.
        old = next(
            (x for p in samples for x in p.get("groups") or [] if x.get("group") == g.get("group")),
            None,
        )
        growth = (g["pending"] + g["done_retained"]) - ((old["pending"] + old["done_retained"]) if old else 0)
        label = f"{g['site']}  {g['coro']}" + ("  (allow-listed)" if g.get("allowlisted") else "")
        out.append(f"{g['pending']:>8} {g['done_retained']:>8} {growth:>+7}  {label}"[:width])
    if alerts:
        out.append("")
        out.append(f"ALERTS ({len(alerts)}):")
        for a in alerts[-3:]:
            when = time.strftime("%H:%M:%S", time.localtime(a["time"]))
            out.append(f"  {when} " + a["text"].splitlines()[0][: width - 11])
    return "\n".join(out) + "\n"


def _render_remote(doc: dict[str, Any], width: int) -> str:
    from .remote_read import LIMITATIONS

    out = [
        f"taskleak top - pid {doc['pid']}  Python {doc['python']}",
        f"note: {LIMITATIONS}"[: width * 2],
        "",
        f"tasks {doc['task_count']} (pending)",
        "",
        f"{'TASKS':>8}  SUSPENDED IN",
    ]
    for g in doc["groups"][:20]:
        where = g["chain"][0] if g["chain"] else None
        place = f"{where['function']} ({os.path.basename(where['filename'])}:{where['lineno']})" if where else "?"
        out.append(f"{g['count']:>8}  {place}"[:width])
    return "\n".join(out) + "\n"


def _frame(t: Target, agent: Agent | None, width: int) -> str:
    if agent is None:
        from .remote_read import read_blocked_now, read_tasks

        text = _render_remote(read_tasks(t), width)
        head, _, rest = text.partition("\n")
        return "\n".join([head, *outside_lines(read_blocked_now(t), width), rest])
    # /api/info and /api/blocked are answered natively, even while the loop
    # holds the GIL; the rest needs Python, and a stuck process answers 503.
    info = agent.get_json("/api/info")
    try:
        blocked: dict[str, Any] | None = agent.get_json("/api/blocked?limit=1")
    except AttachError as e:
        if e.kind != "not-found":  # an agent of an older taskleak has no /api/blocked
            raise
        blocked = None
    status, body = agent.get("/api/samples?limit=60")
    if status == 503 and blocked is not None and blocked.get("in_progress"):
        return render(info, None, [], width, blocked)  # (the alerts would wait as long again)
    samples = agent.get_json("/api/samples?limit=60")["samples"] if status != 200 else json.loads(body)["samples"]
    alerts = agent.get_json("/api/alerts?limit=20")["alerts"]
    return render(info, samples, alerts, width, blocked)


def cmd_top(args: argparse.Namespace) -> int:
    t, agent = connect(args.pid, args.inject, args.timeout, args.inject_wait)
    delay = max(0.1, args.delay)
    tty = sys.stdout.isatty() and sys.stdin.isatty()
    n = 0
    if not tty:
        while True:
            sys.stdout.write(_frame(t, agent, 200) + "\n")
            sys.stdout.flush()
            n += 1
            if args.iterations and n >= args.iterations:
                return 0
            time.sleep(delay)
    import termios
    import tty as _tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        _tty.setcbreak(fd)
        sys.stdout.write("\x1b[?25l")
        while True:
            cols, rows = shutil.get_terminal_size()
            text = _frame(t, agent, cols)
            lines = text.splitlines()[: rows - 1] + ["", "q: quit"]
            sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(lines))
            sys.stdout.flush()
            n += 1
            if args.iterations and n >= args.iterations:
                return 0
            ready, _, _ = select.select([fd], [], [], delay)
            if ready and os.read(fd, 32).lower().startswith(b"q"):
                return 0
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        sys.stdout.write("\x1b[?25h\n")
        sys.stdout.flush()
