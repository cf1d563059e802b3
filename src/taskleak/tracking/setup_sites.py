"""Where a server was set up: the line that called ``create_server`` /
``start_server``, for the tasks its connections start.

A connection handler's task is created from a loop callback (a protocol's
``connection_made``, asyncio's ``StreamReaderProtocol`` for ``start_server``):
no frame of the user's code is on its creation stack, and the line that set
the callback up ran long before. So the setup is recorded where it happens,
once per server (rare, so nothing is added to task creation): install()
wraps the asyncio loop's ``create_server`` and ``create_unix_server``, and
keeps the caller's stack per Server, weakly.

:func:`setup_site_of` finds a pending task's server when a report needs it:
from the locals of its suspended coroutines, a few attribute steps away (a
handler's ``writer._transport._server``, a protocol's ``transport._server``).
No walk of the heap, no frame's locals snapshot (the coroutines' referents
are read, as the collector sees them). uvloop's loop (a compiled class) is not
wrapped: its handlers keep "a loop callback" as their creation site.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import types
import weakref
from collections import deque
from typing import Any

from ..frame import Frame, is_asyncio, is_library, is_machinery

__all__ = ["patch_servers", "setup_site_of", "unpatch_servers", "with_setup_site"]

_MAX_FRAMES = 32
_MAX_STEPS = 3  # attribute steps from a coroutine's local to the Server
_MAX_OBJECTS = 200

_sites: weakref.WeakKeyDictionary[Any, list[Frame]] = weakref.WeakKeyDictionary()
_originals: dict[tuple[type, str], Any] = {}


def _caller_frames(skip: int) -> list[Frame]:
    out: list[Frame] = []
    f: types.FrameType | None = sys._getframe(skip + 1)
    while f is not None and len(out) < _MAX_FRAMES:
        code = f.f_code
        out.append(Frame(code.co_filename, f.f_lineno or 0, getattr(code, "co_qualname", code.co_name)))
        f = f.f_back
    return out


def _wrap(original: Any) -> Any:
    async def create_server(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Taken before the first await: the caller's frames are still on the
        # stack (start_server's, and the user's line above it).
        try:
            frames = _caller_frames(1)
        except Exception:
            frames = []
        server = await original(self, *args, **kwargs)
        if frames:
            try:
                _sites[server] = frames
            except Exception:  # a server type that takes no weak reference
                pass
        return server

    create_server.__wrapped__ = original  # type: ignore[attr-defined]
    create_server.__name__ = original.__name__
    create_server.__qualname__ = original.__qualname__
    create_server.__doc__ = original.__doc__
    return create_server


def patch_servers() -> None:
    """Wrap asyncio's create_server and create_unix_server (idempotent)."""
    targets: list[tuple[type, str]] = [(asyncio.base_events.BaseEventLoop, "create_server")]
    unix = getattr(asyncio, "unix_events", None)
    loop_class = getattr(unix, "_UnixSelectorEventLoop", None)
    if isinstance(loop_class, type):
        targets.append((loop_class, "create_unix_server"))
    for cls, name in targets:
        original = cls.__dict__.get(name)
        if original is None or (cls, name) in _originals:
            continue
        _originals[(cls, name)] = original
        setattr(cls, name, _wrap(original))


def unpatch_servers() -> None:
    for (cls, name), original in list(_originals.items()):
        setattr(cls, name, original)
    _originals.clear()


def _coroutines(task: Any) -> list[Any]:
    """The task's coroutine and the ones it awaits, outermost first."""
    out: list[Any] = []
    c = task.get_coro()
    while c is not None and len(out) < 32:
        out.append(c)
        c = getattr(c, "cr_await", None) or getattr(c, "gi_yieldfrom", None)
    return out


def setup_site_of(task: Any) -> list[Frame] | None:
    """Where the server whose connection started this pending task was set
    up (its caller's stack, innermost first), or None."""
    if not _sites:
        return None
    try:
        seen: set[int] = set()
        todo: deque[tuple[Any, int]] = deque()
        for c in _coroutines(task):
            # A suspended coroutine's referents are its frame's locals (its
            # frame object's are not: the coroutine owns that frame's data).
            todo.extend((o, 1) for o in gc.get_referents(c))
        while todo and len(seen) < _MAX_OBJECTS:
            obj, depth = todo.popleft()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if depth == 1 and isinstance(obj, types.FrameType):
                # 3.10: a coroutine refers to a frame object, which holds the locals.
                todo.extend((o, 1) for o in gc.get_referents(obj))
                continue
            if isinstance(obj, asyncio.AbstractServer):
                frames = _sites.get(obj)
                if frames is not None:
                    return list(frames)
                continue
            attrs = getattr(obj, "__dict__", None)
            if depth >= _MAX_STEPS or not isinstance(attrs, dict) or isinstance(obj, (type, types.ModuleType)):
                continue
            todo.extend((v, depth + 1) for v in list(attrs.values()))
    except Exception:  # a report never fails for this
        return None
    return None


def _callback_dispatch(frames: list[Frame]) -> int | None:
    """Index of the event loop's callback dispatch (asyncio's Handle._run) in
    a creation stack, when no frame of the user's code comes before it: the
    task was created by a loop callback; what lies beyond ran the loop."""
    for i, f in enumerate(frames):
        if is_asyncio(f.filename) and f.filename.endswith("events.py") and f.function.rsplit(".", 1)[-1] == "_run":
            return i
        if not is_machinery(f.filename) and not is_library(f.filename):
            return None
    return None


def with_setup_site(frames: list[Frame], task: Any) -> list[Frame]:
    """A pending task's creation stack; for a task a loop callback created, a
    server's connection handler, the callback's frames go on with the stack
    of the line that set the server up (instead of the loop's own), when it
    is known."""
    if not _sites or not frames:
        return frames
    cut = _callback_dispatch(frames)
    if cut is None:
        return frames
    setup = setup_site_of(task)
    return frames[: cut + 1] + setup if setup else frames
