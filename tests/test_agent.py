"""The agent (serve(unix=True)): where its socket lives, its permissions, the
peer-uid check on every connection (a client of another uid is refused),
stale sockets of dead processes, unsafe directories, fork."""

from __future__ import annotations

import json
import os
import pwd
import socket
import stat
import subprocess
import sys

import pytest
from live_service import get, get_json, raw

import taskleak
from taskleak.monitor import agent as agent_mod

NOBODY = pwd.getpwnam("nobody").pw_uid


@pytest.fixture
def runtime_dir(tmp_path, monkeypatch):
    d = tmp_path / "run"
    d.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(d))
    return d


@pytest.fixture
def agent(runtime_dir):
    srv = taskleak.serve(unix=True, interval=0.05)
    yield srv
    srv.close()


def test_socket_path_and_permissions(agent, runtime_dir):
    assert agent.unix and agent.path == str(runtime_dir / "taskleak" / f"{os.getpid()}.sock")
    assert agent.url == f"unix:{agent.path}"
    st = os.stat(agent.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    d = os.stat(os.path.dirname(agent.path))
    assert stat.S_IMODE(d.st_mode) == 0o700 and d.st_uid == os.geteuid()
    # Same HTTP endpoints over the socket, no token needed.
    info = get_json("", "/api/info", unix=agent.path)
    assert info["pid"] == os.getpid() and info["agent"] is True
    # One agent per process: asking again returns it.
    assert taskleak.serve(unix=True) is agent


def test_without_xdg_runtime_dir_the_socket_is_in_tmp(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    srv = taskleak.serve(unix=True, interval=0.05)
    try:
        assert srv.path == f"/tmp/taskleak-{os.geteuid()}/{os.getpid()}.sock"
        assert stat.S_IMODE(os.stat(f"/tmp/taskleak-{os.geteuid()}").st_mode) == 0o700
    finally:
        srv.close()
    assert not os.path.exists(srv.path)


def _as_nobody(fn) -> dict:
    """Run fn() in a forked child that has become uid nobody; return what it reported."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(pwd.getpwnam("nobody").pw_gid)
            os.setuid(NOBODY)
            out = fn()
        except BaseException as e:  # report, never run the parent's code
            out = {"exception": f"{type(e).__name__}: {e}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        data += b
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def test_another_user_cannot_connect(agent):
    def connect() -> dict:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(agent.path)
            return {"connected": True}
        except OSError as e:
            return {"errno": e.errno}

    assert _as_nobody(connect) == {"errno": 13}   # EACCES: 0700 directory, 0600 socket


def test_peer_of_another_uid_is_refused_even_if_permissions_are_loosened(agent):
    # Defence in depth: if someone opens up the directory and the socket,
    # SO_PEERCRED still refuses a peer of another uid, on every connection.
    os.chmod(os.path.dirname(agent.path), 0o711)
    os.chmod(agent.path, 0o666)

    def ask() -> dict:
        resp = raw("", b"GET /api/tasks HTTP/1.1\r\nHost: localhost\r\n\r\n", unix=agent.path)
        return {"resp": resp.decode("latin-1")}

    out = _as_nobody(ask)
    assert out["resp"].startswith("HTTP/1.1 403 "), out
    assert f"peer uid {NOBODY} is not allowed" in out["resp"] and "stuck" not in out["resp"]
    # The owner (and root) still gets answers on the same socket.
    assert get("", "/api/tasks", unix=agent.path)[0] == 200


def test_stale_sockets_of_dead_processes_are_removed(runtime_dir):
    d = runtime_dir / "taskleak"
    d.mkdir(mode=0o700)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    dead = d / f"{p.pid}.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dead))
    s.close()
    alive = d / f"{os.getppid()}.sock"   # a live pid: kept
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(alive))
    s.close()
    srv = taskleak.serve(unix=True, interval=0.05)
    try:
        assert not dead.exists() and alive.exists()
        assert (p.pid not in dict(agent_mod.list_agents()))
    finally:
        srv.close()
        alive.unlink()


def test_a_directory_of_another_user_is_refused(runtime_dir):
    d = runtime_dir / "taskleak"
    d.mkdir(mode=0o700)
    os.chown(d, NOBODY, -1)
    with pytest.raises(OSError, match="belongs to uid"):
        taskleak.serve(unix=True, interval=0.05)
    os.chown(d, os.geteuid(), -1)
    os.chmod(d, 0o777)    # ours but too open: tightened
    srv = taskleak.serve(unix=True, interval=0.05)
    try:
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    finally:
        srv.close()


def test_a_forked_child_gets_an_agent_of_its_own(agent):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            path = agent_mod.socket_path()
            ok = os.path.exists(path)
            info = get_json("", "/api/info", unix=path) if ok else {}
            os.write(w, json.dumps({"path": path, "pid": info.get("pid")}).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = os.read(r, 65536)
    os.close(r)
    os.waitpid(pid, 0)
    out = json.loads(data)
    assert out["path"].endswith(f"/{pid}.sock") and out["pid"] == pid
    # The parent's agent is untouched by the child.
    assert os.path.exists(agent.path) and get_json("", "/api/info", unix=agent.path)["pid"] == os.getpid()
