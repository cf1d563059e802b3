"""Who holds an object: :func:`who_holds` and :class:`HeapIndex`.

Referrer paths from long-lived roots (module globals, classes, event loops,
running frames; see ``heap.roots``) to an object, ranked so that the paths
explaining the retention come first. :func:`who_holds` searches forward from
the roots in C++ (``_core.forward_search``) and stops at the first level that
reaches the object; :class:`HeapIndex` builds a reverse reference index in
one pass over the heap the cyclic garbage collector tracks, for many
queries. No collection runs. The paths are put in words by ``heap.paths``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import taskleak._core as _core

from .paths import HolderPath, path_from_chain
from .roots import LOOP_MACHINERY, Roots

__all__ = ["DEFAULT_MAX_OBJECTS", "HeapIndex", "HolderPath", "paths_to", "who_holds"]

#: Above this many GC-tracked objects HeapIndex() refuses to build (MemoryError)
#: unless given a larger ``max_objects``: the index costs ~30-40 bytes per object.
DEFAULT_MAX_OBJECTS = 50_000_000


class HeapIndex:
    """A reverse reference index of the GC-tracked heap, for several
    :meth:`who_holds` queries.

    Cost: building walks the heap once and asks every tracked object for its
    references (``tp_traverse``): ~40-100 ms and ~30-40 bytes per object for
    a heap of a million objects (see :attr:`bytes`). A query then costs
    roughly the size of the part of the graph it searches, usually well
    under a millisecond. Building never runs the garbage collector. For a
    single query, :func:`who_holds` is faster: it searches forward from the
    roots without building an index.

    Staleness: the index is a snapshot of object *addresses*; it holds no
    reference to any heap object. Every path a query reports is re-checked
    against the live heap (each holder must still refer to the next object),
    so a path is never invented, but references created after the build are
    not seen, and an object created after the build is found through one
    extra heap pass. :attr:`stale` tells whether the last query met index
    entries that no longer hold; build a new index to see the heap as it is
    now. Refuses (``MemoryError``) heaps above ``max_objects`` tracked objects.
    """

    def __init__(self, *, max_objects: int = DEFAULT_MAX_OBJECTS) -> None:
        if isinstance(max_objects, bool) or not isinstance(max_objects, int):
            raise TypeError(f"max_objects must be an int, not {type(max_objects).__name__}")
        if max_objects <= 0:
            raise ValueError(f"max_objects must be positive, got {max_objects}")
        self._ix = _core.build_heap_index(max_objects)
        #: True if the last query found index entries that no longer hold.
        self.stale = False

    @property
    def objects(self) -> int:
        """GC-tracked objects indexed."""
        return int(self._ix.objects)

    @property
    def edges(self) -> int:
        """References between indexed objects."""
        return int(self._ix.edges)

    @property
    def bytes(self) -> int:
        """Memory the index uses, in bytes (tables, CSR arrays, query scratch)."""
        return int(self._ix.bytes)

    @property
    def build_seconds(self) -> float:
        return float(self._ix.build_seconds)

    def who_holds(self, obj: Any, max_depth: int = 10, max_paths: int = 3) -> list[HolderPath]:
        """Up to ``max_paths`` referrer paths from a root to ``obj``, each at
        most ``max_depth`` references long, ranked as :func:`who_holds` ranks
        them."""
        _check_target(obj, "HeapIndex.who_holds")
        _check_limits(max_depth, max_paths)
        r = Roots.collect(classes=False)  # the index knows its classes
        try:
            roots = r.long_lived + r.frames
            labels = r.long_lived_labels + r.frame_labels
            # Ask for more than wanted: ranking may push the shortest (often a
            # caller's frame) behind paths from long-lived roots.
            want = max_paths * 4
            found, self.stale = self._ix.who_holds(obj, roots, r.stops, max_depth, want)
            if self.stale or not found:
                # The indexed object at this address may be gone and the address
                # reused by `obj` (its old referrers then lead nowhere, or
                # nowhere true): also look up its referrers live.
                more, _ = self._ix.who_holds(obj, roots, r.stops, max_depth, want, True)
                found = found + more
            own = set(r.own_types)
            paths: list[HolderPath] = []
            seen = set()
            for root, chain in found:
                if any(type(o) in own for o in chain[:-1]):
                    continue
                p = path_from_chain(root, chain, labels)
                if str(p) not in seen:
                    seen.add(str(p))
                    paths.append(p)
            del roots, found
        finally:
            r.release()
        return _rank(paths)[:max_paths]

    def __repr__(self) -> str:
        return f"<HeapIndex objects={self.objects} edges={self.edges} bytes={self.bytes}>"


def who_holds(obj: Any, max_depth: int = 10, max_paths: int = 3) -> list[HolderPath]:
    """Who keeps ``obj`` alive: up to ``max_paths`` chains of strong
    references (each at most ``max_depth`` long) from a root to ``obj``,
    the ones that explain the retention first.

    Ranking: paths from long-lived roots come first - module globals
    (``root_kind == "module"``), class attributes (``"class"``), state hung
    on an event loop (``"loop"``) - shortest first within each kind. Local
    variables of frames running right now, the caller's own included
    (``"frame"``), come after them, and the loop's own machinery (its ready
    queue, timers and selector) last. taskleak's own objects (a snapshot, a
    ``TaskInfo``...) are never part of a path, and its frames are never
    roots. If nothing reachable from a root holds ``obj`` but something
    tracked does, the chain starts at the topmost holder (``"unrooted"``:
    held from C code, or garbage in a reference cycle). An empty list means
    nothing the collector tracks refers to ``obj``.

    Cost: a breadth-first search forward from the roots that stops at the
    first level reaching ``obj`` (no index, no garbage collection; a few
    ms for an object a few references from a module global, in a heap of a
    million objects). Only when no root reaches ``obj`` is a
    :class:`HeapIndex` built. For many queries, build one ``HeapIndex()``.

    Raises ``TypeError`` for ``None``, ``True``, ``False``, ``...`` and
    ``NotImplemented`` (shared singletons everything refers to) and for
    non-int limits, ``ValueError`` for limits below 1.
    """
    _check_target(obj, "who_holds")
    _check_limits(max_depth, max_paths)
    return paths_to(obj, max_depth=max_depth, max_paths=max_paths)


def paths_to(obj: Any, *, exclude: Sequence[Any] = (), max_depth: int = 10, max_paths: int = 3) -> list[HolderPath]:
    """The paths :func:`who_holds` finds, without its argument checks, never
    passing through the objects in ``exclude`` (why(): a Future's holders
    other than the task awaiting it)."""
    r = Roots.collect()
    try:
        paths = _rooted_paths(obj, r, exclude, max_depth, max_paths)
    finally:
        r.release()
    if not paths:
        # Nothing rooted: the index finds where the holders' chains end.
        return HeapIndex().who_holds(obj, max_depth=max_depth, max_paths=max_paths)
    return _rank(paths)[:max_paths]


def _rooted_paths(obj: Any, r: Roots, exclude: Sequence[Any], max_depth: int, max_paths: int) -> list[HolderPath]:
    r.stops.extend(exclude)
    paths: list[HolderPath] = []
    # Phase by phase, in the order of the ranking, until enough are found:
    # a breadth-first search ends at the first level that reaches `obj`,
    # so a caller's local variable (one reference away) would otherwise
    # hide the module global three references away.
    phases = (
        (r.long_lived, r.long_lived_labels, r.stops + r.machinery),
        # The long-lived roots are dead ends here: what they hold was searched.
        (r.frames, r.frame_labels, r.stops + r.machinery + r.long_lived),
        # The loops' machinery last; modules and classes are dead ends (a
        # callback's globals would otherwise lead back into sys.modules).
        (r.loops, r.loop_labels, r.stops + r.long_lived[: len(r.long_lived) - len(r.loops)]),
    )
    seen = set()
    for roots, labels, stops in phases:
        if len(paths) >= max_paths or not roots:
            continue
        found, _visited, _exhausted = _core.forward_search(obj, roots, stops, r.own_types, max_depth, max_paths * 2)
        for root, chain in found:
            p = path_from_chain(root, chain, labels)
            if str(p) not in seen:
                seen.add(str(p))
                paths.append(p)
        del found
    return paths


_KIND_RANK = {"module": 0, "class": 1, "loop": 2, "unrooted": 3, "frame": 4}


def _is_machinery(p: HolderPath) -> bool:
    return p.root_kind == "loop" and bool(p.steps) and p.steps[0].lstrip(".").split("[")[0] in LOOP_MACHINERY


def _rank(paths: list[HolderPath]) -> list[HolderPath]:
    """Long-lived roots first (module, class, loop state, unrooted), then the
    running frames, then the loop's machinery; shortest first within each."""

    def key(p: HolderPath) -> tuple[int, int]:
        rank = 5 if _is_machinery(p) else _KIND_RANK.get(p.root_kind, 3)
        return (rank, len(p.steps))

    return sorted(paths, key=key)


_SINGLETONS = (None, True, False, Ellipsis, NotImplemented)


def _check_target(obj: Any, fn: str) -> None:
    if any(obj is s for s in _SINGLETONS):
        raise TypeError(
            f"{fn}() needs the object whose holders you want, not {obj!r}: {obj!r} is a "
            "shared singleton that nearly everything refers to"
        )


def _check_limits(max_depth: Any, max_paths: Any) -> None:
    for name, v in (("max_depth", max_depth), ("max_paths", max_paths)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, not {type(v).__name__}")
        if v < 1:
            raise ValueError(f"{name} must be at least 1, got {v}")
