"""Qualified names for code objects on CPython 3.10, which has no co_qualname.

Reports and wait-target classification want ``Event.wait``, not ``wait``.
Where the code object belongs to a module-level function or a method of a
module-level class, its function is found through the module; anything else
(closures, lambdas) keeps its plain name.
"""

from __future__ import annotations

import functools
import sys
import types

import taskleak._core as _core

__all__ = ["enable_if_needed"]

_modules_by_file: dict[str, types.ModuleType] = {}


def _module_for(filename: str) -> types.ModuleType | None:
    mod = _modules_by_file.get(filename)
    if mod is None:
        for m in list(sys.modules.values()):
            f = getattr(m, "__file__", None)
            if f:
                _modules_by_file[f] = m
        mod = _modules_by_file.get(filename)
    return mod


@functools.lru_cache(maxsize=4096)
def qualname_of(code: types.CodeType) -> str:
    mod = _module_for(code.co_filename)
    if mod is not None:
        for obj in list(vars(mod).values()):
            if getattr(obj, "__code__", None) is code:
                return str(obj.__qualname__)
            if isinstance(obj, type):
                for v in vars(obj).values():
                    f = getattr(v, "__func__", v)
                    if getattr(f, "__code__", None) is code:
                        return str(f.__qualname__)
    return code.co_name


def enable_if_needed() -> None:
    if not hasattr(enable_if_needed.__code__, "co_qualname"):
        _core.set_qualname_resolver(qualname_of)
