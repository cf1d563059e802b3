"""Every Python example in the README and docs/ runs."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md"] + [
    os.path.join("docs", f) for f in sorted(os.listdir(os.path.join(ROOT, "docs"))) if f.endswith(".md")
]


def blocks():
    for doc in DOCS:
        text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
        for i, m in enumerate(re.finditer(r"```python\n(.*?)```", text, re.S)):
            yield pytest.param(m.group(1), id=f"{doc}#{i}")


@pytest.mark.parametrize("code", list(blocks()))
def test_doc_example_runs(code, tmp_path):
    p = tmp_path / "example.py"
    p.write_text(code)
    proc = subprocess.run([sys.executable, str(p)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_there_are_examples():
    assert len(list(blocks())) >= 4


def test_the_benchmark_commands_of_the_performance_page_exist():
    # docs/performance.md quotes figures with the commands that print them:
    # each script must exist and take each option the page gives it.
    text = open(os.path.join(ROOT, "docs", "performance.md"), encoding="utf-8").read()
    commands = re.findall(r"^\.venv/\S+/python (bench/\S+\.py)(.*)$", text, re.M)
    assert len(commands) >= 4
    for script, args in commands:
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, script), "--help"], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        for option in re.findall(r"--[a-z][a-z-]*", args):
            assert re.search(re.escape(option) + r"(?![a-z-])", proc.stdout), f"{script} has no {option}"
