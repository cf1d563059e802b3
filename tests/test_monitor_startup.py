"""The ways a monitor starts without code changes: TASKLEAK_MONITOR through
the .pth start-up hook, and `taskleak run --monitor`; and the example
service, whose slow leak the monitor catches."""

import os
import subprocess
import sys
import textwrap

import pytest

from taskleak.live.autostart import parse_allow, parse_interval

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LEAKY = textwrap.dedent("""
    import asyncio, sys
    held = []
    async def stuck():
        await asyncio.Event().wait()
    async def main():
        for i in range(40):
            held.append(asyncio.create_task(stuck()))  # LEAK
            await asyncio.sleep(0.02)
        import taskleak.live.autostart as a
        m = a.monitor
        print("MONITOR", m is not None and m.running, len(m.samples()) if m else 0,
              m.latest().pending if m else -1)
    asyncio.run(main())
""")


def _run(args, env_extra, tmp_path, timeout=120):
    env = dict(os.environ)
    env.pop("TASKLEAK_MONITOR", None)
    env.update(env_extra)
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env)


def test_env_var_starts_the_monitor_at_interpreter_start(tmp_path):
    (tmp_path / "svc.py").write_text(LEAKY)
    log = tmp_path / "samples.jsonl"
    p = _run([sys.executable, "svc.py"], {"TASKLEAK_MONITOR": "0.05", "TASKLEAK_MONITOR_JSONL": str(log)}, tmp_path)
    assert p.returncode == 0, p.stderr
    line = next(x for x in p.stdout.splitlines() if x.startswith("MONITOR"))
    _, running, n, pending = line.split()
    assert running == "True" and int(n) >= 3 and int(pending) >= 30
    assert len(log.read_text().splitlines()) >= 3


def test_without_the_env_var_taskleak_is_not_even_imported(tmp_path):
    p = _run([sys.executable, "-c", "import sys; print('taskleak' in sys.modules)"], {}, tmp_path)
    assert p.stdout.strip() == "False"


def test_bad_env_value_is_reported_and_the_program_runs(tmp_path):
    p = _run([sys.executable, "-c", "print('ran')"], {"TASKLEAK_MONITOR": "often"}, tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "ran"
    assert "taskleak: monitor not started" in p.stderr


def test_env_parsing():
    assert parse_interval("1") == 10.0 and parse_interval("2.5") == 2.5 and parse_interval("0") is None
    assert parse_interval("") is None and parse_interval("off") is None
    for bad in ("-1", "nan", "inf", "x"):
        with pytest.raises(ValueError):
            parse_interval(bad)
    assert parse_allow("heartbeat*=1, log-flusher") == [{"heartbeat*": 1}, "log-flusher"]
    with pytest.raises(ValueError):
        parse_allow("x=y")


def test_taskleak_run_monitor_flag(tmp_path):
    script = tmp_path / "svc.py"
    script.write_text(
        textwrap.dedent("""
        import asyncio
        held = []
        async def stuck():
            await asyncio.Event().wait()
        async def main():
            for i in range(30):
                held.append(asyncio.create_task(stuck()))
                await asyncio.sleep(0.02)
        asyncio.run(main())
    """)
    )
    p = _run([sys.executable, "-m", "taskleak", "run", "--monitor", "0.05", str(script)], {}, tmp_path)
    assert "taskleak monitor:" in p.stderr, p.stderr
    n = int(p.stderr.split("taskleak monitor:")[1].split()[0])
    assert n >= 3
    p = _run([sys.executable, "-m", "taskleak", "run", "--monitor", "0", str(script)], {}, tmp_path)
    assert p.returncode == 2 and "--monitor" in p.stderr


def test_example_service_slow_leak_is_caught_and_named(tmp_path):
    ex = os.path.join(ROOT, "examples", "slow_leak_service.py")
    p = _run([sys.executable, ex, "--seconds", "20"], {}, tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "suspected task leak" in p.stdout
    assert "slow_leak_service.py:34 in handle" in p.stdout and "watch_updates" in p.stdout
    assert "orphaned" in p.stdout


def test_example_service_without_leak_is_quiet(tmp_path):
    ex = os.path.join(ROOT, "examples", "slow_leak_service.py")
    p = _run([sys.executable, ex, "--no-leak", "--seconds", "8"], {}, tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "no leak suspected" in p.stdout


PROBE_LEAVES_NOTHING = textwrap.dedent("""
    import asyncio, gc
    gc.disable()  # what is left alive now is held, not waiting for a collection
    import taskleak
    mon = taskleak.Monitor(interval=60).start()  # probes the task layout once
    mon.stop()
    print("ALIVE", sum(isinstance(o, asyncio.Task) for o in gc.get_objects()))
""")


def test_starting_a_monitor_leaves_no_task_of_its_probe_behind():
    # The layout probe's cancelled task kept the CancelledError its coroutine
    # raised; the traceback owned the probe's frames and so its five tasks, a
    # cycle that lived until the next collection: `taskleak dump` right after
    # an agent started counted them as done tasks kept alive (13 tasks, not
    # 8, in test_cli_frictions.py on 3.13).
    out = subprocess.run([sys.executable, "-c", PROBE_LEAVES_NOTHING], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ALIVE", "0"], out.stdout
