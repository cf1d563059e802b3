"""Talking to another process's agent: find the process, check that we may
read it, find its socket, ask it over HTTP on the Unix socket.

Every way this can fail ends in an :class:`AttachError` whose message says
what happened and what to do next; the commands print it and exit 1.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

from ..live.agent import candidate_dirs

__all__ = ["AttachError", "Target", "target", "Agent", "find_agent", "NO_AGENT_HELP"]

MAX_REPLY_BYTES = 64 << 20

NO_AGENT_HELP = (
    "start one in the process with taskleak.serve(unix=True), run it under `taskleak run --monitor`, "
    "or set TASKLEAK_MONITOR=1 in its environment"
)


class AttachError(Exception):
    """A clear, user-facing reason why a process cannot be inspected."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind  # "gone", "other-user", "no-agent", "ptrace", "version", "malformed", ...


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


@dataclass
class Target:
    """A process we are about to inspect."""

    pid: int
    uid: int
    exe: str | None  # resolved /proc/PID/exe, None if unreadable
    environ: dict[str, str] | None
    cmdline: list[str] | None

    @property
    def python_version(self) -> tuple[int, int] | None:
        """(major, minor) guessed from the executable's name or its libpython
        mapping; None when it does not look like CPython."""
        if self.exe:
            m = re.search(r"python(\d)\.(\d+)", os.path.basename(self.exe.replace(" (deleted)", "")))
            if m:
                return int(m.group(1)), int(m.group(2))
        try:
            with open(f"/proc/{self.pid}/maps") as f:
                m = re.search(r"libpython(\d)\.(\d+)", f.read())
            if m:
                return int(m.group(1)), int(m.group(2))
        except OSError:
            pass
        return None

    @property
    def looks_like_python(self) -> bool:
        if self.python_version is not None:
            return True
        return bool(self.exe and re.match(r"python\d*$", os.path.basename(self.exe.replace(" (deleted)", ""))))


def _parse_pid(pid: Any) -> int:
    try:
        n = int(pid)
    except (TypeError, ValueError):
        raise AttachError(f"not a process id: {pid!r}", "usage") from None
    if n <= 0:
        raise AttachError(f"not a process id: {pid!r}", "usage")
    return n


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return raw[raw.rfind(b")") + 1 :].decode("ascii", "replace").split()


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, D, T, Z, X...), None if unreadable."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def _parent(pid: int) -> str:
    fields = _stat_fields(pid)
    return fields[1] if len(fields) > 1 else "?"


def target(pid: Any) -> Target:
    """The process `pid`, checked: it exists and we may read it."""
    n = _parse_pid(pid)
    try:
        st = os.stat(f"/proc/{n}")
    except FileNotFoundError:
        raise AttachError(f"process {n} does not exist (it has exited, or the pid is wrong)", "gone") from None
    state = _state(n)
    if state in ("Z", "X", "x"):
        # Its memory is gone: no agent answers, nothing can be read from outside.
        raise AttachError(
            f"process {n} is a zombie: it has exited and only waits for its parent "
            f"(pid {_parent(n)}) to collect its exit status; there is nothing left to inspect"
            if state == "Z"
            else f"process {n} has exited (dead, being removed); there is nothing left to inspect",
            "gone",
        )
    me = os.geteuid()
    if st.st_uid != me and me != 0:
        raise AttachError(
            f"process {n} belongs to {_user(st.st_uid)}, not to you ({_user(me)}): "
            f"run taskleak as that user (e.g. sudo -u {pwd_name(st.st_uid)} taskleak ...)",
            "other-user",
        )
    exe = environ = cmdline = None
    try:
        exe = os.readlink(f"/proc/{n}/exe")
    except OSError:
        pass
    try:
        with open(f"/proc/{n}/environ", "rb") as f:
            environ = {}
            for item in f.read().split(b"\0"):
                k, sep, v = item.partition(b"=")
                if sep:
                    environ[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
    except OSError:
        pass
    try:
        with open(f"/proc/{n}/cmdline", "rb") as f:
            cmdline = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        pass
    if not os.path.exists(f"/proc/{n}"):
        raise AttachError(f"process {n} has exited", "gone")
    return Target(n, st.st_uid, exe, environ, cmdline)


def pwd_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class Agent:
    """The agent of one process, reached over its Unix socket."""

    def __init__(self, pid: int, path: str, timeout: float = 30.0) -> None:
        self.pid = pid
        self.path = path
        self.timeout = timeout

    def get(self, path: str) -> tuple[int, bytes]:
        """``(status, body)`` of ``GET path``."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            try:
                s.connect(self.path)
            except FileNotFoundError:
                raise AttachError(
                    f"process {self.pid}'s agent went away (socket {self.path} is gone)", "gone"
                ) from None
            except ConnectionRefusedError:
                if not os.path.exists(f"/proc/{self.pid}"):
                    raise AttachError(f"process {self.pid} has exited", "gone") from None
                raise AttachError(
                    f"process {self.pid} has an agent socket ({self.path}) but nobody answers on it: "
                    f"the agent was stopped; {NO_AGENT_HELP}",
                    "no-agent",
                ) from None
            except PermissionError:
                raise AttachError(
                    f"permission denied on {self.path}: the process belongs to another user; run taskleak as that user",
                    "other-user",
                ) from None
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode("ascii"))
            chunks = []
            size = 0
            deadline = time.monotonic() + self.timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError()
                s.settimeout(left)
                b = s.recv(1 << 16)
                if not b:
                    break
                size += len(b)
                if size > MAX_REPLY_BYTES:
                    raise AttachError(
                        f"malformed reply from process {self.pid}'s agent: larger than {MAX_REPLY_BYTES} bytes",
                        "malformed",
                    )
                chunks.append(b)
        except TimeoutError:
            raise AttachError(
                f"process {self.pid}'s agent did not answer within {self.timeout:.0f}s "
                "(is the process stopped, or the machine overloaded?)",
                "timeout",
            ) from None
        except ConnectionResetError:
            raise AttachError(
                f"process {self.pid}'s agent closed the connection (did the process exit?)", "gone"
            ) from None
        finally:
            s.close()
        return _parse_reply(self.pid, b"".join(chunks))

    def get_json(self, path: str) -> Any:
        status, body = self.get(path)
        if status != 200:
            raise AttachError(
                f"process {self.pid}'s agent answered {status}: {body.decode('utf-8', 'replace').strip()[:500]}",
                "not-found" if status == 404 else "refused",
            )
        try:
            return json.loads(body)
        except ValueError:
            raise AttachError(
                f"malformed reply from process {self.pid}'s agent: not JSON ({body[:80]!r}...)", "malformed"
            ) from None

    def get_text(self, path: str) -> str:
        status, body = self.get(path)
        if status != 200:
            raise AttachError(
                f"process {self.pid}'s agent answered {status}: {body.decode('utf-8', 'replace').strip()[:500]}",
                "refused",
            )
        return body.decode("utf-8", "replace")


_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?$")


def _parse_reply(pid: int, raw: bytes) -> tuple[int, bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    m = _STATUS.match(lines[0]) if sep else None
    if m is None:
        raise AttachError(
            f"malformed reply from process {pid}'s agent: not an HTTP response "
            f"(starts with {raw[:40]!r}); is something else listening on its socket?",
            "malformed",
        )
    length = None
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            try:
                length = int(v.strip())
            except ValueError:
                raise AttachError(
                    f"malformed reply from process {pid}'s agent: bad Content-Length", "malformed"
                ) from None
    if length is not None and length != len(body):
        raise AttachError(
            f"malformed reply from process {pid}'s agent: {len(body)} bytes of a "
            f"{length}-byte answer (the process exited mid-answer?)",
            "malformed",
        )
    return int(m.group(1)), body


def find_agent(t: Target, timeout: float = 30.0) -> Agent | None:
    """The agent of `t`, or None if it has none."""
    for d in candidate_dirs(t.uid, t.environ):
        p = os.path.join(d, f"{t.pid}.sock")
        if os.path.exists(p):
            return Agent(t.pid, p, timeout)
    return None
