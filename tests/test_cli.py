"""`taskleak run`: the main job, on the bundled example and on small programs."""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "leaky_service.py")


def taskleak(*args, cwd=ROOT, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "taskleak", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def bug_lines():
    """line number -> description, from the `# BUG:` markers in the example."""
    out = {}
    with open(EXAMPLE) as f:
        for n, line in enumerate(f, 1):
            if re.match(r"^\s+\S.*\)\s+# BUG:", line):  # code lines, not the docstring
                out[n] = line.split("# BUG:")[1].strip()
    return out


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    j = tmp_path_factory.mktemp("report") / "report.json"
    proc = taskleak("run", "--json", str(j), "examples/leaky_service.py")
    return proc, json.loads(j.read_text())


def test_run_json_keys_are_the_documented_ones(example_run):
    _, report = example_run
    doc = open(os.path.join(ROOT, "docs", "json-schema.md")).read()
    block = doc.split("`taskleak run --json FILE` writes:", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    documented = set(re.findall(r'"(\w+)":', block))
    # blocked_loops is written only with --blocking (docs/json-schema.md says so)
    assert "blocked_loops" in documented and "blocked_loops" not in report
    assert set(report) == documented - {"blocked_loops"}
    assert report["leak_count"] == (
        len(report["loss_events"]) + len(report["pending_at_exit"]) + len(report["done_retained_at_exit"])
    )
    assert report["pid"] > 0 and report["forked_from"] is None


def test_example_report_points_at_each_buggy_line(example_run):
    proc, _ = example_run
    assert proc.returncode == 0, proc.stderr
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        import leaky_service
    finally:
        sys.path.pop(0)
    exp = leaky_service.EXPECTED_LEAKS
    err = proc.stderr
    bugs = bug_lines()
    assert len(bugs) == 3
    for line in bugs:
        assert f"examples/leaky_service.py:{line} in " in err, (line, err)
    total = exp["heartbeat"] + exp["lost_waiter"] + exp["unretrieved_exception"]
    assert f"taskleak: {total} leaked tasks in examples/leaky_service.py" in err
    assert f"== {exp['heartbeat'] + exp['lost_waiter']} tasks pending when their event loop shut down" in err
    assert re.search(rf"^{exp['heartbeat']} tasks, heartbeat\(\), waiting on asyncio\.sleep\(\)", err, re.M)
    assert re.search(rf"^{exp['lost_waiter']} tasks, backend_fetch\(\), waiting on a Future", err, re.M)
    assert re.search(rf"^{exp['unretrieved_exception']} tasks, audit_log\(\), raised ValueError", err, re.M)


def test_example_json_report(example_run):
    _, report = example_run
    assert report["schema"] == 1
    kinds = {}
    for e in report["loss_events"]:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    assert kinds == {"pending-at-shutdown": 25, "never-retrieved": 3}
    hb = [e for e in report["loss_events"] if e["coro"] == "heartbeat"]
    line = [n for n, d in bug_lines().items() if "heartbeat" in d][0]
    assert all(any(f["lineno"] == line for f in e["created_at"]) for e in hb)
    assert all(e["stack"][-1]["function"] == "sleep" for e in hb)


def _script(tmp_path, body):
    p = tmp_path / "prog.py"
    p.write_text(textwrap.dedent(body))
    return str(p)


def test_clean_program_reports_no_leaks_and_keeps_status(tmp_path):
    prog = _script(
        tmp_path,
        """
        import asyncio, sys
        async def main():
            await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))
        asyncio.run(main())
        print("args", sys.argv[1:])
        sys.exit(3)
    """,
    )
    proc = taskleak("run", "--fail-on-leak", prog, "a", "--b")
    assert proc.returncode == 3
    assert "args ['a', '--b']" in proc.stdout
    assert "taskleak: no leaked tasks" in proc.stderr


def test_fail_on_leak_sets_status(tmp_path):
    prog = _script(
        tmp_path,
        """
        import asyncio
        async def main():
            asyncio.create_task(asyncio.Event().wait())
            await asyncio.sleep(0)
        asyncio.run(main())
    """,
    )
    assert taskleak("run", prog).returncode == 0
    proc = taskleak("run", "--fail-on-leak", prog)
    assert proc.returncode == 1
    assert "1 leaked task in" in proc.stderr
    assert "prog.py:4 in main" in proc.stderr


def test_module_mode(tmp_path):
    (tmp_path / "leakymod.py").write_text(
        textwrap.dedent("""
        import asyncio
        async def main():
            asyncio.create_task(asyncio.sleep(30), name="mod-task")
            await asyncio.sleep(0)
        if __name__ == "__main__":
            asyncio.run(main())
    """)
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "taskleak", "run", "-m", "leakymod"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "mod-task" in proc.stderr and "leakymod.py:4 in main" in proc.stderr


def test_program_exception_gives_status_1(tmp_path):
    prog = _script(tmp_path, "raise RuntimeError('bad program')\n")
    proc = taskleak("run", prog)
    assert proc.returncode == 1
    assert "RuntimeError: bad program" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "usage"),
        (["run"], "nothing to run"),
        (["run", "missing_script.py"], "no such script"),
        (["run", "--stack-depth", "0", "x.py"], "--stack-depth must be between 1 and 128"),
        (["run", "--stack-depth", "many", "x.py"], "invalid int value"),
        (["run", "--bogus", "x.py"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice"),
        (["run", "--json", "/nonexistent-dir/r.json", "examples/leaky_service.py"], "directory does not exist"),
    ],
)
def test_bad_arguments_give_usage_errors(args, message):
    proc = taskleak(*args)
    assert proc.returncode == 2
    assert message in proc.stderr


# ---- issue 9: what `taskleak run` reports, and how it exits ----------------------


def test_finished_tasks_still_held_at_exit_are_reported_with_their_holder(tmp_path):
    prog = _script(
        tmp_path,
        """
        import asyncio
        DONE = []
        async def quick():
            return 1
        async def main():
            t = asyncio.create_task(quick())
            await t
            DONE.append(t)
        asyncio.run(main())
    """,
    )
    j = tmp_path / "r.json"
    proc = taskleak("run", "--json", str(j), prog)
    assert proc.returncode == 0, proc.stderr
    assert "1 task finished but still held at exit" in proc.stderr
    assert "module __main__['DONE'][0]" in proc.stderr
    report = json.loads(j.read_text())
    assert report["leak_count"] == 1
    [held] = report["done_retained_at_exit"]
    assert held["coro"] == "quick" and held["held_by"] == ["module __main__['DONE'][0]"]


def test_module_mode_finds_modules_in_the_current_directory(tmp_path):
    pkg = tmp_path / "leakypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        textwrap.dedent("""
        import asyncio
        async def main():
            asyncio.create_task(asyncio.sleep(30), name="pkg-task")
            await asyncio.sleep(0)
        asyncio.run(main())
    """)
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "taskleak", "run", "-m", "leakypkg"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pkg-task" in proc.stderr and "leakypkg/__main__.py:4 in main" in proc.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "taskleak", "run", "-m", "no_such_mod"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert missing.returncode == 1
    assert "No module named no_such_mod" in missing.stderr and "Traceback" not in missing.stderr


def test_sigterm_reports_then_exits_by_the_signal(tmp_path):
    prog = _script(
        tmp_path,
        """
        import asyncio, os, signal
        async def forever():
            await asyncio.Event().wait()
        async def main():
            asyncio.create_task(forever(), name="stuck")
            await asyncio.sleep(0)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(30)
        asyncio.run(main())
    """,
    )
    proc = taskleak("run", prog)
    assert proc.returncode == -15
    assert "stuck" in proc.stderr and "pid " in proc.stderr
    assert "prog.py:6 in main" in proc.stderr


def test_forked_child_reports_its_own_leaks_under_its_pid(tmp_path):
    prog = _script(
        tmp_path,
        """
        import asyncio, os
        async def main(name):
            asyncio.create_task(asyncio.Event().wait(), name=name)
            await asyncio.sleep(0)
        pid = os.fork()
        if pid == 0:
            asyncio.run(main("child-task"))
        else:
            os.waitpid(pid, 0)
            asyncio.run(main("parent-task"))
    """,
    )
    j = tmp_path / "r.json"
    proc = taskleak("run", "--json", str(j), prog)
    assert proc.returncode == 0, proc.stderr
    parent = json.loads(j.read_text())
    children = [p for p in tmp_path.iterdir() if p.name.startswith("r.json.")]
    assert len(children) == 1
    child = json.loads(children[0].read_text())
    assert [e["task_name"] for e in parent["loss_events"]] == ["parent-task"]
    assert [e["task_name"] for e in child["loss_events"]] == ["child-task"]
    assert child["forked_from"] == parent["pid"] and child["pid"] == int(children[0].name.split(".")[-1])
    assert proc.stderr.count("taskleak: 1 leaked task in") == 2
    assert f"(pid {child['pid']}, forked from {parent['pid']})" in proc.stderr


def test_never_retrieved_shows_where_it_was_raised_and_json_stacks_stop_at_the_program(tmp_path):
    prog = _script(
        tmp_path,
        """
        import asyncio
        async def fail():
            raise ValueError("lost")
        async def main():
            asyncio.create_task(fail())
            await asyncio.sleep(0.01)
        asyncio.run(main())
    """,
    )
    j = tmp_path / "r.json"
    proc = taskleak("run", "--json", str(j), prog)
    assert proc.returncode == 0, proc.stderr
    assert "raised ValueError: lost (raised at " in proc.stderr and "prog.py:4 in fail)" in proc.stderr
    [event] = json.loads(j.read_text())["loss_events"]
    files = [f["filename"] for f in event["created_at"]]
    assert files[-1].endswith("prog.py")  # the outermost frame is the user's program
    import taskleak as pkg

    own = os.path.dirname(os.path.abspath(pkg.__file__)) + os.sep
    assert not any("runpy" in f or f.startswith(own) for f in files)
