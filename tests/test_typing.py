"""tests/typing/usage.py is type-checked by `make typecheck` (mypy --strict);
here it runs, so each typed line is also a working use of the API."""

from __future__ import annotations

import asyncio
import importlib.util
import pathlib

import pytest

USAGE = pathlib.Path(__file__).with_name("typing") / "usage.py"


@pytest.fixture(scope="module")
def usage():
    spec = importlib.util.spec_from_file_location("taskleak_typed_usage", USAGE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_snapshot_why_graph_and_dump(usage):
    assert "typed-worker" in asyncio.run(usage.snapshots())


def test_check_finds_the_leak(usage):
    leaks = asyncio.run(usage.checked())
    assert [lk.task.name for lk in leaks] == ["typed-leak"]


def test_detector_monitor_and_server(usage):
    samples = usage.monitored()
    assert samples and samples[-1].tasks >= 0


def test_growth_sees_new_objects(usage):
    assert usage.heap_and_blocking() >= 1000
