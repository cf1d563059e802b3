"""check() scopes: the tag every new task carries, saying which scope it is
charged to.

A scope is entered by setting a ContextVar; tasks copy their creator's context,
so tasks created by tasks created in the scope are charged to it too, wherever
and whenever they run. Where a runner executes code in a context of its own
(pytest-asyncio, anyio), the core falls back to the creating task's scope, then
to the *ambient* scope the pytest plugin sets around each test. A task
created from a loop callback (an accepted connection, ``call_soon``) belongs
to whoever set up the callback: the scope in the callback's context, else no
scope - never the ambient one (creation_hook.cpp has the whole rule).

The variable has no default: unset means "ask the creating task, then the
ambient scope", while an explicit 0 means "no scope" (what the plugin sets
around wider fixtures, whose tasks are never a test's).

Ids are 16-bit (they live in the 40-byte creation record) and are reused
round-robin, skipping ids still in use.
"""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field

import taskleak._core as _core

__all__ = ["Scope", "open_scope", "close_scope", "scope_by_id", "SCOPE_VAR"]

SCOPE_VAR: contextvars.ContextVar[int] = contextvars.ContextVar("taskleak_scope")
_core.set_scope_var(SCOPE_VAR)

_MAX_ID = 0xFFFF
_lock = threading.Lock()
_next_id = 1
_scopes: dict[int, Scope] = {}
_RECENT = 4096  # ended scopes remembered for late events


@dataclass
class Scope:
    id: int
    label: str
    open: bool = True
    meta: dict[str, object] = field(default_factory=dict)


def open_scope(label: str) -> Scope:
    global _next_id
    with _lock:
        for _ in range(_MAX_ID):
            sid = _next_id
            _next_id = 1 if _next_id >= _MAX_ID else _next_id + 1
            old = _scopes.get(sid)
            if old is None or not old.open:
                scope = _scopes[sid] = Scope(sid, label)
                _forget_old()
                return scope
    raise RuntimeError("taskleak: more than 65535 check() scopes open at once")


def _forget_old() -> None:
    if len(_scopes) <= 2 * _RECENT:
        return
    closed = [sid for sid, s in _scopes.items() if not s.open]
    for sid in closed[:-_RECENT] if len(closed) > _RECENT else ():
        del _scopes[sid]


def close_scope(scope: Scope) -> None:
    scope.open = False


def scope_by_id(sid: int) -> Scope | None:
    return _scopes.get(sid)
