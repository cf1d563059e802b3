"""The agent's Unix socket: where it lives, who may connect.

``$XDG_RUNTIME_DIR/taskleak/<pid>.sock`` (else ``/tmp/taskleak-<uid>/<pid>.sock``),
the socket 0600 in a directory 0700 that must belong to the process's user
(a directory someone else made in /tmp is refused, never used). Every
connection's peer is checked with SO_PEERCRED: only the same user (and
root, who can read the process's memory anyway) is answered. Sockets left
by processes that are gone are removed when an agent starts and when
``taskleak ps`` looks.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections.abc import Iterator

__all__ = [
    "socket_dir",
    "socket_path",
    "candidate_dirs",
    "prepare_dir",
    "peer_credentials",
    "peer_allowed",
    "clean_stale",
    "list_agents",
    "pid_alive",
    "AgentDirError",
]

_SUFFIX = ".sock"


class AgentDirError(OSError):
    """The socket directory is unsafe (wrong owner or mode) or cannot be made."""


def socket_dir(uid: int | None = None, environ: dict[str, str] | None = None) -> str:
    """The agent directory for `uid` (default: this process's user)."""
    env = os.environ if environ is None else environ
    uid = os.geteuid() if uid is None else uid
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "taskleak")
    return f"/tmp/taskleak-{uid}"


def socket_path(pid: int | None = None, uid: int | None = None, environ: dict[str, str] | None = None) -> str:
    return os.path.join(socket_dir(uid, environ), f"{os.getpid() if pid is None else pid}{_SUFFIX}")


def candidate_dirs(uid: int, environ: dict[str, str] | None = None) -> list[str]:
    """Where a process of `uid` (with `environ`, if known) may have put its socket."""
    out = []
    if environ is not None:
        out.append(socket_dir(uid, environ))
    out.append(socket_dir(uid, {"XDG_RUNTIME_DIR": f"/run/user/{uid}"}))
    out.append(socket_dir(uid, {}))
    if uid == os.geteuid():
        out.append(socket_dir(uid))
    seen: list[str] = []
    for d in out:
        if d not in seen:
            seen.append(d)
    return seen


def prepare_dir(path: str) -> None:
    """Create `path` 0700, or check that an existing one is ours and 0700."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise AgentDirError(e.errno, f"taskleak agent: cannot create {path}: {e.strerror}") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise AgentDirError(f"taskleak agent: {path} exists and is not a directory; refusing to use it")
    if st.st_uid != os.geteuid():
        raise AgentDirError(
            f"taskleak agent: {path} belongs to uid {st.st_uid}, not to this process's user "
            f"{os.geteuid()}; refusing to use it (remove it, or set XDG_RUNTIME_DIR)"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


_UCRED = struct.Struct("3i")


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


def peer_allowed(uid: int) -> bool:
    return uid == os.geteuid() or uid == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sockets(directory: str) -> Iterator[tuple[int, str]]:
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for n in names:
        if n.endswith(_SUFFIX) and n[: -len(_SUFFIX)].isdigit():
            yield int(n[: -len(_SUFFIX)]), os.path.join(directory, n)


def clean_stale(directory: str) -> list[int]:
    """Remove sockets of processes that no longer exist; returns their pids.
    Only sockets we own are touched."""
    gone = []
    for pid, path in _sockets(directory):
        if pid_alive(pid):
            continue
        try:
            if os.lstat(path).st_uid == os.geteuid() or os.geteuid() == 0:
                os.unlink(path)
                gone.append(pid)
        except OSError:
            pass
    return gone


def list_agents() -> list[tuple[int, str]]:
    """``(pid, socket path)`` of every live agent this user can see; root
    looks in every user's directories. Stale sockets are cleaned on the way."""
    dirs = [socket_dir()]
    dirs.append(socket_dir(environ={}))
    if os.geteuid() == 0:
        try:
            dirs += [os.path.join("/tmp", n) for n in os.listdir("/tmp") if n.startswith("taskleak-")]
        except OSError:
            pass
        try:
            dirs += [os.path.join("/run/user", n, "taskleak") for n in os.listdir("/run/user")]
        except OSError:
            pass
    found: dict[int, str] = {}
    for d in dict.fromkeys(dirs):
        clean_stale(d)
        for pid, path in _sockets(d):
            found.setdefault(pid, path)
    return sorted(found.items())
