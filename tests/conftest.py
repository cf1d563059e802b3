import asyncio
import gc
import os

import pytest

import taskleak

# ---- once_per_ci ----------------------------------------------------------
# A test marked `once_per_ci` checks something whose outcome does not depend
# on the CPython version running the suite: an external component (promtool,
# Prometheus + Alertmanager, Chromium) against files and pages that are the
# same on every version, or a long run of version-independent detector
# arithmetic whose short forms run on every version. `make test` runs them
# (every test runs by default). .ci/run runs them on 3.11 and 3.15 only: its
# other suite steps (and the sanitizer run) pass ONCE_PER_CI=deselect to make,
# which sets TASKLEAK_DESELECT_ONCE_PER_CI=1 here. They are then *deselected*
# (pytest counts them as "deselected" and the header says why), never skipped.
DESELECT_ONCE_PER_CI = os.environ.get("TASKLEAK_DESELECT_ONCE_PER_CI") == "1"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "once_per_ci: version-independent test of an external component or a long detector run; "
        "deselected when TASKLEAK_DESELECT_ONCE_PER_CI=1 (.ci/run runs it on 3.11 and 3.15 only)",
    )


def pytest_report_header(config):
    if DESELECT_ONCE_PER_CI:
        return [
            "taskleak: TASKLEAK_DESELECT_ONCE_PER_CI=1: tests marked once_per_ci are deselected "
            "(.ci/run runs them on 3.11 and 3.15; see tests/conftest.py)"
        ]
    return []


def pytest_terminal_summary(terminalreporter):
    # Shown with -q and under xdist too (whose summary does not count the
    # workers' deselected items).
    if DESELECT_ONCE_PER_CI:
        terminalreporter.write_line(
            "taskleak: tests marked once_per_ci were deselected (TASKLEAK_DESELECT_ONCE_PER_CI=1); "
            "`pytest --collect-only -q -m once_per_ci` lists them"
        )


def pytest_collection_modifyitems(config, items):
    if not DESELECT_ONCE_PER_CI:
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("once_per_ci") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# ---- fixtures ---------------------------------------------------------------


@pytest.fixture
def tracked():
    """taskleak installed for one test, with loss events cleared before and after."""
    taskleak.install()
    taskleak.clear_loss_events()
    yield taskleak
    gc.collect()
    taskleak.clear_loss_events()


def run(coro_fn, *args):
    return asyncio.run(coro_fn(*args))
