"""`taskleak --version` and the usage shown for a bad option of `taskleak run`."""

import subprocess
import sys

import taskleak


def cli(*args):
    return subprocess.run([sys.executable, "-m", "taskleak", *args], capture_output=True, text=True, timeout=60)


def test_version():
    p = cli("--version")
    assert p.returncode == 0
    assert p.stdout.strip() == f"taskleak {taskleak.__version__}"


def test_unknown_run_option_shows_runs_usage(tmp_path):
    script = tmp_path / "app.py"
    script.write_text("print('ran')\n")
    p = cli("run", "--bogus", str(script))
    assert p.returncode == 2
    assert p.stderr.startswith("usage: taskleak run "), p.stderr
    assert "unrecognized arguments: --bogus" in p.stderr
    assert "ran" not in p.stdout


def test_options_after_the_script_are_the_scripts(tmp_path):
    script = tmp_path / "app.py"
    script.write_text("import sys; print(sys.argv[1:])\n")
    p = cli("run", str(script), "--bogus", "x")
    assert p.returncode == 0, p.stderr
    assert "['--bogus', 'x']" in p.stdout
