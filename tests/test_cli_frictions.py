"""The command line's rough edges, as a new user met them (issue 20, item 7):
output paths checked before the program runs, a reader that goes away
(`top PID | head`), the program's own errors shown as python shows them,
SIGTERM's report, `ps` counts and width, and a zombie process."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import taskleak.cli.ps as ps_module

ROOT = pathlib.Path(__file__).resolve().parent.parent


def taskleak(*args: str, cwd: str | os.PathLike = ROOT, timeout: float = 60, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "taskleak", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def script(tmp_path: pathlib.Path, body: str, name: str = "prog.py") -> str:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return str(p)


# ---- output paths: checked before the program runs ---------------------------------


@pytest.mark.parametrize(
    "where, message",
    [
        ("/proc/taskleak-x.json", "cannot write /proc/taskleak-x.json"),  # a directory nothing can be created in
        ("{tmp}/missing/r.json", "directory does not exist"),
        ("{tmp}", "{tmp} is a directory"),
    ],
)
def test_run_json_path_is_checked_before_the_program_runs(tmp_path, where, message):
    ran = tmp_path / "ran"
    prog = script(tmp_path, f"open({str(ran)!r}, 'w').close()\n")
    p = taskleak("run", "--json", where.format(tmp=tmp_path), prog)
    assert p.returncode == 2, p.stderr  # the documented usage status (docs/usage.md)
    assert p.stderr.startswith("usage: taskleak run "), p.stderr
    assert f"--json: {message.format(tmp=tmp_path)}" in p.stderr
    assert "Traceback" not in p.stderr
    assert not ran.exists()  # the program did not run


def test_run_json_path_check_leaves_no_file_behind(tmp_path):
    prog = script(tmp_path, "import sys; sys.exit(3)\n")
    j = tmp_path / "r.json"
    p = taskleak("run", "--json", str(j), prog)
    assert p.returncode == 3, p.stderr
    assert json.loads(j.read_text())["leak_count"] == 0
    # An existing file is tried without being truncated: a failing check would leave it as it was.
    assert not list(tmp_path.glob("r.json.*"))


def test_json_that_cannot_be_written_at_exit_keeps_the_programs_status(tmp_path):
    # The check passed, then the program removed the directory: a message, not a traceback.
    out = tmp_path / "out"
    out.mkdir()
    prog = script(tmp_path, f"import shutil, sys\nshutil.rmtree({str(out)!r})\nsys.exit(3)\n")
    p = taskleak("run", "--json", str(out / "r.json"), prog)
    assert p.returncode == 3, p.stderr
    assert "taskleak run: --json: cannot write" in p.stderr and "Traceback" not in p.stderr


def test_snapshot_output_is_checked_before_the_process_is_asked(tmp_path):
    # Our own pid: it has no agent; the usage error comes before attaching is tried.
    p = taskleak("snapshot", str(os.getpid()), "-o", "/proc/taskleak-x.json")
    assert p.returncode == 2, p.stderr
    assert "taskleak snapshot: error: -o: cannot write /proc/taskleak-x.json" in p.stderr
    assert "Traceback" not in p.stderr and "agent" not in p.stderr


# ---- a reader that goes away ------------------------------------------------------------

SERVICE = r"""
import asyncio
import taskleak

async def stuck(ev):
    await ev.wait()

async def main():
    ev = asyncio.Event()
    early = [asyncio.create_task(stuck(ev), name=f"early-{i}") for i in range(5)]
    await asyncio.sleep(0)
    srv = taskleak.serve(unix=True, interval=0.05)   # started late, as --inject does
    late = [asyncio.create_task(stuck(ev), name=f"late-{i}") for i in range(2)]
    await asyncio.sleep(0.3)
    print("ready", flush=True)
    while True:
        await asyncio.sleep(0.02)

asyncio.run(main())
"""


@pytest.fixture
def service(monkeypatch):
    d = tempfile.mkdtemp(prefix="taskleak-test-run-", dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", d)
    p = subprocess.Popen([sys.executable, "-c", SERVICE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    line = p.stdout.readline()
    assert line == b"ready\n", (line, p.stderr.read() if p.poll() is not None else "")
    yield p
    p.kill()
    p.wait()
    p.stdout.close()
    p.stderr.close()
    shutil.rmtree(d, ignore_errors=True)


def test_top_piped_into_head_ends_quietly(service):
    top = subprocess.Popen(
        [sys.executable, "-m", "taskleak", "top", str(service.pid), "-d", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert top.stdout.readline().startswith(b"taskleak top - pid ")
    top.stdout.close()  # what `head -1` does once it has its line
    assert top.wait(timeout=30) == 1
    err = top.stderr.read().decode()
    top.stderr.close()
    assert err == "", err  # no BrokenPipeError traceback, no "Exception ignored"


def test_ps_counts_every_task_as_dump_does(service):
    # 5 tasks were created before the agent (and taskleak's creation hook)
    # started: the monitor's sample does not count them, dump does.
    ps = taskleak("ps", cwd="/")
    assert ps.returncode == 0, ps.stderr
    [row] = [line for line in ps.stdout.splitlines() if line.split()[0] == str(service.pid)]
    tasks, pending = row.split()[3:5]
    dump = taskleak("dump", str(service.pid), "--json", cwd="/")
    assert dump.returncode == 0, dump.stderr
    doc = json.loads(dump.stdout)
    assert doc["task_count"] == 8  # 7 stuck + main()
    assert (int(tasks), int(pending)) == (doc["task_count"], doc["states"]["pending"])


def test_ps_shows_the_whole_command_unless_the_terminal_is_too_narrow():
    long = "/srv/app/.venv/bin/gunicorn app:create_app --worker-class aiohttp.GunicornWebWorker " + "x" * 100
    format_rows, MIN_COMMAND = ps_module.format_rows, ps_module.MIN_COMMAND
    rows = [{"pid": 7, "source": "agent", "command": long, "user": "app", "python": "3.12", "tasks": 3}]
    piped = format_rows(rows, None)[1]
    assert piped.endswith(long)  # not a terminal: whole
    wide = format_rows(rows, 400)[1]
    assert wide.endswith(long)  # it fits
    narrow = format_rows(rows, 100)[1]
    assert len(narrow) == 100 and narrow.endswith("...") and "/srv/app/.venv/bin/gunicorn" in narrow
    tiny = format_rows(rows, 10)[1]  # never below MIN_COMMAND characters of the command
    assert tiny.endswith(long[: MIN_COMMAND - 3] + "...")


def test_ps_in_a_pipe_is_not_cut(service):
    # The command line of the service is `python -c <SERVICE>`: longer than any terminal.
    ps = taskleak("ps", cwd="/")
    [row] = [line for line in ps.stdout.splitlines() if line.split()[0] == str(service.pid)]
    assert row.rstrip().endswith("asyncio.run(main())")


# ---- the program's own errors, as python shows them ------------------------------------


def test_syntax_error_in_the_script_shows_no_taskleak_frames(tmp_path):
    prog = script(tmp_path, "import asyncio\ndef f(:\n    pass\n")
    p = taskleak("run", prog)
    py = subprocess.run([sys.executable, prog], capture_output=True, text=True)
    assert p.returncode == py.returncode == 1
    assert "taskleak" not in p.stderr.split("taskleak: no leaked tasks")[0], p.stderr
    assert "run.py" not in p.stderr and "_main_module" not in p.stderr
    assert "line 2" in p.stderr and "SyntaxError: invalid syntax" in p.stderr


def test_programs_exception_traceback_starts_at_the_program(tmp_path):
    prog = script(
        tmp_path,
        """
        import asyncio
        async def main():
            raise ValueError("boom")
        asyncio.run(main())
        """,
    )
    p = taskleak("run", prog)
    assert p.returncode == 1
    tb = p.stderr.split("ValueError: boom")[0]
    assert tb.startswith("Traceback (most recent call last):\n"), p.stderr
    first = tb.splitlines()[1]
    assert first.startswith("  File ") and first.endswith('prog.py", line 5, in <module>'), first
    assert os.path.join("taskleak", "cli") not in tb and "runpy" not in tb


# ---- SIGTERM ------------------------------------------------------------------------------


def test_sigterm_report_leaves_out_asyncio_runs_main_task(tmp_path):
    prog = script(
        tmp_path,
        """
        import asyncio
        async def forever():
            await asyncio.sleep(100)
        async def main():
            asyncio.create_task(forever(), name="forgotten")
            print("ready", flush=True)
            await asyncio.sleep(100)
        asyncio.run(main())
        """,
    )
    j = tmp_path / "r.json"
    p = subprocess.Popen(
        [sys.executable, "-m", "taskleak", "run", "--json", str(j), prog],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline() == "ready\n"
    time.sleep(0.5)  # the loop is idle in select(): SIGTERM interrupts asyncio.run() with main() pending
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGTERM, err
    assert "1 leaked task in" in err and "forever()" in err
    assert "main()" not in err, err
    report = json.loads(j.read_text())
    assert [e["coro"] for e in report["loss_events"]] == ["forever"]


def test_sigterm_while_a_callback_runs_is_not_lost(tmp_path):
    # The signal handler runs in whatever Python code is executing; asyncio
    # hands any exception but SystemExit/KeyboardInterrupt raised in a
    # callback to the loop's exception handler, and the program ran on.
    prog = script(
        tmp_path,
        """
        import asyncio, os, signal
        async def main():
            asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)
            await asyncio.sleep(30)
            print("not stopped")
        asyncio.run(main())
        """,
    )
    t0 = time.monotonic()
    p = taskleak("run", prog)
    assert time.monotonic() - t0 < 25
    assert p.returncode == -signal.SIGTERM, p.stderr
    assert "not stopped" not in p.stdout and "Exception in callback" not in p.stderr
    assert "no leaked tasks" in p.stderr


# ---- a process that is gone but not reaped -------------------------------------------------


@pytest.mark.parametrize("command", [["dump"], ["top", "-n", "1"], ["snapshot", "-o", "{tmp}/s.json"], ["why", "x"]])
def test_zombie_process_is_named_as_such(tmp_path, command):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(200):  # until it has exited (and, not waited for, is a zombie)
            with open(f"/proc/{child.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        else:
            pytest.fail("the child never became a zombie")
        args = [a.format(tmp=tmp_path) for a in command]
        p = taskleak(args[0], str(child.pid), *args[1:])
    finally:
        child.wait()
    assert p.returncode == 1, p.stderr
    assert re.search(rf"process {child.pid} is a zombie: .*nothing left to inspect", p.stderr), p.stderr
    assert "agent" not in p.stderr and "Traceback" not in p.stderr


NO_AGENT_SERVICE = r"""
import asyncio

async def worker(q):
    while True:
        await q.get()

async def main():
    q = asyncio.Queue()
    workers = [asyncio.create_task(worker(q), name=f"worker-{i}") for i in range(12)]
    await asyncio.sleep(0.1)
    print("ready", flush=True)
    while True:                       # not idle in epoll: remote_exec runs between bytecodes
        await asyncio.sleep(0.02)

asyncio.run(main())
"""


@pytest.mark.skipif(sys.version_info < (3, 14), reason="--inject needs CPython 3.14+ (runs in make test PY=3.14)")
def test_ps_after_inject_counts_what_dump_shows(monkeypatch):
    d = tempfile.mkdtemp(prefix="taskleak-test-run-", dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", d)
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_DISABLE_REMOTE_DEBUG"}
    p = subprocess.Popen([sys.executable, "-c", NO_AGENT_SERVICE], stdout=subprocess.PIPE, cwd="/", env=env)
    try:
        assert p.stdout.readline() == b"ready\n"
        dump = taskleak("dump", "--inject", "--json", str(p.pid), cwd="/")
        assert dump.returncode == 0, dump.stderr
        doc = json.loads(dump.stdout)
        assert doc["task_count"] == 13  # 12 workers + main(), all created before the agent
        ps = taskleak("ps", cwd="/")
        [row] = [line for line in ps.stdout.splitlines() if line.split()[0] == str(p.pid)]
        assert "agent" in row
        assert [int(x) for x in row.split()[3:5]] == [13, 13], row
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
        shutil.rmtree(d, ignore_errors=True)


def test_sigterm_under_monitor_cleans_up_before_exiting_by_the_signal(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    prog = script(
        tmp_path,
        """
        import asyncio
        async def main():
            print("ready", flush=True)
            await asyncio.sleep(100)
        asyncio.run(main())
        """,
    )
    p = subprocess.Popen(
        [sys.executable, "-m", "taskleak", "run", "--monitor=50ms", prog],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline() == "ready\n"
    sock = tmp_path / "taskleak" / f"{p.pid}.sock"
    for _ in range(500):
        if sock.exists():
            break
        time.sleep(0.01)
    assert sock.exists()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGTERM, err
    assert "no leaked tasks" in err and re.search(r"taskleak monitor: \d+ samples, 0 alerts", err), err
    assert not sock.exists()  # the agent's socket was removed before the signal ended the process
