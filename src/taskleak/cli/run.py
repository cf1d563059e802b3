"""``taskleak run``: run a program with tracking on and report its leaks at exit.

At exit (normal, an exception, ``sys.exit``, or SIGTERM) the report lists the
tasks asyncio gave up on (loss events), the tasks still pending, and the tasks
that finished but are still held - with the path that holds them. One report
per process: a child forked from the program (``os.fork``, multiprocessing's
"fork" start method) that runs to the end of the program reports its own
leaks, under its own pid, and writes its JSON next to the parent's
(``FILE.<pid>``), never over it.
"""

from __future__ import annotations

import builtins
import gc
import io
import json
import os
import runpy
import signal
import sys
import traceback
import types
from dataclasses import dataclass
from typing import Any, TextIO

import taskleak._core as _core

from .. import tracking
from ..blocking.text import episodes_to_list, format_episodes
from ..blocking.watchdog import watch_blocking
from ..frame import Frame
from ..heap.holders import holders_of_finished
from ..model.json_form import SCHEMA_VERSION, events_to_list
from ..model.snapshot import snapshot
from ..model.text import format_loss_events, format_snapshot
from ..report.advice import fix_text
from ..report.asyncgens import format_unclosed_asyncgens, is_asyncgen_event
from ..tracking.loss_events import clear_loss_events, is_runner_main_task, loss_events

__all__ = ["RunOptions", "exit_by_sigterm", "run_program"]


@dataclass
class RunOptions:
    target: str  # script path or module name
    is_module: bool
    args: list[str]
    json_file: str | None = None
    fail_on_leak: bool = False
    stack_depth: int = 32
    blocking: float | None = None  # seconds: watch for blocked event loops


class _Terminated(SystemExit):
    """Raised in the program's main thread on SIGTERM, so that its finally
    blocks and asyncio.run()'s shutdown run, and the report is made.

    A SystemExit, because asyncio lets only SystemExit and KeyboardInterrupt
    through a callback or a task step: any other exception raised there (the
    signal arrives while the loop runs a callback, in a busy program) is
    handed to the loop's exception handler, or stored in the task, and the
    SIGTERM is lost."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def _main_module(opts: RunOptions) -> tuple[types.ModuleType, Any]:
    """A fresh ``__main__`` module for the program and its code, as python
    itself would run it. Unlike runpy's temporary module, it stays in
    sys.modules until the report is made, so what the program's globals hold
    at exit is still held (and named ``module __main__['DONE'][0]``)."""
    main = types.ModuleType("__main__")
    g = main.__dict__
    g["__builtins__"] = builtins
    if opts.is_module:
        mod_name, spec, code = runpy._get_module_details(opts.target)  # type: ignore[attr-defined]
        g.update(
            __file__=spec.origin, __cached__=spec.cached, __loader__=spec.loader, __package__=spec.parent, __spec__=spec
        )
        sys.argv[0] = spec.origin or opts.target
    else:
        path = os.path.abspath(opts.target)
        with io.open_code(path) as f:
            code = compile(f.read(), opts.target, "exec")
        g.update(__file__=opts.target, __cached__=None, __loader__=None, __package__=None, __spec__=None)
    return main, code


def _run_target(opts: RunOptions, keep: list[Any]) -> int:
    """Run the program; its ``__main__`` module goes into `keep`, and stays
    in sys.modules until the caller restores `keep[1]`."""
    saved_argv, saved_path = sys.argv, list(sys.path)
    keep.extend([None, sys.modules.get("__main__")])
    try:
        sys.argv = [opts.target] + opts.args
        if opts.is_module:
            sys.path.insert(0, os.getcwd())  # as `python -m`: the current directory first
        else:
            sys.path.insert(0, os.path.dirname(os.path.abspath(opts.target)))
        if not opts.is_module and not os.path.isfile(opts.target):  # a directory or zip with __main__
            runpy.run_path(opts.target, run_name="__main__")
            return 0
        try:
            main, code = _main_module(opts)
        except ImportError as e:  # what python -m says, without our traceback
            print(f"{sys.executable}: {e}", file=sys.stderr)
            return 1
        keep[0] = main
        sys.modules["__main__"] = main
        exec(code, main.__dict__)
        return 0
    except _Terminated:
        return 128 + signal.SIGTERM
    except SystemExit as e:
        return _exit_status(e.code)
    except KeyboardInterrupt as e:
        _print_program_exception(e)
        return 130
    except BaseException as e:
        _print_program_exception(e)
        return 1
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def _print_program_exception(e: BaseException) -> None:
    """The program's exception, as ``python script.py`` would print it: the
    runner's own frames (taskleak, runpy) cut from the front of the
    traceback, and a syntax error in the script shown without any."""
    tb = e.__traceback__
    while tb is not None and _outside_program(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(e), e, tb)


# ---- what is reported --------------------------------------------------------

_RUNPY = os.path.join("", "runpy.py")
_TASKLEAK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _outside_program(filename: str) -> bool:
    """Frames of the runner around the user's program: runpy, taskleak, and
    the `taskleak` console script."""
    return (
        filename.endswith(_RUNPY)
        or filename == "<frozen runpy>"
        or filename.startswith(_TASKLEAK_DIR)
        or os.path.basename(filename) == "taskleak"
    )


def _trim_stacks(obj: Any) -> Any:
    """Creation stacks in the JSON end at the user's program: runpy's and
    taskleak's own frames (outermost) are cut off."""
    if isinstance(obj, dict):
        out = {k: _trim_stacks(v) for k, v in obj.items()}
        stack = out.get("created_at")
        if isinstance(stack, list):
            while stack and isinstance(stack[-1], dict) and _outside_program(str(stack[-1].get("filename", ""))):
                stack.pop()
        return out
    if isinstance(obj, list):
        return [_trim_stacks(x) for x in obj]
    return obj


def _held_done_tasks(seen: set[int]) -> list[dict[str, Any]]:
    """Finished tasks still alive after collection, with the paths that hold
    them (a module global list, a class attribute, state on a loop...).
    Tasks already reported by a loss event (serials in `seen`: cancelled at
    shutdown, say) are not reported twice."""
    done = [t for t in _core.tracked_tasks() if t.done() and (_core.creation_info(t) or (0,))[0] not in seen]
    if not done:
        return []
    held = holders_of_finished(done, {id(t) for t in done}, exclude=[done])
    snap = snapshot()
    out = []
    for info in snap:
        t = info.task
        if t is not None and id(t) in held and t.done():
            out.append({"info": info, "held_by": held[id(t)]})
    return out


def _format_held(rows: list[dict[str, Any]]) -> str:
    lines = [f"== {len(rows)} task{'s' if len(rows) != 1 else ''} finished but still held at exit =="]
    for r in rows:
        info = r["info"]
        lines.append("")
        lines.append(f"{info.name}, {info.coro}() [{info.state}]")
        lines.append("  held by:")
        lines += [f"    {p}" for p in r["held_by"]]
        site: Frame | None = info.site
        if site is not None:
            lines.append(f"  created at: {site.short()}")
    return "\n".join(lines) + "\n"


def build_report(program: str, out: TextIO, pid: int | None = None, parent: int | None = None) -> dict[str, Any]:
    """Collect garbage (so destroyed/never-retrieved tasks surface), then report
    loss events, the tasks still pending and the finished tasks still held.
    Returns the JSON form."""
    for _ in range(3):
        gc.collect()
    pid = os.getpid() if pid is None else pid
    who = f"{program} (pid {pid}" + (f", forked from {parent})" if parent else ")")
    every_event = loss_events()
    # asyncio's aclose() tasks destroyed pending: generators never closed, not task leaks
    gens = [e for e in every_event if is_asyncgen_event(e)]
    events = [e for e in every_event if not is_runner_main_task(e) and not is_asyncgen_event(e)]
    live = snapshot().pending()
    held = _held_done_tasks({e.serial for e in every_event if e.serial})
    leaks = len(events) + len(live) + len(held)
    if leaks == 0:
        out.write(f"taskleak: no leaked tasks in {who}\n")
    else:
        out.write(f"\ntaskleak: {leaks} leaked task{'s' if leaks != 1 else ''} in {who}\n\n")
        if events:
            out.write(format_loss_events(events) + "\n")
        if len(live):
            out.write("\n== tasks still pending at exit ==\n\n")
            out.write(format_snapshot(live))
        if held:
            out.write("\n" + _format_held(held))
        out.write("\n" + fix_text(_kinds(events, len(live), held)) + "\n")
    if gens:
        out.write("\n" + format_unclosed_asyncgens(gens) + "\n")
    report = {
        "schema": SCHEMA_VERSION,
        "program": program,
        "pid": pid,
        "forked_from": parent,
        "leak_count": leaks,
        "loss_events": events_to_list(events),
        "pending_at_exit": [t.to_dict() for t in live],
        "done_retained_at_exit": [dict(r["info"].to_dict(), held_by=r["held_by"]) for r in held],
        "unclosed_asyncgens": events_to_list(gens),
    }
    trimmed: dict[str, Any] = _trim_stacks(report)
    return trimmed


_EVENT_KINDS = {"pending-at-shutdown": "pending", "destroyed-pending": "gc-pending"}


def _kinds(events: list[Any], pending: int, held: list[Any]) -> set[str]:
    """The leak kinds present, for the advice closing the report."""
    kinds = {_EVENT_KINDS.get(e.kind, e.kind) for e in events}
    return kinds | ({"pending"} if pending else set()) | ({"done-retained"} if held else set())


def _blocking_report(episodes: list[Any], threshold: float, out: TextIO) -> None:
    if episodes:
        out.write("\n" + format_episodes(episodes, f"event loops blocked longer than {threshold:g} s") + "\n")
    else:
        out.write(f"taskleak: no event loop blocked longer than {threshold:g} s\n")


def exit_by_sigterm(out: TextIO = sys.stderr) -> None:
    """End the process by SIGTERM, as the program would have ended without taskleak."""
    out.flush()
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:  # not the main thread
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def run_program(opts: RunOptions, out: TextIO = sys.stderr, exit_by_signal: bool = True) -> int:
    """Run the program and report; the program's exit status. After SIGTERM
    the process ends by SIGTERM here, unless `exit_by_signal` is False (the
    caller has cleaning up to do first; the status is then 143)."""
    tracking.install(stack_depth=opts.stack_depth)
    first_pid = os.getpid()
    # A forked child starts with its parent's loss events: its report is of
    # its own leaks only.
    os.register_at_fork(after_in_child=clear_loss_events)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        pass
    watch = watch_blocking(opts.blocking) if opts.blocking is not None else None
    keep: list[Any] = []
    status = _run_target(opts, keep)
    episodes = watch.episodes() if watch is not None else []
    if watch is not None:
        watch.stop()
    if previous is not None:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:
            pass
    pid = os.getpid()
    parent = first_pid if pid != first_pid else None
    try:
        report = build_report(opts.target, out, pid, parent)
        if watch is not None:
            _blocking_report(episodes, watch.threshold, out)
            report["blocked_loops"] = episodes_to_list(episodes)
    except Exception:  # a failing report must not hide the program's status
        traceback.print_exc()
        return status or 1
    finally:
        if keep and keep[0] is not None:
            if keep[1] is not None:
                sys.modules["__main__"] = keep[1]
            else:
                sys.modules.pop("__main__", None)
        del keep
    if opts.json_file:
        path = opts.json_file if parent is None else f"{opts.json_file}.{pid}"
        try:
            with open(path, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=2)
        except OSError as e:
            # Checked before the program ran (main.py); still possible (the
            # directory removed meanwhile, a full disk): a message, and the
            # program's status, not a traceback.
            print(f"taskleak run: --json: cannot write {path}: {e.strerror or e}", file=out)
            status = status or 1
    if status == 128 + signal.SIGTERM and exit_by_signal:
        exit_by_sigterm(out)
    if opts.fail_on_leak and report["leak_count"] and status == 0:
        return 1
    return status
