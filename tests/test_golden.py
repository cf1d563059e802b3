"""Report formats against golden files (regenerate: TASKLEAK_UPDATE_GOLDEN=1)."""

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def normalise(text):
    text = re.sub(r"asyncio/(\w+)\.py:\d+", r"asyncio/\1.py:N", text)
    text = re.sub(r"\d+\.\ds", "T.Ts", text)
    # 3.12+ inlines list comprehensions (PEP 709): no frame of their own
    text = "".join(line for line in text.splitlines(True) if "<listcomp>" not in line)
    return text.replace(HERE + os.sep, "tests/")


def check(name, output):
    path = os.path.join(HERE, "golden", name)
    got = normalise(output)
    if os.environ.get("TASKLEAK_UPDATE_GOLDEN"):
        with open(path, "w") as f:
            f.write(got)
    with open(path) as f:
        assert got == f.read()


def test_snapshot_format_golden():
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "golden_scenario.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(HERE),
    )
    assert proc.returncode == 0, proc.stderr
    check("snapshot_format.txt", proc.stdout)
