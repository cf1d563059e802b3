"""The chaining task factory: the creation hook where the registry hook cannot
be used (its probe failed, or the interpreter keeps tasks elsewhere), and the
way eager tasks that finish during creation get a record on 3.12+.

It always calls the factory the loop already had, so user factories and
``asyncio.eager_task_factory`` keep working.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import taskleak._core as _core

__all__ = ["chain_factory", "is_taskleak_factory"]

TaskFactory = Callable[..., "asyncio.Future[Any]"]


def is_taskleak_factory(factory: TaskFactory | None) -> bool:
    return bool(getattr(factory, "_taskleak_factory", False))


def chain_factory(previous: TaskFactory | None) -> TaskFactory:
    """A factory that builds tasks with `previous` (or asyncio.Task) and records
    them (a C++ vectorcall object: it runs for every task)."""
    factory: TaskFactory = _core.ChainingFactory(previous, asyncio.Task)
    return factory


def adopt(loop: asyncio.AbstractEventLoop, *, always: bool) -> None:
    """Put the chaining factory on `loop`: always (factory mode), or only over a
    factory the user installed (registry mode: eager tasks that complete during
    creation never reach the registry)."""
    current = loop.get_task_factory()
    if is_taskleak_factory(current):
        return
    if current is None and not always:
        return
    loop.set_task_factory(chain_factory(current))


def unadopt(loop: asyncio.AbstractEventLoop) -> None:
    current = loop.get_task_factory()
    if is_taskleak_factory(current):
        loop.set_task_factory(getattr(current, "__wrapped__", None))


# ---- keeping the chain when the user sets a factory later --------------------
#
# asyncio loops (BaseEventLoop) get a set_task_factory that re-chains, so a
# factory set after adoption (e.g. asyncio.eager_task_factory inside main())
# is still followed by tracking. Loops of other classes (uvloop) are adopted
# when first seen, which covers factories set before their first task.

_original_set_task_factory: Any = None
_always = False


def _set_task_factory(self: asyncio.AbstractEventLoop, factory: TaskFactory | None) -> None:
    if not is_taskleak_factory(factory) and (factory is not None or _always):
        factory = chain_factory(factory)
    _original_set_task_factory(self, factory)


_original_init: Any = None
_on_new_loop: Callable[[asyncio.AbstractEventLoop], None] | None = None


def _init(self: asyncio.AbstractEventLoop, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    if _always and _on_new_loop is not None:  # factory mode: a loop may create tasks before it runs
        _on_new_loop(self)


_original_create_task: Any = None


def _patch_create_task(be: Any) -> None:
    """Factory mode: BaseEventLoop.create_task becomes a C method that calls
    the chaining factory directly when that is all the Python method would do
    (open loop, BaseEventLoop's own _check_closed, our factory); anything else
    goes to the original method. Saves a Python frame and a **kwargs call per
    task, which is most of what the factory costs on 3.14."""
    global _original_create_task
    original = be.BaseEventLoop.__dict__.get("create_task")
    check_closed = be.BaseEventLoop.__dict__.get("_check_closed")
    if _original_create_task is not None or original is None or check_closed is None:
        return
    _original_create_task = original
    be.BaseEventLoop.create_task = _core.FastCreateTask(original, check_closed)


def _unpatch_create_task(be: Any) -> None:
    global _original_create_task
    if _original_create_task is not None:
        if getattr(be.BaseEventLoop.__dict__.get("create_task"), "_taskleak_create_task", False):
            be.BaseEventLoop.create_task = _original_create_task
        _original_create_task = None


def patch_loop_class(always: bool, on_new_loop: Callable[[asyncio.AbstractEventLoop], None]) -> None:
    global _original_set_task_factory, _original_init, _always, _on_new_loop
    _always = always
    _on_new_loop = on_new_loop
    import asyncio.base_events as be

    if always:
        _patch_create_task(be)

    if _original_set_task_factory is None:
        _original_set_task_factory = be.BaseEventLoop.set_task_factory
        be.BaseEventLoop.set_task_factory = _set_task_factory  # type: ignore[method-assign]
    if _original_init is None:
        _original_init = be.BaseEventLoop.__init__
        be.BaseEventLoop.__init__ = _init  # type: ignore[method-assign,assignment]


# uvloop.Loop is no BaseEventLoop, and it marks itself running from C through
# the `asyncio._set_running_loop` it bound at import: on 3.14+ a uvloop loop
# made with uvloop.new_event_loop() (or an installed uvloop policy, as
# aiohttp's run_app uses) was never adopted, and none of its tasks were seen.
# Its class is a Python subclass of the C loop, so its __init__ can be wrapped
# like BaseEventLoop's. {class: its own __init__ before, or None}
_foreign_inits: dict[type, Any] = {}


def patch_foreign_loop_class(cls: type) -> None:
    """Adopt every later loop of `cls` (uvloop.Loop) at construction, as
    BaseEventLoop's are. Factory mode only; idempotent."""
    if not _always or cls in _foreign_inits or issubclass(cls, asyncio.BaseEventLoop):
        return
    own = cls.__dict__.get("__init__")
    inherited = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        inherited(self, *args, **kwargs)
        if _always and _on_new_loop is not None:
            _on_new_loop(self)  # never raises (installer._adopt_loop)

    __init__._taskleak_init = True  # type: ignore[attr-defined]
    try:
        cls.__init__ = __init__  # type: ignore[method-assign]
    except (TypeError, AttributeError):  # a C type: left to the running-loop hook
        return
    _foreign_inits[cls] = own


def _unpatch_foreign_loop_classes() -> None:
    for cls, own in list(_foreign_inits.items()):
        if getattr(cls.__dict__.get("__init__"), "_taskleak_init", False):
            if own is None:
                delattr(cls, "__init__")
            else:
                setattr(cls, "__init__", own)
    _foreign_inits.clear()


def unpatch_loop_class() -> None:
    global _original_set_task_factory, _original_init
    import asyncio.base_events as be

    _unpatch_foreign_loop_classes()
    if _original_set_task_factory is not None:
        be.BaseEventLoop.set_task_factory = _original_set_task_factory  # type: ignore[method-assign]
        _original_set_task_factory = None
    if _original_init is not None:
        be.BaseEventLoop.__init__ = _original_init  # type: ignore[method-assign]
        _original_init = None
    _unpatch_create_task(be)
