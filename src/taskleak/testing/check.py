"""taskleak.check(): fail a block of code that leaves asyncio tasks behind.

    with taskleak.check():          # also `async with`, and as a decorator
        ...

Only tasks created inside the scope count (including tasks created by those
tasks, wherever they run): each task's creation record carries the scope that
was current when it was created. At scope exit:

1. pending tasks get a grace period with backoff (``grace``, default 0.1 s) to
   finish, where a loop can be yielded to;
2. if tasks of the scope are still alive, the garbage collector runs
   (``collect=True``) so "destroyed while pending" and "exception never
   retrieved" surface now rather than in some later test;
3. every leak found is reported according to ``on_leak``.

A pending task whose only consumer is an ``asyncio.gather()`` that already
finished is "abandoned" from the moment the scope ends, even if the grace
lets it finish. An async generator never closed (asyncio's aclose() task for
it destroyed pending) is reported apart, and fails the scope only with
``asyncgens="fail"``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import gc
import inspect
import logging
import os
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import taskleak._core as _core

from .. import tracking
from ..diagnosis.abandoned import gather_site, is_abandoned
from ..frame import creation_site
from ..heap.closed_loops import closed_loop_state
from ..heap.holders import holders_of_finished
from ..model import Snapshot
from ..model.task_info import DetachedTaskInfo, TaskInfo
from ..report.asyncgens import is_asyncgen_event
from ..tracking import scopes
from ..tracking.loss_events import exception_text, is_asyncgen_finalizer, patch_runner_shutdowns, scope_events
from .leak import ABANDONED, ALL_KINDS, ASYNCGEN, ASYNCGEN_MODES, KINDS, Leak, TaskLeakError, TaskLeakWarning
from .leak_report import format_leaks
from .loop_blocked import BlockingScope, LoopBlockedError, format_blocked, validate_blocking

__all__ = ["check", "LeakCheck", "Leak", "TaskLeakError", "TaskLeakWarning", "KINDS"]

ON_LEAK = ("raise", "warn", "log", "cancel")
_log = logging.getLogger("taskleak")

IgnoreRule = str | Callable[[TaskInfo], bool]


# ---- matching ignore rules ----------------------------------------------------


def _module_name(filename: str) -> str | None:
    for name, mod in list(sys.modules.items()):
        if getattr(mod, "__file__", None) == filename:
            return name
    return None


def _site_strings(info: TaskInfo) -> list[str]:
    out = []
    for f in creation_site(info.created_at or []):
        out.append(f"{f.filename}:{f.lineno}")
        mod = _module_name(f.filename)
        if mod:
            out.append(f"{mod}:{f.function}")
    return out


def _ignored(info: TaskInfo, rules: Sequence[IgnoreRule]) -> bool:
    if not rules:
        return False
    sites = None
    for rule in rules:
        if callable(rule):
            try:
                if rule(info):
                    return True
            except Exception:
                continue
        elif fnmatch.fnmatchcase(info.name, rule) or fnmatch.fnmatchcase(info.coro, rule):
            return True
        else:
            if sites is None:
                sites = _site_strings(info)
            if any(fnmatch.fnmatchcase(s, rule) for s in sites):
                return True
    return False


# ---- the check ----------------------------------------------------------------


def _validate(
    grace: float, kinds: Iterable[str], on_leak: str, ignore: Sequence[IgnoreRule], asyncgens: str = "report"
) -> None:
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
        raise ValueError(f"grace must be a number of seconds >= 0, got {grace!r}")
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad:
        raise ValueError(f"unknown leak kind(s) {bad!r}; choose from {', '.join(ALL_KINDS)}")
    if on_leak not in ON_LEAK:
        raise ValueError(f"on_leak must be one of {', '.join(ON_LEAK)}, got {on_leak!r}")
    if asyncgens not in ASYNCGEN_MODES:
        raise ValueError(f"asyncgens must be one of {', '.join(ASYNCGEN_MODES)}, got {asyncgens!r}")
    for rule in ignore:
        if not (isinstance(rule, str) or callable(rule)):
            raise TypeError(f"ignore rules are glob strings or callables, got {rule!r}")


class LeakCheck:
    """What :func:`check` returns: a context manager (sync and async) and a
    decorator. Each use opens a fresh scope."""

    def __init__(
        self,
        *,
        grace: float = 0.1,
        ignore: Sequence[IgnoreRule] = (),
        kinds: Iterable[str] = KINDS,
        on_leak: str = "raise",
        collect: bool = True,
        label: str = "check()",
        blocking: float | None = None,
        asyncgens: str = "report",
    ) -> None:
        kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        ignore = tuple([ignore] if isinstance(ignore, str) or callable(ignore) else ignore)
        _validate(grace, kinds, on_leak, ignore, asyncgens)
        self.asyncgens = asyncgens
        self.grace = float(grace)
        self.ignore = ignore
        self.kinds = kinds
        self.on_leak = on_leak
        self.collect = collect
        self.label = label
        self.blocking = validate_blocking(blocking)
        self._blocking: BlockingScope | None = None
        self.blocked: list[Any] = []  # Episodes of the last use (with blocking=)
        self.leaks: list[Leak] = []
        # Async generators never closed (asyncgens="report": not in .leaks).
        self.unclosed_asyncgens: list[Leak] = []
        # What happened during the grace that a report should say (the loop
        # stopped under it, say); and whether check() itself logs the
        # unclosed generators (the pytest plugin reports them itself).
        self.notes: list[str] = []
        self.report_asyncgens = True
        # Pending tasks found abandoned when the scope ended (id -> task).
        self._abandoned: dict[int, asyncio.Task[Any]] = {}
        self._scope: scopes.Scope | None = None
        self._token: Any = None
        # Tasks the grace never waits for (a test runner's own task, which
        # ends only when its runner closes): a predicate on the raw task.
        self.grace_exempt: Callable[[Any], bool] | None = None
        # None: what this check's collection finalizes raises into
        # sys.unraisablehook as usual. A list (the pytest plugin): kept here
        # instead, one line each (see _collect_garbage).
        self.unraisable: list[str] | None = None

    # -- entering and leaving ----------------------------------------------------
    def _enter(self) -> LeakCheck:
        if self._scope is not None and self._scope.open:
            raise RuntimeError("this check() is already active; use a new taskleak.check() per scope")
        self.leaks = []
        self.unclosed_asyncgens = []
        self.notes = []
        self._abandoned = {}
        self._to_cancel: list[asyncio.Task[Any]] = []
        tracking.install()
        patch_runner_shutdowns()  # runner modules imported since install()
        self._scope = scopes.open_scope(self.label)
        self._token = scopes.SCOPE_VAR.set(self._scope.id)
        if self.blocking is not None:
            self._blocking = BlockingScope(self.blocking)
        return self

    def _leave(self) -> None:
        if self._token is not None:
            try:
                scopes.SCOPE_VAR.reset(self._token)
            except ValueError:  # exited in another context (e.g. a different task)
                scopes.SCOPE_VAR.set(0)
            self._token = None

    def __enter__(self) -> LeakCheck:
        return self._enter()

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if self._blocking is not None:
            self._blocking.body_ended()
        self._leave()
        self._drive_idle_loops()
        self._finish(body_failed=et is not None)

    async def __aenter__(self) -> LeakCheck:
        return self._enter()

    async def __aexit__(self, et: Any, ev: Any, tb: Any) -> None:
        if self._blocking is not None:
            self._blocking.body_ended()
        self._leave()
        await self._yield_grace()
        self._finish(body_failed=et is not None, can_await=True)
        if self.on_leak == "cancel" and self._to_cancel:
            await asyncio.gather(*self._to_cancel, return_exceptions=True)
            self._raise_after_cancel(body_failed=et is not None)

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        opts: dict[str, Any] = dict(
            grace=self.grace,
            ignore=self.ignore,
            kinds=self.kinds,
            on_leak=self.on_leak,
            collect=self.collect,
            label=getattr(fn, "__qualname__", self.label),
            blocking=self.blocking,
            asyncgens=self.asyncgens,
        )
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with LeakCheck(**opts):
                    return await fn(*args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with LeakCheck(**opts):
                return fn(*args, **kwargs)

        return wrapper

    # -- grace -------------------------------------------------------------------
    def _pending_scope_tasks(self) -> list[asyncio.Task[Any]]:
        assert self._scope is not None
        me = _current_task_or_none()
        exempt = self.grace_exempt
        return [
            t
            for t in _core.scope_tasks(self._scope.id)
            if not t.done() and t is not me and not is_asyncgen_finalizer(t) and not (exempt is not None and exempt(t))
        ]

    # The grace is bounded twice: in wall time and in the loop's own time.
    # A loop with a virtual clock (looptime, a test loop that jumps to its next
    # timer when idle) would otherwise let a task's sleep(30) finish inside a
    # 0.1 s grace: every wait here is a timer on the loop, and the grace ends
    # once loop.time() has moved `grace` seconds, whichever clock gets there
    # first.
    async def _yield_grace(self) -> None:
        self._note_abandoned()
        loop = asyncio.get_running_loop()
        wall_end = time.monotonic() + self.grace
        loop_end = loop.time() + self.grace
        delay = 0.001
        while True:
            pending = [t for t in self._pending_scope_tasks() if t.get_loop() is loop]
            left = min(wall_end - time.monotonic(), loop_end - loop.time())
            if not pending or left <= 0:
                return
            await asyncio.sleep(min(delay, left))
            delay *= 2

    def _drive_idle_loops(self, only: Any = None) -> None:
        """Sync exit: give pending tasks their grace by running their loop, if
        that loop is open, idle, and not running in some thread (`only`: just
        that loop).

        The loop runs until a timer of its own fires, never a task: if user
        code stops the loop meanwhile (``loop.stop()``), the grace ends and
        leaves nothing behind, and the report says which tasks finished in
        it only because it ran their loop."""
        self._note_abandoned()
        if self.grace <= 0:
            return
        wall_end = time.monotonic() + self.grace
        loop_end: dict[Any, float] = {}
        delay = 0.001
        while True:
            loops = {t.get_loop() for t in self._pending_scope_tasks()}
            idle = [lp for lp in loops if not lp.is_running() and not lp.is_closed() and only in (None, lp)]
            if not idle:
                return
            progressed = False
            for lp in idle:
                end = loop_end.setdefault(lp, lp.time() + self.grace)
                left = min(wall_end - time.monotonic(), end - lp.time())
                if left <= 0:
                    continue
                progressed = True
                before = [t for t in self._pending_scope_tasks() if t.get_loop() is lp]
                if not _run_for(lp, min(delay, left)):
                    self._grace_cut(lp, before)
                    return
            if not progressed:
                return
            delay *= 2

    def _grace_cut(self, loop: Any, before: list[asyncio.Task[Any]]) -> None:
        finished = [t for t in before if t.done()]
        why = "closed" if loop.is_closed() else "stopped (loop.stop())"
        note = f"taskleak's grace was cut short: the event loop was {why} while the grace ran it."
        if finished:
            infos = _snapshot_of(finished)
            named = "; ".join(f"{i.coro}() created at {_site_text(i)}" for i in infos)
            note += (
                f" Still pending when the scope ended, finished during the grace only because it ran "
                f"their loop: {named}."
            )
        self.notes.append(note)

    def _counts(self, kind: str) -> bool:
        # "abandoned" refines "pending": it counts wherever pending does.
        return kind in self.kinds or (kind == ABANDONED and "pending" in self.kinds)

    def _note_abandoned(self) -> None:
        """Remember the scope's pending tasks nobody can consume any more,
        before the grace runs anything: their consumer (a gather) is done."""
        if self._scope is None or not self._counts(ABANDONED):
            return
        for t in self._pending_scope_tasks():
            if id(t) not in self._abandoned and is_abandoned(t):
                self._abandoned[id(t)] = t

    # -- finding leaks -------------------------------------------------------------
    def _finish(
        self,
        body_failed: bool,
        can_await: bool = False,
        exclude: Iterable[Any] = (),
        stops: Sequence[Any] = (),
        scoped: Sequence[Any] = (),
    ) -> None:
        """Find the leaks and act on them. With `can_await` (async exit), the
        caller awaits the cancelled tasks and raises afterwards. `exclude`:
        objects that die with the scope (a test's own objects), never
        holders; `scoped`: those objects themselves, where they are known;
        `stops`: objects known to outlive the scope."""
        assert self._scope is not None
        scope = self._scope
        self._to_cancel = []
        blocked = self._blocking.finish() if self._blocking is not None else []
        self._blocking = None
        self.blocked = blocked
        try:
            self._note_abandoned()
            # Pending tasks are taken (and held) before anything else: a
            # pending task nobody references would otherwise be "destroyed
            # while pending" by a collection rather than reported as pending.
            pending = self._pending_scope_tasks()
            self.leaks = self._find_leaks(scope.id, pending, list(exclude), stops, scoped)
        finally:
            scopes.close_scope(scope)
        if not self.leaks:
            self._report_asyncgens()
            self._report_blocked(body_failed)
            return
        report = format_leaks(self.leaks + self.unclosed_asyncgens, self.label, notes=self.notes)
        if self.on_leak == "warn":
            warnings.warn(report, TaskLeakWarning, stacklevel=3)
        elif self.on_leak == "log":
            _log.warning("%s", report)
        elif self.on_leak == "cancel":
            self._to_cancel = [
                lk.task.task
                for lk in self.leaks
                if lk.kind in ("pending", "abandoned") and lk.task.task is not None and not lk.task.task.done()
            ]
            for t in self._to_cancel:
                t.cancel()
            if not (can_await and self._to_cancel):
                # Sync exit: await them where their loop is idle; inside a
                # running loop they are cancelled but cannot be awaited here.
                self._drive_cancellations()
                self._raise_after_cancel(body_failed)
        elif not body_failed:  # never mask the body's own exception
            raise TaskLeakError(report, self.leaks)

    def _report_asyncgens(self) -> None:
        # Not task leaks: a warning (on_leak="warn") or a log line, never
        # an error, unless asyncgens="fail" (then they are in .leaks).
        if not (self.unclosed_asyncgens and self.report_asyncgens):
            return
        report = format_leaks(self.unclosed_asyncgens, self.label, notes=self.notes)
        if self.on_leak == "warn":
            warnings.warn(report, TaskLeakWarning, stacklevel=4)
        else:
            _log.warning("%s", report)

    def _report_blocked(self, body_failed: bool) -> None:
        # Leaks are reported first (their error names them); blocks alone get
        # LoopBlockedError, or the on_leak warning / log line.
        if not self.blocked or body_failed:
            return
        report = format_blocked(self.blocked, self.blocking or 0.0, self.label)
        if self.on_leak == "warn":
            warnings.warn(report, TaskLeakWarning, stacklevel=4)
        elif self.on_leak == "log":
            _log.warning("%s", report)
        else:
            raise LoopBlockedError(report, self.blocked)

    def _drive_cancellations(self) -> None:
        loops = {t.get_loop() for t in self._to_cancel}
        for lp in loops:
            if not lp.is_running() and not lp.is_closed():
                mine = [t for t in self._to_cancel if t.get_loop() is lp]
                lp.run_until_complete(asyncio.gather(*mine, return_exceptions=True))

    def _raise_after_cancel(self, body_failed: bool = False) -> None:
        if self.leaks and not body_failed:
            raise TaskLeakError(
                format_leaks(self.leaks + self.unclosed_asyncgens, self.label, notes=self.notes)
                + "\n(the pending tasks were cancelled)",
                self.leaks,
            )

    def _done_suspects(
        self, sid: int, stops: Sequence[Any], scoped: Sequence[Any] = (), skip: Iterable[int] = ()
    ) -> list[asyncio.Task[Any]]:
        """The finished tasks of the scope that something outside their own
        reference cycles still holds. Cyclic garbage is told apart locally
        (held_from_outside looks only at what the tasks reach), so a clean
        scope never pays for a collection; only where that cannot decide, or
        to surface a garbage task's unread exception now, does the collector
        run."""
        me = _current_task_or_none()
        skip = set(skip)  # abandoned tasks: reported as such, held by the check itself
        done = [t for t in _core.scope_tasks(sid) if t.done() and t is not me and id(t) not in skip]
        if not done:
            return done
        held = _core.held_from_outside(done, _stops(done, stops), _LOCAL_LIMIT, _transparent(done, scoped))
        if held is not None:
            garbage_unread = any(_unretrieved(t) and not h for t, h in zip(done, held))
            done = self._not_ignored([t for t, h in zip(done, held) if h])
            if not ((done or garbage_unread) and self.collect):
                return done
        if not self.collect:
            return done
        # Something outside still refers to a task (possibly garbage that is
        # not the task's own, a closed client's cycle, say), or a garbage
        # task's unread exception should surface now: one collection, then
        # the holder search only for what survives it.
        # The young generations first: garbage the test itself made (a
        # traceback cycle keeping a thread's frames, and the task a local of
        # one of them) is usually still young, and collecting it costs what
        # the test allocated, not the whole heap; the full collection only
        # if something is still held, or garbage with an unread exception
        # is left, after it.
        del done
        for generation in (1, 2):
            self._collect_garbage(generation)
            done = [t for t in _core.scope_tasks(sid) if t.done() and t is not me and id(t) not in skip]
            if not done:
                return done
            again = _core.held_from_outside(done, _stops(done, stops), _LOCAL_LIMIT, _transparent(done, scoped))
            if again is None:
                continue
            if generation == 1 and not any(h or _unretrieved(t) for t, h in zip(done, again)):
                return []
            done = [t for t, h in zip(done, again) if h]
        return done

    def _collect_garbage(self, generation: int = 2) -> None:
        """One gc.collect(generation). It finalizes whatever garbage is waiting, not only
        the scope's: a socket an earlier test never closed warns from its
        finalizer, and under ``-W error`` that is an "unraisable" exception
        pytest charges to the test running now (found on anyio's suite). With
        `unraisable` set, those are kept for a report instead of reaching
        sys.unraisablehook; a plain check() changes nothing."""
        if self.unraisable is None:
            gc.collect(generation)
            return
        kept = self.unraisable
        previous = sys.unraisablehook

        def keep(u: Any) -> None:
            try:
                what = f"{u.exc_type.__name__}: {u.exc_value}" if u.exc_type else str(u.err_msg)
                if u.object is not None:
                    what += f" (in {type(u.object).__module__}.{type(u.object).__qualname__})"
                if len(kept) < 20:
                    kept.append(what)
            except Exception:
                pass

        sys.unraisablehook = keep
        try:
            gc.collect(generation)
        finally:
            sys.unraisablehook = previous

    def _not_ignored(self, tasks: list[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
        """Ignored tasks (a test runner's own, say) never cost a collection
        or a holder search."""
        if not tasks or not self.ignore:
            return tasks
        infos = {id(i.task): i for i in _snapshot_of(tasks)}
        return [t for t in tasks if not _ignored(infos[id(t)], self.ignore)]

    def _find_leaks(
        self,
        sid: int,
        pending: list[asyncio.Task[Any]],
        exclude: Sequence[Any] = (),
        stops: Sequence[Any] = (),
        scoped: Sequence[Any] = (),
    ) -> list[Leak]:
        leaks: list[Leak] = []
        me = _current_task_or_none()
        abandoned, self._abandoned = self._abandoned, {}
        done = self._done_suspects(sid, stops, scoped, skip=abandoned)
        # Pending tasks that appeared during the grace; never asyncio's own
        # async-generator finalizers, which only wait for their loop turn.
        pending = pending + [
            t
            for t in _core.scope_tasks(sid)
            if not t.done() and t is not me and t not in pending and not is_asyncgen_finalizer(t)
        ]
        pending = [t for t in pending if id(t) not in abandoned]
        gave_up = list(abandoned.values())
        del abandoned
        snap = _snapshot_of(pending + done + gave_up)
        infos = {id(i.task): i for i in snap}
        # Ignored tasks (a test runner's own, say) never cost a holder search.
        done = [t for t in done if not _ignored(infos[id(t)], self.ignore)]
        held: dict[int, list[str]] = {}
        if done and ("done-retained" in self.kinds or "never-retrieved" in self.kinds):
            suspects = {id(t) for t in _core.scope_tasks(sid)}
            held = holders_of_finished(done, suspects, exclude=list(exclude) + [done, pending])
        for t in pending:
            leaks.append(Leak("pending", infos[id(t)]))
        # An abandoned task still pending now is a pending leak as before
        # (the note names its gather); one its loop's shutdown cancelled is
        # the shutdown event's pending leak, with the note; only one that
        # finished during the grace - missed before - is kind "abandoned".
        shutdown = {e.serial for e in scope_events(sid) if e.kind == "pending-at-shutdown" and e.serial}
        notes: dict[int, str] = {}
        for t in gave_up:
            info = infos[id(t)]
            if not t.done():
                leaks.append(Leak("pending", info, note=_abandoned_note(info)))
            elif info.serial and info.serial in shutdown:
                notes[info.serial] = _abandoned_note(info)
            else:
                note = (
                    _abandoned_note(info) + "; it finished during taskleak's grace only because the grace ran its loop"
                )
                leaks.append(Leak("abandoned", info, note=note))
        del gave_up
        for t in done:
            failed_unread = _unretrieved(t)  # not t.exception(): that marks the exception retrieved
            if id(t) in held:
                kind = "never-retrieved" if failed_unread else "done-retained"
                exc = getattr(t, "_exception", None) if failed_unread else None  # no side effect
                leaks.append(
                    Leak(kind, infos[id(t)], held_by=held[id(t)], exception=exc, exception_text=_exc_text(exc))
                )
        live_pending = {lk.task.serial for lk in leaks if lk.task.serial}
        gens: list[Leak] = []
        # One task, one leak: a task seen pending at a loop shutdown that the
        # collector then destroys (the runner never got to cancel it) raises
        # two events; the first says what happened.
        seen: set[int] = set()
        for e in scope_events(sid):
            if e.serial and e.serial in live_pending:
                continue  # seen pending at a loop shutdown, and still pending now: one leak
            if e.serial:
                if e.serial in seen:
                    continue
                seen.add(e.serial)
            if e.interrupted:
                # The run was interrupted (an exception escaped its loop): the
                # runner cancelled its tasks as the interruption's cleanup; the
                # exception is the test's outcome, not a leak.
                continue
            if is_asyncgen_event(e):  # an async generator never closed, not a task of the user's
                gens.append(Leak(ASYNCGEN, DetachedTaskInfo.from_event(e)))
                continue
            kind = {
                "pending-at-shutdown": "pending",
                "destroyed-pending": "gc-pending",
                "never-retrieved": "never-retrieved",
            }[e.kind]
            leaks.append(
                Leak(
                    kind,
                    DetachedTaskInfo.from_event(e),
                    exception=e.exception_object,
                    exception_text=e.exception,
                    note=notes.get(e.serial or 0),
                )
            )
        assert self._scope is not None
        # Whatever was looked at here is not a "late" leak if it surfaces again.
        self._scope.meta["reported_serials"] = {lk.task.serial for lk in leaks + gens if lk.task.serial}
        gens = [g for g in gens if not _ignored(g.task, self.ignore)]
        found = [lk for lk in leaks if self._counts(lk.kind) and not _ignored(lk.task, self.ignore)]
        if self.asyncgens == "fail":
            return found + gens
        if self.asyncgens == "report":
            self.unclosed_asyncgens = gens
        return found


# How many objects held_from_outside may examine before a collection is
# cheaper: the objects a finished task reaches without entering loops,
# modules or running frames are usually a few hundred.
_LOCAL_LIMIT = 100_000


def _running_frames() -> list[Any]:
    """Frames still running in any thread - except taskleak's own: those
    hold nothing of the user's, and listing them here would make a cycle
    (the list -> this frame -> the list) that keeps everything the check
    looked at alive until the next collection."""
    frames = []
    # Popped, not iterated: a loop variable would be left holding the last
    # thread's top frame, this very frame when this thread comes last - a
    # frame that holds itself, and its callers' locals with it.
    tops = list(sys._current_frames().values())
    while tops:
        f: types.FrameType | None = tops.pop()
        while f is not None:
            if not f.f_code.co_filename.startswith(_OWN_DIR):
                frames.append(f)
            f = f.f_back
    return frames


_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _stops(tasks: Sequence[asyncio.Task[Any]], extra: Sequence[Any]) -> list[Any]:
    """Objects that outlive any scope, where the local search stops: the
    tasks' loops, module namespaces, frames still running, and the caller's."""
    out: list[Any] = list({id(t.get_loop()): t.get_loop() for t in tasks}.values())
    for mod in list(sys.modules.values()):
        d = getattr(mod, "__dict__", None)
        if isinstance(d, dict):
            out.append(d)
    out.extend(_running_frames())
    out.extend(extra)
    return out


def _site_text(info: TaskInfo) -> str:
    site = creation_site(info.created_at or [])
    return site[0].short() if site else "(unknown)"


def _abandoned_note(info: TaskInfo) -> str:
    site = gather_site(info.created_at)
    where = f"asyncio.gather() at {site.short()}" if site is not None else "an asyncio.gather()"
    return f"abandoned: its only consumer, {where}, had already finished (another branch raised)"


def _run_for(loop: Any, seconds: float) -> bool:
    """Run an idle `loop` for `seconds`, on a timer and a plain future: no
    task is made, so nothing of taskleak's can be left pending. False when
    the loop was stopped (or closed) before the timer fired."""
    fut = loop.create_future()
    timer = loop.call_later(seconds, _resolve, fut)
    try:
        loop.run_until_complete(fut)
        return True
    except Exception:  # RuntimeError: "Event loop stopped before Future completed."
        return False
    finally:
        timer.cancel()
        if not fut.done():
            fut.cancel()


def _resolve(fut: Any) -> None:
    if not fut.done():
        fut.set_result(None)


def _transparent(tasks: Sequence[asyncio.Task[Any]], scoped: Sequence[Any]) -> list[Any]:
    """What dies with the scope: its own objects, and what weak-keyed dicts
    keep only for the tasks' loops already closed (anyio's per-loop state of
    a portal's loop): a task held only through those is not held, and costs
    no collection nor holder search (the search would drop those paths)."""
    return list(scoped) + closed_loop_state({id(t.get_loop()): t.get_loop() for t in tasks}.values())


def _unretrieved(task: asyncio.Task[Any]) -> bool:
    # Future._log_traceback is True until someone calls result()/exception().
    return bool(getattr(task, "_log_traceback", False))


def _exc_text(exc: BaseException | None) -> str | None:
    return exception_text(exc)


def _current_task_or_none() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _snapshot_of(tasks: list[asyncio.Task[Any]]) -> Snapshot:
    return Snapshot.of_tasks(tasks)


def check(
    *,
    grace: float = 0.1,
    ignore: Sequence[IgnoreRule] = (),
    kinds: Iterable[str] = KINDS,
    on_leak: str = "raise",
    collect: bool = True,
    blocking: float | None = None,
    asyncgens: str = "report",
) -> LeakCheck:
    """Fail the scope if tasks created inside it leak.

    Args:
        grace: seconds pending tasks get to finish (with backoff) before they
            count, where a loop can be yielded to (``async with``, or an idle
            loop after a sync scope).
        ignore: glob strings matched against task names, coroutine qualnames
            and creation sites (``"pkg.module:function"`` or ``"*/file.py:120"``),
            or callables taking a TaskInfo and returning True to ignore it.
        kinds: which leak kinds count: "pending", "gc-pending",
            "done-retained", "never-retrieved", "abandoned" (a pending task
            whose only consumer, a gather, already finished).
        on_leak: "raise" (TaskLeakError), "warn" (TaskLeakWarning), "log"
            (logger "taskleak"), or "cancel" (cancel and await the pending
            leaked tasks, then raise).
        collect: run the garbage collector at exit when tasks of the scope are
            still alive, so gc-pending and never-retrieved leaks surface now.
        blocking: seconds (>= 0.02); also fail the scope with
            LoopBlockedError (an AssertionError, ``.episodes``) when an event
            loop was blocked that long inside it (docs/blocking.md). None
            (default): not checked.
        asyncgens: async generators left unclosed in the scope (asyncio's
            aclose() task for one destroyed pending: its ``finally`` never
            ran): "report" (default: in ``.unclosed_asyncgens``, logged or
            warned, never raised), "fail" (leaks of kind "asyncgen"), or
            "ignore".

    If the body raises, its exception propagates and leaks are not raised
    over it (they are still in ``.leaks``).
    """
    return LeakCheck(
        grace=grace,
        ignore=ignore,
        kinds=kinds,
        on_leak=on_leak,
        collect=collect,
        blocking=blocking,
        asyncgens=asyncgens,
    )
