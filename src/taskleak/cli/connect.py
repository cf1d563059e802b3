"""Reaching a process: through its agent, or (CPython 3.14+) from outside.

Also the arguments every command that inspects a process takes (``top``,
``dump``, ``snapshot``, ``why``): they are :func:`connect`'s.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .attach import NO_AGENT_HELP, Agent, AttachError, Target, find_agent, target
from .remote_inject import inject_agent

__all__ = ["add_target_arguments", "connect"]


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    """PID, --inject, --inject-wait, --timeout: what :func:`connect` needs."""
    p.add_argument("pid", metavar="PID", help="process id")
    p.add_argument(
        "--inject",
        action="store_true",
        help="CPython 3.14+: start the agent inside the process with sys.remote_exec (PEP 768) when it has none",
    )
    p.add_argument(
        "--inject-wait",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds --inject waits for the agent to start (an idle loop delays it)",
    )
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for an answer")


def connect(
    pid: Any, inject: bool = False, timeout: float = 30.0, inject_wait: float = 10.0
) -> tuple[Target, Agent | None]:
    """The target and its agent; the agent is None when the target is 3.14+
    without one and will be read from outside. AttachError otherwise."""
    t = target(pid)
    agent = find_agent(t, timeout)
    if agent is not None:
        return t, agent
    if t.exe is None and os.path.exists(f"/proc/{t.pid}"):
        raise AttachError(
            f"not permitted to inspect process {t.pid} (cannot read /proc/{t.pid}/exe; the process "
            "may be non-dumpable or another user's): run as its user or as root with CAP_SYS_PTRACE, "
            f"or start the agent in it ({NO_AGENT_HELP})",
            "ptrace",
        )
    ver = t.python_version
    if inject:
        return t, inject_agent(t, inject_wait)
    if ver is not None and ver >= (3, 14):
        return t, None
    if not t.looks_like_python:
        raise AttachError(
            f"process {t.pid} has no taskleak agent and does not look like a Python process "
            f"(executable {t.exe or 'unknown'})",
            "no-agent",
        )
    shown = f"Python {ver[0]}.{ver[1]}" if ver else "a Python older than 3.14, or one taskleak cannot identify"
    raise AttachError(
        f"process {t.pid} has no taskleak agent ({shown}): {NO_AGENT_HELP}"
        + ("; on CPython 3.14+ it could also be read from outside" if ver is None or ver < (3, 14) else ""),
        "no-agent",
    )
