"""The examples of docs/heap.md and docs/task-graph.md print what the docs show.

A ```python block followed by a ```text block is run, and its output must
match the text: a line that is only "..." stands for any number of lines, a
"..." inside a line for any text, and runs of spaces compare equal.
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join("docs", "heap.md"), os.path.join("docs", "task-graph.md")]


def pairs():
    for doc in DOCS:
        text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
        for i, m in enumerate(re.finditer(r"```python\n(.*?)```\n\n```text\n(.*?)```", text, re.S)):
            yield pytest.param(m.group(1), m.group(2), id=f"{doc}#{i}")


def _line_pattern(line):
    parts = [re.escape(p) for p in re.split(r"\.\.\.", " ".join(line.split()))]
    return re.compile("^" + ".*".join(parts) + "$")


def matches(expected, actual):
    exp = [e.rstrip() for e in expected.strip("\n").splitlines()]
    act = [" ".join(a.split()) for a in actual.strip("\n").splitlines()]

    def go(i, j):
        if i == len(exp):
            return j == len(act)
        if exp[i].strip() == "...":
            return any(go(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and bool(_line_pattern(exp[i]).match(act[j])) and go(i + 1, j + 1)

    return go(0, 0)


def test_matcher():
    assert matches("a\n...\nd", "a\nb\nc\nd")
    assert matches("a ... z", "a b c z")
    assert matches("x    1", "x 1")
    assert not matches("a\nd", "a\nb\nd")
    assert not matches("a ... z", "a b c")


@pytest.mark.parametrize("code,expected", list(pairs()))
def test_doc_example_prints_what_it_shows(code, expected, tmp_path):
    p = tmp_path / "example.py"
    p.write_text(code)
    proc = subprocess.run([sys.executable, str(p)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert matches(expected, proc.stdout), f"expected:\n{expected}\ngot:\n{proc.stdout}"


def test_there_are_output_examples():
    assert len(list(pairs())) >= 4
