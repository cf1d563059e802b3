"""The ``taskleak`` command line: parses the arguments and hands them to the
command's module (``run``, ``ps``, ``top``, ``dump``, ``snapshot``, ``why``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, cast

from ..monitor.config import check_interval, parse_seconds
from . import dump, ps, snapshot, top, why
from .attach import AttachError
from .output_path import unwritable
from .run import RunOptions, exit_by_sigterm, run_program

__all__ = ["main"]

# The commands that inspect another process, in the order --help lists them:
# each module adds its parser and runs its command.
_PROCESS_COMMANDS: dict[str, tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]] = {
    "ps": (ps.add_parser, ps.cmd_ps),
    "top": (top.add_parser, top.cmd_top),
    "dump": (dump.add_parser, dump.cmd_dump),
    "snapshot": (snapshot.add_parser, snapshot.cmd_snapshot),
    "why": (why.add_parser, why.cmd_why),
}

_RUN_USAGE = (
    "taskleak run [--json FILE] [--fail-on-leak] [--stack-depth N] [--monitor[=SECONDS]] "
    "[--blocking SECONDS] "
    "(script.py | -m module) [args...]"
)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("taskleak")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "unknown"


def _seconds(text: str) -> float:
    """--monitor's value: seconds, or an interval with its unit (500ms, 30s, 1m)."""
    try:
        return parse_seconds(text)[0]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r} (e.g. 10, 30s, 500ms)") from None


def _run_process_command(args: argparse.Namespace) -> int:
    """Run one of the process commands; AttachError becomes a message and exit status 1."""
    _, cmd = _PROCESS_COMMANDS[args.command]
    try:
        return cmd(args)
    except AttachError as e:
        print(f"taskleak {args.command}: {e}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, AttributeError) as e:
        # JSON of an unexpected shape: an agent of another taskleak version, or not an agent.
        print(
            f"taskleak {args.command}: malformed reply from process {getattr(args, 'pid', '?')}: missing or "
            f"unexpected field ({type(e).__name__}: {e}); is the agent from another taskleak version?",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="taskleak", description="Find leaked asyncio tasks: where they were created and where they are stuck."
    )
    p.add_argument("--version", action="version", version=f"taskleak {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        usage=_RUN_USAGE,
        help="run a Python program with task tracking and report leaked tasks at exit",
        description="Run a program with creation tracking on; at exit, report tasks pending at loop "
        "shutdown, destroyed while pending, failed without anyone retrieving the "
        "exception, and still alive. The exit status is the program's own unless "
        "--fail-on-leak is given and a leak was found.",
    )
    run.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    run.add_argument("--fail-on-leak", action="store_true", help="exit with status 1 if any leak was found")
    run.add_argument(
        "--stack-depth", type=int, default=32, metavar="N", help="frames kept per creation stack (1-128, default 32)"
    )
    run.add_argument(
        "--monitor",
        nargs="?",
        const=10.0,
        type=_seconds,
        metavar="SECONDS",
        help="also run the production monitor while the program runs (every SECONDS, default 10, "
        "0.001 to 86400; a unit may follow: 500ms, 30s, 1m); "
        "its alerts go to stderr",
    )
    run.add_argument(
        "--blocking",
        type=float,
        default=None,
        metavar="SECONDS",
        help="also report event loops blocked longer than SECONDS (e.g. 0.1), with the line",
    )
    run.add_argument("-m", dest="module", metavar="module", help="run a library module as a script")
    run.add_argument("target", nargs=argparse.REMAINDER, help="script.py [args...] (or the module's args with -m)")
    for add_parser, _ in _PROCESS_COMMANDS.values():
        add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """The ``taskleak`` command; returns its exit status.

    A reader that goes away (``taskleak top PID | head``) ends the command
    quietly, as the Python docs advise for SIGPIPE: stdout is pointed at
    /dev/null so that the interpreter's last flush at exit fails no more,
    and the status is 1."""
    try:
        try:
            return _main(argv)
        finally:
            # Inside the try, also after a SystemExit (argparse's --help): a
            # broken pipe surfaces here, not in the interpreter's flush at exit.
            sys.stdout.flush()
    except BrokenPipeError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # no stdout file descriptor (embedded, replaced sys.stdout)
            pass
        return 1


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command in _PROCESS_COMMANDS:
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "snapshot":
            # Checked before the process is asked anything (usage error, status 2).
            why = unwritable(args.output)
            if why is not None:
                _subparser(parser, "snapshot").error(f"-o: {why}")
        return _run_process_command(args)
    if args.command != "run":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        parser.print_help(sys.stderr)
        return 2
    run = _subparser(parser, "run")
    if extra:  # an option of `run` it does not know: its own usage, not the top-level one
        run.error(f"unrecognized arguments: {' '.join(extra)}")
    if not 1 <= args.stack_depth <= 128:
        run.error("--stack-depth must be between 1 and 128")
    if args.blocking is not None and not args.blocking >= 0.02:
        run.error("--blocking must be a number of seconds >= 0.02")
    if args.module:
        opts = RunOptions(args.module, True, list(args.target))
    else:
        if not args.target:
            run.error("nothing to run: give a script path or -m module")
        script, rest = args.target[0], list(args.target[1:])
        if script.startswith("-"):
            run.error(f"unknown option {script!r}")
        if not os.path.isfile(script):
            run.error(f"no such script: {script!r}")
        opts = RunOptions(script, False, rest)
    opts.json_file = args.json
    opts.fail_on_leak = args.fail_on_leak
    opts.stack_depth = args.stack_depth
    opts.blocking = args.blocking
    if opts.json_file is not None:
        # Before the program runs: a path found unwritable only at exit would
        # cost the whole run and hide the program's own status.
        why = unwritable(opts.json_file)
        if why is not None:
            run.error(f"--json: {why}")
    if args.monitor is not None:
        try:
            # Monitor's own range and message (monitor/config.py), as a usage error.
            args.monitor = check_interval("--monitor", args.monitor)
        except ValueError as e:
            run.error(str(e))
    if args.monitor is None:
        return run_program(opts)
    return _run_monitored(opts, args.monitor)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of one command, for a usage error in its own words."""
    return cast(argparse.ArgumentParser, cast(Any, parser._subparsers)._group_actions[0].choices[name])


def _run_monitored(opts: RunOptions, interval: float) -> int:
    # cli sits above monitor in the layers (pyproject.toml): the monitor wraps
    # the run, and run.py does not need to know about it.
    import logging

    from ..monitor import Monitor

    log = logging.getLogger("taskleak")
    if not log.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(h)
        log.propagate = False
    from ..live.http_server import start_agent

    mon = Monitor(interval=interval)
    mon.start()
    agent = start_agent(mon)  # `taskleak ps/top/dump PID` reach the program through it
    try:
        # On SIGTERM, the process ends by the signal only once the agent's
        # socket is removed and the monitor's summary printed.
        status = run_program(opts, exit_by_signal=False)
    finally:
        if agent is not None:
            agent.close()
        mon.stop()
        n = len(mon.alerts())
        print(f"taskleak monitor: {len(mon.samples())} samples, {n} alert{'s' if n != 1 else ''}", file=sys.stderr)
    if status == 128 + signal.SIGTERM:
        exit_by_sigterm()
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
