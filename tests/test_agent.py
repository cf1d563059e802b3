"""The agent (serve(unix=True)): where its socket lives, its permissions, the
peer-uid check on every connection (a client of another uid is refused),
stale sockets of dead processes, unsafe directories, fork."""

from __future__ import annotations

import json
import os
import pathlib
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

import pytest
from live_service import get, get_json

import taskleak
from taskleak.live import agent as agent_mod

NOBODY = pwd.getpwnam("nobody").pw_uid


@pytest.fixture
def runtime_dir(monkeypatch):
    # Traversable by others (like /run/user/UID's parent): only the agent's
    # own directory and socket modes stand between another user and it.
    d = pathlib.Path(tempfile.mkdtemp(prefix="taskleak-test-run-", dir="/tmp"))
    os.chmod(d, 0o711)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


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


def test_the_socket_file_appears_only_once_it_listens(runtime_dir, monkeypatch):
    # `dump --inject` connects as soon as it sees the file: a file bound but
    # not yet listening refused it (a CI failure on 3.15).
    final = runtime_dir / "taskleak" / f"{os.getpid()}.sock"
    seen_before_listen = []
    real_listen = socket.socket.listen

    def listen(self, *a):
        if self.family == socket.AF_UNIX:
            seen_before_listen.append(final.exists())
        return real_listen(self, *a)

    monkeypatch.setattr(socket.socket, "listen", listen)
    srv = taskleak.serve(unix=True, interval=0.05)
    try:
        assert seen_before_listen == [False]
        assert get_json("", "/api/info", unix=srv.path)["pid"] == os.getpid()
        assert sorted(os.listdir(final.parent)) == [final.name]  # no staging file left behind
        assert stat.S_IMODE(os.stat(final).st_mode) == 0o600
    finally:
        srv.close()


def test_without_xdg_runtime_dir_the_socket_is_in_tmp(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    srv = taskleak.serve(unix=True, interval=0.05)
    try:
        assert srv.path == f"/tmp/taskleak-{os.geteuid()}/{os.getpid()}.sock"
        assert stat.S_IMODE(os.stat(f"/tmp/taskleak-{os.geteuid()}").st_mode) == 0o700
    finally:
        srv.close()
    assert not os.path.exists(srv.path)


SYSTEM_PYTHON = "/usr/bin/python3"  # readable by nobody (the venv's interpreter may live under /root)


def _as_nobody(code: str) -> dict:
    """Run `code` (which prints one JSON line) as uid nobody; return what it printed.
    A process started with user= (no preexec_fn), never a fork of this one:
    this process runs a monitor's threads."""
    p = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", code],
        user=NOBODY,
        group=pwd.getpwnam("nobody").pw_gid,
        extra_groups=[],
        capture_output=True,
        timeout=60,
        cwd="/",
    )
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def test_another_user_cannot_connect(agent):
    code = f"""
import json, os, socket
assert os.geteuid() == {NOBODY}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect({agent.path!r})
    print(json.dumps({{"connected": True}}))
except OSError as e:
    print(json.dumps({{"errno": e.errno}}))
"""
    assert _as_nobody(code) == {"errno": 13}  # EACCES: 0700 directory, 0600 socket


def test_peer_of_another_uid_is_refused_even_if_permissions_are_loosened(agent):
    # Defence in depth: if someone opens up the directory and the socket,
    # SO_PEERCRED still refuses a peer of another uid, on every connection.
    os.chmod(os.path.dirname(agent.path), 0o711)
    os.chmod(agent.path, 0o666)

    code = f"""
import json, os, socket
assert os.geteuid() == {NOBODY}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect({agent.path!r})
s.sendall(b"GET /api/tasks HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n")
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
print(json.dumps({{"resp": out.decode("latin-1")}}))
"""
    out = _as_nobody(code)
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
    alive = d / f"{os.getppid()}.sock"  # a live pid: kept
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(alive))
    s.close()
    srv = taskleak.serve(unix=True, interval=0.05)
    try:
        assert not dead.exists() and alive.exists()
        assert p.pid not in dict(agent_mod.list_agents())
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
    os.chmod(d, 0o777)  # ours but too open: tightened
    srv = taskleak.serve(unix=True, interval=0.05)
    try:
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    finally:
        srv.close()


FORK_PROBE = """
import os, signal, sys, time, taskleak
m = taskleak.Monitor(interval=1.0).start()
time.sleep(0.2)
pid = os.fork()
if pid == 0:
    os._exit(0)
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    if os.waitpid(pid, os.WNOHANG)[0]:
        print("ok")
        break
    time.sleep(0.05)
else:                      # never leave a hung child behind
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print("hang")
m.stop()
"""

PREFORK_SERVER = """
import json, os, sys, time, taskleak
from taskleak.live import agent
srv = taskleak.serve(unix=True, interval=0.05)
time.sleep(0.2)
r, w = os.pipe()
pid = os.fork()          # what gunicorn --preload does after the master started the agent
if pid == 0:
    os.close(r)
    path = agent.socket_path()
    for _ in range(200):
        if os.path.exists(path):
            break
        time.sleep(0.01)
    from live_service import get_json
    info = get_json("", "/api/info", unix=path)
    os.write(w, json.dumps({"path": path, "pid": info["pid"]}).encode())
    os._exit(0)
os.close(w)
out = json.loads(os.read(r, 65536))
os.waitpid(pid, 0)
from live_service import get_json
out["parent_ok"] = os.path.exists(srv.path) and get_json("", "/api/info", unix=srv.path)["pid"] == os.getpid()
out["child"] = pid
print(json.dumps(out))
srv.close()
"""


def test_a_forked_child_gets_an_agent_of_its_own(runtime_dir):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__))
    # A monitor's sampler waiting at fork time once hung the child (and so
    # the parent's waitpid): the probe must see the child end.
    probe = subprocess.run([sys.executable, "-c", FORK_PROBE], timeout=60, capture_output=True, text=True, env=env)
    assert probe.stdout.strip() == "ok", probe.stdout + probe.stderr
    p = subprocess.run([sys.executable, "-c", PREFORK_SERVER], timeout=60, capture_output=True, env=env)
    assert p.returncode == 0, p.stderr.decode()
    out = json.loads(p.stdout)
    assert out["path"].endswith(f"/{out['child']}.sock") and out["pid"] == out["child"]
    assert out["parent_ok"] is True


def test_the_socket_file_goes_with_the_process(runtime_dir):
    code = "import taskleak, os; srv = taskleak.serve(unix=True, interval=0.1); print(srv.path, flush=True)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    path = p.stdout.strip()
    assert path.endswith(".sock") and str(runtime_dir) in path and not os.path.exists(path)
