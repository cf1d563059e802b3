"""Checking a file the command line will write (``run --json``,
``snapshot -o``) before the work starts, so that a bad path is a usage error
in the first second rather than a traceback after the whole program ran."""

from __future__ import annotations

import os

__all__ = ["unwritable"]


def unwritable(path: str) -> str | None:
    """Why `path` cannot be written, or None if it can.

    Tried for real rather than guessed from permission bits (root passes
    ``os.access`` on /proc, where nothing can be created): an existing file
    is opened for appending (not truncated), a new one is created and removed.
    """
    if not path:
        return "empty file name"
    if os.path.isdir(path):
        return f"{path} is a directory"
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        return f"directory does not exist: {d}"
    try:
        if os.path.exists(path):
            with open(path, "a"):
                pass
        else:
            with open(path, "x"):
                pass
            os.unlink(path)
    except OSError as e:
        return f"cannot write {path}: {e.strerror or e}"
    return None
