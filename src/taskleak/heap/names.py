"""How heap reports name types and code objects."""

from __future__ import annotations

import types

from ..tracking.qualname import qualname_of

__all__ = ["code_name", "module_of_type", "qualified_type_name"]


def code_name(code: types.CodeType) -> str:
    q = getattr(code, "co_qualname", None)
    if q is None:
        q = qualname_of(code)
    return q


def module_of_type(t: type) -> str:
    # Some metatypes (Cython's, e.g. uvloop's) expose __module__ as a
    # descriptor on the type itself, not a string.
    try:
        mod = getattr(t, "__module__", None)
    except Exception:
        return ""
    return mod if isinstance(mod, str) else ""


def qualified_type_name(t: type) -> str:
    mod = module_of_type(t)
    q = getattr(t, "__qualname__", None) or getattr(t, "__name__", "?")
    if not isinstance(q, str):
        q = "?"
    return q if mod in ("", "builtins") else f"{mod}.{q}"
