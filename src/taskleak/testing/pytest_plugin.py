"""pytest plugin: fail tests that leave asyncio tasks behind.

Off by default. ``--taskleak`` (or ini ``taskleak = true``) checks every test;
``@pytest.mark.taskleak(**options)`` checks (and tunes) one test, class or
module; ``@pytest.mark.no_taskleak`` exempts one. See docs/pytest.md.

A test leaks what it started - its body and its function-scoped fixtures,
setup and teardown - and is still pending, or finished but still held from
outside, once those fixtures are finalised (ini ``taskleak_phase = teardown``,
the default): the scope is opened by an autouse fixture that is set up first
and torn down last among function-scoped fixtures, and checked when it is torn
down. Wider fixtures' tasks are never a test's (their setup runs with no
scope). ``taskleak_phase = call`` checks only the test function's call, as
before. Leaks found after a test ended ("late": destroyed while pending, never
retrieved, cancelled by a loop shutdown) are charged back to the test that
created them.

Warn mode never fails a test, whatever ``filterwarnings`` says: its reports
go to the terminal summary, not through ``warnings``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

import pytest

import taskleak._core as _core

from .. import tracking
from ..frame import Frame, creation_site, is_asyncio, is_test_framework, user_frame
from ..model.task_info import DetachedTaskInfo, TaskInfo
from ..report.advice import ADVICE
from ..report.asyncgens import generator_frame, is_asyncgen_event
from ..tracking import loss_events as loss_events_mod
from ..tracking import scopes
from ..tracking.loss_events import dropped_events, loss_events, scope_events
from .baseline import Baseline, BaselineError, leak_key
from .check import LeakCheck, _ignored
from .leak import ALL_KINDS, ASYNCGEN, ASYNCGEN_MODES, KINDS, Leak, TaskLeakError, TaskLeakWarning
from .leak_report import callback_origin, format_leaks
from .pytest_blocking import BlockingPlugin, add_blocking_options

__all__ = ["TaskLeakPytestWarning"]


def _is_harness_task(info: TaskInfo) -> bool:
    """Tasks of test runners themselves: the task pytest-asyncio or unittest
    runs a test or fixture coroutine in (created straight from the runner's
    frames), and anyio's runner task, which lives as long as its runner. (Not
    a glob: globs also match creation sites, and every task a test creates
    under anyio has the runner's coroutine on its creation stack.)"""
    if info.coro == "TestRunner._run_tests_and_fixtures":
        return True
    for f in info.created_at or ():
        if is_asyncio(f.filename):
            if f.function.endswith("Handle._run"):
                return False  # created inside the loop (by a task or a callback): not by the runner
            continue
        return is_test_framework(f.filename) or (
            f.filename.endswith(_ANYIO_BACKEND) and f.function.startswith("TestRunner.")
        )
    return False


# Tasks a library starts once per event loop, by design to be cancelled when
# the loop closes (their cleanup runs on that cancellation). Charged to the
# first test that happened to use the feature, they failed it on every
# function-scoped loop. (function qualname, in file ending with)
_LOOP_SERVICES = (
    # anyio.to_process: shuts the worker processes down when the loop closes
    ("AsyncIOBackend.setup_process_pool_exit_at_shutdown", os.path.join("anyio", "_backends", "_asyncio.py")),
)


def _is_loop_service_task(info: TaskInfo) -> bool:
    for f in info.created_at or ():
        if is_asyncio(f.filename):
            continue
        return any(f.function == fn and f.filename.endswith(where) for fn, where in _LOOP_SERVICES)
    return False


def _is_runner_task(task: Any) -> bool:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) == "TestRunner._run_tests_and_fixtures"


_ANYIO_BACKEND = os.path.join("anyio", "_backends", "_asyncio.py")
HARNESS_IGNORE = (_is_harness_task, _is_loop_service_task)
MARKER_OPTIONS = (
    "grace",
    "ignore",
    "kinds",
    "on_leak",
    "collect",
    "blocking",
    "asyncgens",
)  # blocking: pytest_blocking.py
MODES = {"fail": "raise", "warn": "warn"}
EVENT_KINDS = {
    "pending-at-shutdown": "pending",
    "destroyed-pending": "gc-pending",
    "never-retrieved": "never-retrieved",
}
_log = logging.getLogger("taskleak")
_HINT = (
    "\nIn pytest: @pytest.mark.taskleak(ignore=[...]) or the ini option taskleak_ignore; "
    "@pytest.mark.no_taskleak skips a test."
)


#: Kept for code that filters on it; warn mode no longer issues Python
#: warnings (a ``filterwarnings = error`` suite would turn them into failures).
TaskLeakPytestWarning = TaskLeakWarning
PHASES = ("teardown", "call")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("taskleak", "leaked asyncio tasks (taskleak)")
    group.addoption(
        "--taskleak",
        action="store_true",
        default=False,
        help="fail every test that leaks asyncio tasks (ini: taskleak = true)",
    )
    group.addoption(
        "--taskleak-mode",
        choices=sorted(MODES),
        default=None,
        help="fail (default) or warn: with warn, leaks are reported in the terminal summary and "
        "tests do not fail (overrides ini taskleak_mode)",
    )
    group.addoption(
        "--taskleak-baseline",
        metavar="FILE",
        default=None,
        help="tolerate the leaks recorded in FILE, fail only on new ones",
    )
    group.addoption(
        "--taskleak-update-baseline",
        action="store_true",
        default=False,
        help="rewrite the --taskleak-baseline FILE from this run (it may only shrink)",
    )
    group.addoption(
        "--taskleak-baseline-force",
        action="store_true",
        default=False,
        help="with --taskleak-update-baseline: also add new leaks to the baseline",
    )
    # Strings parsed here rather than pytest's "bool"/float handling, so a bad
    # value is a UsageError naming the key, not a traceback.
    parser.addini("taskleak", "check every test for leaked asyncio tasks (true/false)", default="false")
    parser.addini(
        "taskleak_ignore", "globs of task names, coroutines or creation sites to ignore", type="linelist", default=[]
    )
    parser.addini("taskleak_grace", "seconds pending tasks get to finish after a test (default 0.1)", default="0.1")
    parser.addini("taskleak_kinds", "leak kinds that count (default: all)", type="args", default=list(KINDS))
    parser.addini("taskleak_mode", "fail (default) or warn", default="fail")
    parser.addini(
        "taskleak_phase",
        "teardown (default: check once the test's function-scoped fixtures "
        "are finalised) or call (check the test function's call only)",
        default="teardown",
    )
    _add_asyncgen_options(parser, group)
    add_blocking_options(parser, group)


def _add_asyncgen_options(parser: pytest.Parser, group: Any) -> None:
    group.addoption(
        "--taskleak-asyncgens",
        choices=ASYNCGEN_MODES,
        default=None,
        help="async generators a test left unclosed (asyncio's aclose() task for one destroyed pending): "
        "report (default: in the terminal summary), fail the test, or ignore (ini: taskleak_asyncgens)",
    )
    parser.addini(
        "taskleak_asyncgens",
        "report (default), fail or ignore: async generators a test left unclosed",
        default="report",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "taskleak(**options): check this test for leaked asyncio tasks; "
        "options as taskleak.check(): grace, ignore, kinds, on_leak, collect, blocking",
    )
    config.addinivalue_line("markers", "no_taskleak: do not check this test for leaked asyncio tasks")
    config.pluginmanager.register(TaskleakPlugin(config), "taskleak-plugin")
    config.pluginmanager.register(BlockingPlugin(config), "taskleak-blocking")


# ---- configuration ----------------------------------------------------------


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise pytest.UsageError(f"taskleak: ini option {name} must be true or false, got {value!r}")


def _ini_defaults(config: pytest.Config) -> dict[str, Any]:
    try:
        grace = float(config.getini("taskleak_grace"))
    except (TypeError, ValueError):
        grace = -1.0
    if not grace >= 0:  # also rejects nan
        raise pytest.UsageError(
            f"taskleak: ini option taskleak_grace must be a number of seconds >= 0, "
            f"got {config.getini('taskleak_grace')!r}"
        )
    kinds = list(config.getini("taskleak_kinds"))
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad or not kinds:
        raise pytest.UsageError(
            f"taskleak: ini option taskleak_kinds: unknown or missing kind(s) {bad!r}; choose from {', '.join(ALL_KINDS)}"
        )
    mode = config.getoption("taskleak_mode", None)  # --taskleak-mode, checked by its choices
    if mode is None:
        mode = str(config.getini("taskleak_mode")).strip()
        if mode not in MODES:
            raise pytest.UsageError(f"taskleak: ini option taskleak_mode must be fail or warn, got {mode!r}")
    phase = str(config.getini("taskleak_phase")).strip()
    if phase not in PHASES:
        raise pytest.UsageError(f"taskleak: ini option taskleak_phase must be teardown or call, got {phase!r}")
    asyncgens = config.getoption("taskleak_asyncgens", None) or str(config.getini("taskleak_asyncgens")).strip()
    if asyncgens not in ASYNCGEN_MODES:
        raise pytest.UsageError(
            f"taskleak: ini option taskleak_asyncgens must be {', '.join(ASYNCGEN_MODES)}, got {asyncgens!r}"
        )
    return {
        "grace": grace,
        "ignore": list(config.getini("taskleak_ignore")),
        "kinds": kinds,
        "on_leak": MODES[mode],
        "collect": True,
        "asyncgens": asyncgens,
    }


class _LeakRowFields(TypedDict):
    test: str  # the test's node id
    kind: str  # a leak kind (taskleak.testing.leak.KINDS)
    coro: str
    name: str
    created: str  # the creation site, short form
    suspended: str  # where the task is suspended, short form
    key: list[str]  # its baseline key (kind, created, suspended), as JSON has it
    mode: str  # on_leak: "raise", "cancel", "warn" or "log"
    tolerated: bool  # by the baseline (or --taskleak-baseline-update)


class LeakRow(_LeakRowFields, total=False):
    """One leak as the summary table and the baseline see it: a plain dict,
    JSON-able, as it travels in report.user_properties under xdist."""

    event: str  # late leaks only: the loss event that revealed it


@dataclass
class _Finished:
    """What is remembered of a checked test, to charge late leaks to it."""

    nodeid: str
    on_leak: str
    kinds: tuple[str, ...]
    ignore: tuple[Any, ...]
    reported: set[int]
    asyncgens: str = "report"


@dataclass
class _Summary:
    """Controller-side aggregate (the only process when xdist is not used)."""

    rows: list[LeakRow] = field(default_factory=list)  # one per leak
    late: list[LeakRow] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # warn mode: the full reports
    ran: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    asyncgens: list[LeakRow] = field(default_factory=list)  # unclosed, not failing (asyncgens=report)
    unraisable: list[str] = field(default_factory=list)  # see LeakCheck._collect_garbage


_ROWS = pytest.StashKey[list[LeakRow]]()
_GENS = pytest.StashKey[list[LeakRow]]()
_TEXT = pytest.StashKey[str]()
_UNRAISABLE = pytest.StashKey[str]()
_CALL_FAILED = pytest.StashKey[bool]()


def _anyio_runner_task() -> Any:
    """anyio's test runner task, if one is open: it runs test bodies inside
    itself, so what it creates during a test is the test's (see
    creation_hook.cpp). Read from anyio's plugin module; None without it."""
    plugin = sys.modules.get("anyio.pytest_plugin")
    runner = getattr(plugin, "_current_runner", None)
    task = getattr(runner, "_runner_task", None)
    return task if task is not None and not task.done() else None


@pytest.fixture(autouse=True)
def _taskleak_test_scope(request: pytest.FixtureRequest) -> Any:
    """The checked test's scope (taskleak_phase = teardown): set up before,
    and torn down after, every other function-scoped fixture of the test."""
    plugin = request.config.pluginmanager.get_plugin("taskleak-plugin")
    if plugin is None:
        yield
        return
    yield from plugin.test_scope(request.node)


class TaskleakPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.enabled = config.getoption("taskleak") or _parse_bool("taskleak", config.getini("taskleak"))
        self.defaults = _ini_defaults(config)
        self.phase = str(config.getini("taskleak_phase")).strip()
        self.active: LeakCheck | None = None  # the scope open now (phase teardown)
        self.rootdir = str(config.rootpath)
        self.is_worker = hasattr(config, "workerinput")
        self.update = config.getoption("taskleak_update_baseline")
        self.force = config.getoption("taskleak_baseline_force")
        path = config.getoption("taskleak_baseline")
        if (self.update or self.force) and not path:
            raise pytest.UsageError(
                "taskleak: --taskleak-update-baseline and --taskleak-baseline-force need --taskleak-baseline FILE"
            )
        if self.force and not self.update:
            raise pytest.UsageError(
                "taskleak: --taskleak-baseline-force only makes sense with --taskleak-update-baseline"
            )
        self.baseline: Baseline | None = None
        if path:
            try:
                self.baseline = Baseline.load(path, missing_ok=self.update)
            except BaselineError as e:
                raise pytest.UsageError(str(e)) from None
        # Updating with --taskleak-baseline-force (or creating the file) records
        # every leak of this run, so none of them fails it.
        self.tolerate_all = self.update and self.baseline is not None and (self.force or not self.baseline.existed)
        self.finished: dict[int, _Finished] = {}
        self.events_seen = len(loss_events()) + dropped_events()
        self.summary = _Summary()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # Track from before the first fixture runs: a background task that a
        # session fixture starts must be known (numbered) to tell its children
        # from the tests' own tasks. Nothing is patched when no test is checked.
        if self.enabled or any(item.get_closest_marker("taskleak") for item in session.items):
            tracking.install()

    # ---- per test ----------------------------------------------------------
    def _options(self, item: pytest.Item) -> dict[str, Any] | None:
        if item.get_closest_marker("no_taskleak") is not None:
            return None
        markers = list(item.iter_markers("taskleak"))  # closest first
        if not markers and not self.enabled:
            return None
        opts = dict(self.defaults)
        ignore = list(HARNESS_IGNORE) + list(opts["ignore"])
        for m in reversed(markers):  # the closest marker wins; ignore lists add up
            unknown = sorted(set(m.kwargs) - set(MARKER_OPTIONS))
            if m.args or unknown:
                what = f"positional arguments {m.args!r}" if m.args else f"unknown option(s) {unknown}"
                pytest.fail(
                    f"taskleak: @pytest.mark.taskleak got {what}; options are {', '.join(MARKER_OPTIONS)}",
                    pytrace=False,
                )
            extra = m.kwargs.get("ignore", ())
            ignore += [extra] if isinstance(extra, str) or callable(extra) else list(extra)
            opts.update(m.kwargs)
        opts.pop("blocking", None)  # the blocked-loop check is BlockingPlugin's
        opts["ignore"] = ignore
        return opts

    def _new_check(self, item: pytest.Item, opts: dict[str, Any]) -> LeakCheck:
        try:
            lc = LeakCheck(**opts, label=item.nodeid)
        except (TypeError, ValueError) as e:
            pytest.fail(f"taskleak: bad @pytest.mark.taskleak options: {e}", pytrace=False)
        # Leaks are always raised to us: the plugin applies the baseline, then
        # fails / warns / logs itself.
        lc.on_leak = "cancel" if opts["on_leak"] == "cancel" else "raise"
        lc.grace_exempt = _is_runner_task
        lc.unraisable = []  # what its collection finalizes is not this test's doing
        lc.report_asyncgens = False  # the terminal summary lists them
        return lc

    def test_scope(self, item: pytest.Item) -> Any:
        """Generator behind the autouse fixture: the scope of one test, from
        its first function-scoped fixture to its last finaliser."""
        opts = self._options(item) if self.phase == "teardown" else None
        if opts is None:
            yield
            return
        lc = self._new_check(item, opts)
        lc._enter()
        # Runners that start the test coroutine from their own context (or,
        # anyio, run it inside a task made earlier) reach the scope through
        # the ambient fallback; the runner's task is named to the core.
        _core.set_ambient_scope(lc._scope.id)  # type: ignore[union-attr]
        harness = _anyio_runner_task()
        _core.set_harness_task(harness)
        self.active = lc
        # A function-scoped loop closes at teardown: the grace comes just
        # before, so a task about to finish is not cancelled as a leak, and
        # a fixture that closes its tasks costs no waiting.
        loss_events_mod.before_shutdown = lc._drive_idle_loops
        try:
            yield
        finally:
            loss_events_mod.before_shutdown = None
            self.active = None
            _core.set_ambient_scope(0)
            _core.set_harness_task(None)
            del harness
            lc._leave()
            self._finish(item, lc, opts["on_leak"], item.stash.get(_CALL_FAILED, False), "teardown")

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Any:
        # A wider fixture set up while a test's scope is open (asked for
        # with getfixturevalue, say) owns its tasks: no scope while it runs.
        lc = self.active
        if lc is None or fixturedef.scope == "function":
            return (yield)
        token = scopes.SCOPE_VAR.set(0)
        _core.set_ambient_scope(0)
        try:
            return (yield)
        finally:
            try:
                scopes.SCOPE_VAR.reset(token)
            except ValueError:  # reset from another context: leave it explicit
                scopes.SCOPE_VAR.set(lc._scope.id if lc._scope is not None else 0)
            if self.active is lc and lc._scope is not None:
                _core.set_ambient_scope(lc._scope.id)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        opts = self._options(item) if self.phase == "call" else None
        if opts is None:
            return (yield)
        lc = self._new_check(item, opts)
        lc._enter()
        # pytest-asyncio and anyio run the test coroutine in a context of
        # their own, where the scope ContextVar set here may not be visible:
        # tasks they start from synchronous code are charged to the ambient
        # scope. Only for the call phase.
        _core.set_ambient_scope(lc._scope.id)  # type: ignore[union-attr]
        harness = _anyio_runner_task()
        _core.set_harness_task(harness)
        body_failed = True
        try:
            result = yield
            body_failed = False
            return result
        finally:
            _core.set_ambient_scope(0)
            _core.set_harness_task(None)
            del harness
            lc._leave()
            self._finish(item, lc, opts["on_leak"], body_failed, "call")

    def _finish(self, item: pytest.Item, lc: LeakCheck, on_leak: str, body_failed: bool, when: str) -> None:
        __tracebackhide__ = True
        lc._drive_idle_loops()  # grace: e.g. pytest-asyncio's loop is idle between tests
        try:
            # The test's own objects (its instance, fixture values, request)
            # die with it: finished tasks held only through them are not
            # retained. The session outlives every test.
            local, wider = _test_local_objects(item)
            with _post_mortem_set_aside():
                lc._finish(
                    body_failed=False,
                    exclude=_test_own_objects(item),
                    stops=[item.session, item.config, item] + wider,
                    scoped=local,
                )
            del local, wider
        except TaskLeakError:
            pass
        if lc.unraisable:
            item.stash[_UNRAISABLE] = (
                f"taskleak: while checking {item.nodeid}, its garbage collection finalized objects "
                "that raised (from code run earlier: not charged to this test):\n"
                + "\n".join(f"    {u}" for u in lc.unraisable)
            )
        scope = lc._scope
        assert scope is not None
        # Loss events the check already consumed are not "late" either.
        reported = set(cast(Iterable[int], scope.meta.get("reported_serials", ()))) | {
            e.serial for e in scope_events(scope.id) if e.serial
        }
        self.finished[scope.id] = _Finished(item.nodeid, on_leak, lc.kinds, lc.ignore, reported, lc.asyncgens)
        if lc.unclosed_asyncgens:
            item.stash[_GENS] = [self._row(lk, item.nodeid, "report") for lk in lc.unclosed_asyncgens]
        leaks = lc.leaks
        rows = [self._row(lk, item.nodeid, on_leak) for lk in leaks]
        if rows:
            item.stash[_ROWS] = rows
        new = [lk for lk, row in zip(leaks, rows) if not row["tolerated"]]
        if not new:
            return
        report = format_leaks(new + lc.unclosed_asyncgens, item.nodeid, notes=lc.notes) + _HINT
        if len(new) < len(rows):
            report += f"\n({len(rows) - len(new)} more leak(s) tolerated by the taskleak baseline)"
        if on_leak == "cancel":
            report += "\n(the pending tasks were cancelled)"
        if body_failed:  # never mask the test's own error: report in the summary
            item.stash[_TEXT] = report
        elif on_leak in ("raise", "cancel"):
            err = TaskLeakError(report, new)
            err._taskleak_plugin = True  # type: ignore[attr-defined]
            raise err
        elif on_leak == "warn":
            item.stash[_TEXT] = report  # to the terminal summary, never through `warnings`
        else:
            _log.warning("%s", report)

    def _row(self, lk: Leak, nodeid: str, on_leak: str) -> LeakRow:
        """A JSON-able description of one leak (it travels in report.user_properties under xdist)."""
        t: TaskInfo = lk.task
        key = leak_key(lk.kind, t.created_at, t.stack, self.rootdir)
        site = creation_site(t.created_at) if t.created_at else []
        if t.created_at and user_frame(t.created_at) is None:
            site = [callback_origin(t.created_at)]  # a loop callback's task: not asyncio's plumbing
        inner = list(reversed(t.stack))
        susp = user_frame(inner) or (inner[0] if inner else None)
        coro = t.coro
        if lk.kind == ASYNCGEN:  # the user's generator, not asyncio's aclose() task for it
            gen = generator_frame(t.stack)
            coro, susp = ("async generator " + gen.function if gen else "async generator"), gen
        return {
            "test": nodeid,
            "kind": lk.kind,
            "coro": coro,
            "name": t.name,
            "created": _short(site[0] if site else None, "(creation site unknown)"),
            "suspended": _short(susp, "-"),
            "key": list(key),
            "mode": on_leak,
            "tolerated": self.tolerate_all or (self.baseline is not None and self.baseline.tolerates(key)),
        }

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        rep = yield
        if call.excinfo is not None and getattr(call.excinfo.value, "_taskleak_plugin", False):
            # The report is the whole story; the plugin's frames are noise.
            rep.longrepr = call.excinfo.getrepr(style="value")
        if call.when in ("setup", "call") and rep.failed:
            item.stash[_CALL_FAILED] = True  # its own error comes first: leaks go to the summary
        if call.when == self.phase and _ROWS in item.stash:
            rep.user_properties.append(("taskleak", item.stash[_ROWS]))
            if _TEXT in item.stash:
                rep.user_properties.append(("taskleak-text", item.stash[_TEXT]))
        if call.when == self.phase and _GENS in item.stash:
            rep.user_properties.append(("taskleak-asyncgens", item.stash[_GENS]))
        if call.when == self.phase and _UNRAISABLE in item.stash:
            rep.user_properties.append(("taskleak-unraisable", item.stash[_UNRAISABLE]))
        if call.when == "teardown":
            # After teardown: a function-scoped loop has been closed by now,
            # and what it cancelled is in the loss events.
            late = self._late_leaks()
            if late:
                rep.user_properties.append(("taskleak-late", late))
        return rep

    # ---- late leaks ----------------------------------------------------------
    def _late_leaks(self) -> list[LeakRow]:
        """Loss events of tasks charged to a finished test that its check did not report."""
        dropped = dropped_events()
        events = loss_events()
        total = len(events) + dropped
        new = total - self.events_seen
        self.events_seen = total
        if new <= 0:
            return []
        out = []
        for e in events[-new:] if new < len(events) else events:
            fin = self.finished.get(e.scope)
            if fin is None or not e.serial or e.serial in fin.reported:
                continue
            fin.reported.add(e.serial)
            kind = EVENT_KINDS.get(e.kind)
            info = DetachedTaskInfo.from_event(e)
            mode = fin.on_leak
            if is_asyncgen_event(e):  # an async generator never closed: not a task leak
                if fin.asyncgens == "ignore":
                    continue
                kind = ASYNCGEN
                mode = fin.on_leak if fin.asyncgens == "fail" else "report"
            elif kind not in fin.kinds:
                continue
            if _ignored(info, fin.ignore):
                continue
            row = self._row(Leak(kind, info, exception_text=e.exception), fin.nodeid, mode)
            row["event"] = e.kind
            out.append(row)
        return out

    # ---- aggregation (controller) -----------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.summary.ran.add(report.nodeid)
        for name, value in report.user_properties:
            if name == "taskleak":
                self.summary.rows.extend(cast(list[LeakRow], value))
            elif name == "taskleak-late":
                late = cast(list[LeakRow], value)
                self.summary.late.extend(r for r in late if r["mode"] != "report")
                self.summary.asyncgens.extend(r for r in late if r["mode"] == "report")
            elif name == "taskleak-asyncgens":
                self.summary.asyncgens.extend(cast(list[LeakRow], value))
            elif name == "taskleak-text":
                self.summary.texts.append(str(value))
            elif name == "taskleak-unraisable":
                self.summary.unraisable.append(str(value))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        # xdist: late leaks a worker found after its last test
        late = getattr(node, "workeroutput", {}).get("taskleak_late", [])
        self.summary.late.extend(r for r in late if r["mode"] != "report")
        self.summary.asyncgens.extend(r for r in late if r["mode"] == "report")

    # After the session's own teardown (trylast: its fixtures are gone, so the
    # collection below is cheaper), still before the terminal summary.
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.finished:
            gc.collect()  # surface "destroyed while pending" / "never retrieved" now
            late = self._late_leaks()
            if self.is_worker:
                self.config.workeroutput["taskleak_late"] = late  # type: ignore[attr-defined]
            else:
                self.summary.late.extend(r for r in late if r["mode"] != "report")
                self.summary.asyncgens.extend(r for r in late if r["mode"] == "report")
        if self.is_worker:
            return
        if self.update and self.baseline is not None:
            self._write_baseline()
        failing = [r for r in self.summary.late if r["mode"] in ("raise", "cancel") and not r["tolerated"]]
        if failing and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            self.summary.notes.append(
                f"taskleak: exit status set to {int(pytest.ExitCode.TESTS_FAILED)}: {len(failing)} late leak(s) "
                "found after their test had passed (see above)"
            )

    def _write_baseline(self) -> None:
        assert self.baseline is not None
        seen: dict[tuple[str, str, str], set[str]] = {}
        for r in self.summary.rows + self.summary.late:
            kind, created, suspended = r["key"]  # a Key, as a JSON list
            seen.setdefault((kind, created, suspended), set()).add(r["test"])
        entries, dropped, refused = self.baseline.updated(seen, self.summary.ran, self.force)
        Baseline.write(self.baseline.path, entries)
        note = f"taskleak: wrote baseline {self.baseline.path}: {len(entries)} entries ({len(dropped)} dropped"
        if refused:
            note += f"; {len(refused)} new leak(s) NOT added, use --taskleak-baseline-force to add them"
        self.summary.notes.append(note + ")")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        s = self.summary
        if self.is_worker or not (s.rows or s.late or s.notes or s.texts or s.unraisable or s.asyncgens):
            return
        tr = terminalreporter
        if s.rows:
            tests = {r["test"] for r in s.rows}
            tr.write_sep("=", f"taskleak: {len(s.rows)} leaked task(s) in {len(tests)} test(s)")
            for line in _table(s.rows):
                tr.write_line(line)
        if s.late:
            tr.write_sep("=", f"taskleak: {len(s.late)} late leak(s)")
            tr.write_line(
                "Found after their test had ended (destroyed while pending, exception never "
                "retrieved, or cancelled when the loop closed); charged to the test that created them."
            )
            for line in _table(s.late):
                tr.write_line(line)
        if s.asyncgens:
            tests = {r["test"] for r in s.asyncgens}
            tr.write_sep("=", f"taskleak: {len(s.asyncgens)} async generator(s) never closed in {len(tests)} test(s)")
            tr.write_line(
                "Not task leaks: their finally blocks never ran (asyncio's aclose() task for each was destroyed "
                "pending with its loop). They do not fail tests; --taskleak-asyncgens=fail makes them."
            )
            tr.write_line(f"Fix: {ADVICE['asyncgen']}")
            for line in _table(s.asyncgens):
                tr.write_line(line)
        if s.texts:
            tr.write_sep("-", "taskleak: reports of leaks that did not fail their test (warn mode, or the test failed)")
            for text in s.texts:
                tr.write_line(text)
                tr.write_line("")
        if s.unraisable:
            tr.write_sep("-", "taskleak: exceptions raised by garbage its collections freed")
            for text in s.unraisable:
                tr.write_line(text)
        for note in s.notes:
            tr.write_line(note, bold=True, red="NOT" in note or "exit status" in note)


# ---- objects that live exactly as long as the test ---------------------------


def _fixture_scopes(item: pytest.Item) -> dict[str, str]:
    info = getattr(item, "_fixtureinfo", None)
    defs = getattr(info, "name2fixturedefs", None) or {}
    out = {}
    for name, fdefs in defs.items():
        try:
            out[name] = str(fdefs[-1].scope)
        except Exception:
            continue
    return out


# pytest stores a failing test's exception in sys.last_value/last_traceback
# (and sys.last_exc on 3.12+) for post-mortem debugging. That traceback keeps
# the test's frames, and every task in their locals, alive until the next
# failure: a task the test awaited would read "held by module
# sys['last_value']". The slots are the runner's, not the code under test's,
# so they are set aside while the check looks for holders, and put back.
_POST_MORTEM = ("last_type", "last_value", "last_traceback", "last_exc")


@contextlib.contextmanager
def _post_mortem_set_aside() -> Iterator[None]:
    saved = {name: getattr(sys, name) for name in _POST_MORTEM if hasattr(sys, name)}
    for name in saved:
        delattr(sys, name)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(sys, name, value)
        del saved


def _test_local_objects(item: pytest.Item) -> tuple[list[Any], list[Any]]:
    """(what dies with the test, what outlives it) among the test's objects:
    its function-scoped fixture values and its instance (with their attribute
    dicts) die with it; wider fixtures' values, also in ``item.funcargs``,
    outlive it (and may be big: never entered)."""
    local: list[Any] = []
    wider: list[Any] = []
    scopes = _fixture_scopes(item)
    funcargs = getattr(item, "funcargs", None)
    if isinstance(funcargs, dict):
        wider.append(funcargs)
        for name, value in list(funcargs.items()):
            (local if scopes.get(name, "function") == "function" else wider).append(value)
    for name in ("instance", "_testcase"):
        try:
            obj = getattr(item, name, None)
        except Exception:
            continue
        if obj is not None:
            local.append(obj)
    local += [d for d in (getattr(o, "__dict__", None) for o in list(local)) if isinstance(d, dict)]
    return local, wider


def _test_own_objects(item: pytest.Item) -> list[Any]:
    """The item and what hangs off it until teardown: the unittest/class
    instance, the bound test function, fixture values and the request
    (with their attribute dicts). No holder path passes through them."""
    out: list[Any] = [item, item.__dict__]
    for name in ("_testcase", "instance", "_obj", "funcargs", "_request"):
        try:
            obj = getattr(item, name, None)
        except Exception:
            continue
        if obj is not None:
            out.append(obj)
            d = getattr(obj, "__dict__", None)
            if isinstance(d, dict):
                out.append(d)
    return out


# ---- rendering --------------------------------------------------------------


def _short(frame: Frame | None, default: str) -> str:
    return default if frame is None else frame.short()


_STATUS = {"raise": "failed", "cancel": "failed", "warn": "warned", "log": "logged", "report": "reported"}


def _table(rows: Sequence[LeakRow], max_tests: int = 3) -> list[str]:
    """Leaks grouped by kind, creation site and suspension point, largest group first."""
    groups: dict[tuple[str, ...], list[LeakRow]] = {}
    for r in rows:
        status = "baseline" if r["tolerated"] else _STATUS.get(r["mode"], r["mode"])
        groups.setdefault((r["kind"], status, r["coro"], r["created"], r["suspended"]), []).append(r)
    table = [("count", "kind", "status", "task", "created at", "suspended at", "tests")]
    for (kind, status, coro, created, suspended), g in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        tests = list(dict.fromkeys(r["test"] for r in g))
        shown = ", ".join(tests[:max_tests]) + (f" (+{len(tests) - max_tests} more)" if len(tests) > max_tests else "")
        table.append((str(len(g)), kind, status, coro + "()", created, suspended, shown))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in table]
