"""Running a snippet in the target process's own interpreter.

CPython's remote debugging (``_remote_debugging`` to read a process,
``sys.remote_exec`` to run a script in it) needs a reader of the *same minor
version* as the target, so taskleak runs both through the target's own
interpreter, ``/proc/PID/exe``, in isolated mode (``-I``): which Python runs
``taskleak`` itself does not matter. A snippet prints one JSON document; an
``error`` field in it becomes an :class:`~taskleak.cli.attach.AttachError`
that says what to do next.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from .attach import AttachError, Target

__all__ = ["check_reply", "run_in_target"]


def _exe(t: Target) -> str:
    if t.exe is None:
        raise AttachError(f"cannot read /proc/{t.pid}/exe: not permitted, or a kernel thread", "ptrace")
    if not t.looks_like_python:
        raise AttachError(f"process {t.pid} does not look like a Python process (executable {t.exe})", "version")
    return f"/proc/{t.pid}/exe"


def run_in_target(t: Target, code: str, *args: str, timeout: float = 60.0) -> dict[str, Any]:
    """Run `code` (with `args` as sys.argv[1:]) in `t`'s own interpreter in
    isolated mode; return the JSON document it prints last. AttachError
    when it cannot run or answers something else."""
    exe = _exe(t)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    try:
        p = subprocess.run([exe, "-I", "-c", code, *args], capture_output=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise AttachError(f"process {t.pid} has exited", "gone") from None
    except PermissionError:
        raise AttachError(f"cannot run process {t.pid}'s interpreter ({t.exe}): permission denied", "ptrace") from None
    except subprocess.TimeoutExpired:
        raise AttachError(f"reading process {t.pid} took longer than {timeout:.0f}s", "timeout") from None
    try:
        doc = json.loads(p.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
        if not isinstance(doc, dict):
            raise ValueError
    except (ValueError, IndexError):
        err = p.stderr.decode("utf-8", "replace").strip()[-500:]
        raise AttachError(
            f"malformed reply from process {t.pid}'s interpreter ({t.exe}, exit {p.returncode}): "
            f"{err or p.stdout[:200]!r}",
            "malformed",
        ) from None
    return doc


def check_reply(t: Target, doc: dict[str, Any]) -> None:
    """Raise the AttachError that a snippet's reply reports in its ``error``
    field (``version``, ``ptrace``, ``gone``, ``inject``, ``read``); return
    when it reports none."""
    err = doc.get("error")
    if err is None:
        return
    ver = doc.get("python", "?")
    if err == "version":
        raise AttachError(
            f"process {t.pid} runs Python {ver} and has no taskleak agent: reading a process "
            "from outside needs CPython 3.14+ (same minor version as the reader, which is why "
            "taskleak uses the process's own interpreter); start the agent in it instead: "
            "taskleak.serve(unix=True), `taskleak run --monitor`, or TASKLEAK_MONITOR=1",
            "version",
        )
    if err == "ptrace":
        scope = _ptrace_scope()
        raise AttachError(
            f"not permitted to read process {t.pid}'s memory ({doc.get('detail')}): "
            + (f"kernel.yama.ptrace_scope is {scope}; " if scope not in (None, "0") else "")
            + "run as root or with CAP_SYS_PTRACE, or start the agent in the process",
            "ptrace",
        )
    if err == "gone":
        raise AttachError(f"process {t.pid} has exited", "gone")
    if err == "inject":
        raise AttachError(f"sys.remote_exec into process {t.pid} failed: {doc.get('detail')}", "inject")
    raise AttachError(f"reading process {t.pid} (Python {ver}) failed: {doc.get('detail')}", "read")


def _ptrace_scope() -> str | None:
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            return f.read().strip()
    except OSError:
        return None
