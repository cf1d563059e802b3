"""The pytest plugin's blocked-loop check (registered by pytest_plugin).

``--taskleak-blocking=SECONDS`` (ini ``taskleak_blocking``) fails every test
whose call phase blocked an event loop for longer than SECONDS;
``@pytest.mark.taskleak(blocking=SECONDS)`` does it for one test (and, being a
taskleak marker, also checks that test for leaks). ``no_taskleak`` exempts a
test. Independent of ``--taskleak``: either can be used without the other.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..blocking.watchdog import validate_threshold
from .loop_blocked import BlockingScope, LoopBlockedError, format_blocked

__all__ = ["add_blocking_options", "BlockingPlugin"]

_HINT = "\n(--taskleak-blocking / @pytest.mark.taskleak(blocking=...); see docs/blocking.md)"


def add_blocking_options(parser: pytest.Parser, group: Any) -> None:
    group.addoption(
        "--taskleak-blocking",
        metavar="SECONDS",
        default=None,
        help="fail tests that block an event loop longer than SECONDS (ini: taskleak_blocking)",
    )
    parser.addini(
        "taskleak_blocking",
        "fail tests that block an event loop longer than this many seconds (default: not checked)",
        default="",
    )


def _seconds(what: str, value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return validate_threshold(float(value) if isinstance(value, str) else value, what)
    except (TypeError, ValueError):
        raise pytest.UsageError(
            f"taskleak: {what} must be a number of seconds >= 0.02 (e.g. 0.1), got {value!r}"
        ) from None


class BlockingPlugin:
    def __init__(self, config: pytest.Config) -> None:
        opt = config.getoption("taskleak_blocking")
        self.default = (
            _seconds("--taskleak-blocking", opt)
            if opt is not None
            else _seconds("taskleak_blocking", config.getini("taskleak_blocking"))
        )

    def _threshold(self, item: pytest.Item) -> float | None:
        if item.get_closest_marker("no_taskleak") is not None:
            return None
        for m in item.iter_markers("taskleak"):  # closest first
            if "blocking" in m.kwargs:
                value = m.kwargs["blocking"]
                if value is None:
                    return None
                try:
                    return validate_threshold(value, "blocking")
                except ValueError as e:
                    pytest.fail(f"taskleak: bad @pytest.mark.taskleak options: {e}", pytrace=False)
        return self.default

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        __tracebackhide__ = True
        threshold = self._threshold(item)
        if threshold is None:
            return (yield)
        scope = BlockingScope(threshold)
        try:
            result = yield
        except BaseException:
            episodes = scope.finish()
            if episodes:  # never mask the test's own error: add the report next to it
                item.add_report_section("call", "taskleak-blocking", format_blocked(episodes, threshold, item.nodeid))
            raise
        episodes = scope.finish()
        if episodes:
            err = LoopBlockedError(format_blocked(episodes, threshold, item.nodeid) + _HINT, episodes)
            err._taskleak_plugin = True  # type: ignore[attr-defined]
            raise err
        return result
