"""One frame of a creation stack or an await chain, and how reports shorten them."""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Frame"]


@dataclass(frozen=True)
class Frame:
    """A source location: ``str(frame) == "filename:lineno in function"``."""

    filename: str
    lineno: int
    function: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno} in {self.function}"

    def short(self) -> str:
        """Like ``str()``, with the filename shortened for reports."""
        return f"{short_path(self.filename)}:{self.lineno} in {self.function}"

    def to_dict(self) -> dict[str, Any]:
        return {"filename": self.filename, "lineno": self.lineno, "function": self.function}


_ASYNCIO_DIR = os.path.dirname(str(__import__("asyncio").__file__)) + os.sep
_TASKLEAK_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_STDLIB_DIR = sysconfig.get_paths()["stdlib"] + os.sep
_SITE_MARKERS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)


def library_paths() -> tuple[list[str], list[str]]:
    """(directory prefixes, path markers) of code that is never "your line":
    the stdlib (asyncio included), taskleak itself, and site-packages, for the
    native renderer of episodes in progress (src/core/live/blocked_now.cpp)."""
    return [_STDLIB_DIR, _ASYNCIO_DIR, _TASKLEAK_DIR], list(_SITE_MARKERS)


def library_relative(filename: str) -> str | None:
    """The path below site-packages (or dist-packages) or the standard
    library, e.g. "aiohttp/web.py"; None for a file outside both."""
    for marker in _SITE_MARKERS:
        i = filename.rfind(marker)
        if i >= 0:
            return filename[i + len(marker) :]
    if filename.startswith(_STDLIB_DIR):
        return filename[len(_STDLIB_DIR) :]
    return None


def short_path(filename: str) -> str:
    """Paths relative to the working directory, the stdlib or site-packages."""
    rel = library_relative(filename)
    if rel is not None:
        return rel
    cwd = os.getcwd() + os.sep
    if filename.startswith(cwd):
        return filename[len(cwd) :]
    return filename


# Test runners that start test and fixture coroutines: their frames say how
# the test ran, never who created a task (pytest, pluggy, pytest-asyncio,
# anyio's pytest plugin, unittest's IsolatedAsyncioTestCase).
_FRAMEWORK_PARTS = tuple(os.sep + p + os.sep for p in ("_pytest", "pluggy", "pytest_asyncio", "xdist", "execnet"))
_FRAMEWORK_FILES = tuple(
    os.sep + p for p in (os.path.join("anyio", "pytest_plugin.py"), os.path.join("unittest", "async_case.py"))
)


def is_test_framework(filename: str) -> bool:
    """A frame of the test runner rather than of the code under test."""
    return any(p in filename for p in _FRAMEWORK_PARTS) or filename.endswith(_FRAMEWORK_FILES)


# The backport of asyncio.Runner (what pytest-asyncio runs on 3.10) is asyncio.
_ASYNCIO_BACKPORT = os.sep + os.path.join("backports", "asyncio") + os.sep


def is_asyncio(filename: str) -> bool:
    """A frame of asyncio itself (or of its Runner backport)."""
    return filename.startswith(_ASYNCIO_DIR) or _ASYNCIO_BACKPORT in filename


def is_machinery(filename: str) -> bool:
    """Frames of asyncio itself, of taskleak or of the test runner: never the
    interesting site."""
    return is_asyncio(filename) or filename.startswith(_TASKLEAK_DIR) or is_test_framework(filename)


def is_library(filename: str) -> bool:
    """Standard library or installed third-party code."""
    return filename.startswith(_STDLIB_DIR) or any(m in filename for m in _SITE_MARKERS)


def frames_from_raw(raw: Iterable[tuple[str, int, str]] | None) -> list[Frame] | None:
    if raw is None:
        return None
    return [Frame(f, ln, fn) for (f, ln, fn) in raw]


def creation_site(frames: Sequence[Frame]) -> list[Frame]:
    """The part of a creation stack that says who created the task, innermost
    first: asyncio's own frames (create_task, ensure_future...) are skipped,
    and the stack is cut where the event loop's machinery begins, since what
    lies beyond (asyncio.run, runpy, the test runner) ran the loop, not the
    creation."""
    i = 0
    while i < len(frames) and is_machinery(frames[i].filename):
        i += 1
    if i == len(frames):
        return list(frames)
    j = i
    while j < len(frames) and not is_machinery(frames[j].filename):
        j += 1
    return list(frames[i:j])


def user_frame(frames: Sequence[Frame]) -> Frame | None:
    """The first frame (innermost first) that is neither asyncio, stdlib nor site-packages."""
    for f in frames:
        if not is_machinery(f.filename) and not is_library(f.filename):
            return f
    return None


def site_frame(frames: Sequence[Frame]) -> Frame:
    """The one frame that names where a task was created, as groups, alerts
    and loss reports name it: the innermost frame of your code within the
    creation site, else the creation site's innermost frame. Not beyond it:
    the code that started the loop (``main`` calling ``uvicorn.run``) did
    not create the tasks a library's callback made, and naming it would give
    every such task the same site. `frames` must not be empty."""
    site = creation_site(frames) or list(frames)
    return user_frame(site) or site[0]
