"""Dump on a signal, like faulthandler: ``install(dump_signal=signal.SIGUSR1)``.

The handler writes :func:`taskleak.dump` to stderr. Python runs signal
handlers between bytecodes of the main thread, so this also answers while the
event loop is busy (or blocked) in Python code.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from .dump import dump

__all__ = ["check_dump_signal", "set_dump_signal", "restore_dump_signal", "dump_signal"]

_dump_signal: int | None = None
_previous_handler: Any = None


def check_dump_signal(sig: Any) -> None:
    """Raise TypeError/ValueError before anything is installed, if `sig` cannot be used."""
    if isinstance(sig, bool) or not isinstance(sig, int):
        raise TypeError(f"dump_signal must be a signal number (e.g. signal.SIGUSR1), got {sig!r}")
    if sig not in signal.valid_signals() or sig in (getattr(signal, "SIGKILL", -1), getattr(signal, "SIGSTOP", -1)):
        raise ValueError(f"dump_signal {sig!r} is not a signal that can be caught")
    if threading.current_thread() is not threading.main_thread():
        raise ValueError("install(dump_signal=...) must be called from the main thread")


def _dump_handler(signum: int, frame: Any) -> None:
    try:
        dump(sys.stderr)
    except Exception as e:  # never let a diagnostic dump kill the process
        try:
            sys.stderr.write(f"taskleak: dump on signal {signum} failed: {e!r}\n")
        except Exception:
            pass


def set_dump_signal(sig: int) -> None:
    global _dump_signal, _previous_handler
    if _dump_signal == sig:
        return
    restore_dump_signal()
    _previous_handler = signal.signal(sig, _dump_handler)
    _dump_signal = sig


def restore_dump_signal() -> None:
    """Put back the handler that was there before; a no-op when none is set."""
    global _dump_signal, _previous_handler
    if _dump_signal is None:
        return
    try:
        if signal.getsignal(_dump_signal) is _dump_handler:
            signal.signal(_dump_signal, _previous_handler if _previous_handler is not None else signal.SIG_DFL)
    except ValueError:  # not the main thread: leave it, but stop dumping
        pass
    _dump_signal = None
    _previous_handler = None


def dump_signal() -> int | None:
    """The signal that dumps, or None."""
    return _dump_signal
