"""``taskleak run``: run a program with tracking on and report its leaks at exit."""

from __future__ import annotations

import gc
import json
import os
import runpy
import sys
import traceback
from dataclasses import dataclass
from typing import List, Optional, TextIO

from .. import tracking
from ..report.blocking import episodes_to_list, format_episodes
from ..report.json_form import SCHEMA_VERSION, events_to_list
from ..report.text import format_loss_events, format_snapshot
from ..snapshot import snapshot
from ..tracking.loss_events import loss_events
from ..tracking.watchdog import watch_blocking

__all__ = ["RunOptions", "run_program"]


@dataclass
class RunOptions:
    target: str                  # script path or module name
    is_module: bool
    args: List[str]
    json_file: Optional[str] = None
    fail_on_leak: bool = False
    stack_depth: int = 32
    blocking: Optional[float] = None  # seconds: watch for blocked event loops


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _run_target(opts: RunOptions) -> int:
    saved_argv, saved_path0 = sys.argv, sys.path[0] if sys.path else None
    try:
        if opts.is_module:
            sys.argv = [opts.target] + opts.args
            runpy.run_module(opts.target, run_name="__main__", alter_sys=True)
        else:
            sys.argv = [opts.target] + opts.args
            sys.path.insert(0, os.path.dirname(os.path.abspath(opts.target)))
            runpy.run_path(opts.target, run_name="__main__")
        return 0
    except SystemExit as e:
        return _exit_status(e.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.argv = saved_argv
        if not opts.is_module and saved_path0 is not None and sys.path and sys.path[0] != saved_path0:
            sys.path.pop(0)


def build_report(program: str, out: TextIO) -> dict:
    """Collect garbage (so destroyed/never-retrieved tasks surface), then report
    loss events and the tasks still alive. Returns the JSON form."""
    for _ in range(3):
        gc.collect()
    events = loss_events()
    live = snapshot().pending()
    leaks = len(events) + len(live)
    if leaks == 0:
        out.write(f"taskleak: no leaked tasks in {program}\n")
    else:
        out.write(f"\ntaskleak: {leaks} leaked task{'s' if leaks != 1 else ''} in {program}\n\n")
        if events:
            out.write(format_loss_events(events) + "\n")
        if len(live):
            out.write("\n== tasks still pending at exit ==\n\n")
            out.write(format_snapshot(live))
    return {
        "schema": SCHEMA_VERSION,
        "program": program,
        "leak_count": leaks,
        "loss_events": events_to_list(events),
        "pending_at_exit": [t.to_dict() for t in live],
    }


def _blocking_report(episodes: list, threshold: float, out: TextIO) -> None:
    if episodes:
        out.write("\n" + format_episodes(episodes, f"event loops blocked longer than {threshold:g} s") + "\n")
    else:
        out.write(f"taskleak: no event loop blocked longer than {threshold:g} s\n")


def run_program(opts: RunOptions, out: TextIO = sys.stderr) -> int:
    tracking.install(stack_depth=opts.stack_depth)
    watch = watch_blocking(opts.blocking) if opts.blocking is not None else None
    status = _run_target(opts)
    episodes = watch.episodes() if watch is not None else []
    if watch is not None:
        watch.stop()
    try:
        report = build_report(opts.target, out)
        if watch is not None:
            _blocking_report(episodes, watch.threshold, out)
            report["blocked_loops"] = episodes_to_list(episodes)
    except Exception:  # a failing report must not hide the program's status
        traceback.print_exc()
        return status or 1
    if opts.json_file:
        with open(opts.json_file, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    if opts.fail_on_leak and report["leak_count"] and status == 0:
        return 1
    return status
