"""check()'s holder search: taskleak's engine vs the Python walk it replaced, and objgraph.

Workload: UNITS (default 66,000) groups of one instance of a plain class, one
list and one dict referring to each other, kept in a module-level list:
~200,000 GC-tracked objects. One finished asyncio task is held from a module
global, HOLDER['jobs'][0], as check() finds it after a test.

Timed, median over REPEATS (default 7) runs each, same process:

  engine     taskleak.heap.holders.holders_of_finished([task], ...) - what check()
             and `taskleak run` call: a forward search from the roots in C++
             (_core.forward_search_many)
  old walk   the level-by-level gc.get_referrers() walk check() used before
             (a copy of it is kept below, in this file only, as the baseline)
  objgraph   objgraph.find_backref_chain(task, objgraph.is_proper_module), the
             public alternative (it runs gc.collect() itself)

A second case times MANY (default 5,000) finished tasks held in one module
list, all asked about at once (as `taskleak run` does at exit): engine vs old
walk, median of 3 runs.

Prints the path each one found and the ratios (baseline / taskleak). Never
fails on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import types
from collections.abc import Iterable
from typing import Any

import objgraph
from timing import ms, timed

import taskleak
from taskleak.heap.holders import holders_of_finished
from taskleak.heap.roots import loop_bookkeeping

HEAP: list[Any] = []
HOLDER: dict = {}
MANY: list[Any] = []


class Node:
    def __init__(self, i: int) -> None:
        self.i = i
        self.peers: list[Any] = []
        self.meta = {"peers": self.peers}


def build_heap(units: int) -> None:
    for i in range(units):
        n = Node(i)
        n.peers.append(n.meta)
        HEAP.append(n)


def finished_tasks(n: int) -> list[asyncio.Task[Any]]:
    async def job() -> int:
        return 1

    async def main() -> list[asyncio.Task[Any]]:
        ts = [asyncio.ensure_future(job()) for _ in range(n)]
        await asyncio.gather(*ts)
        return ts

    return asyncio.run(main())


def finished_task() -> asyncio.Task[Any]:
    async def job() -> int:
        return 1

    async def main() -> asyncio.Task[Any]:
        t = asyncio.ensure_future(job())
        await t
        return t

    return asyncio.run(main())


# ---- the baseline: check()'s holder search before it moved to C++ ----------
# (taskleak/heap/holders.py up to the fu-holders branch, verbatim but for the
# function's name and where taskleak's own directory is found)
def _running_frames() -> set[int]:
    ids: set[int] = set()
    for top in list(sys._current_frames().values()):
        f: types.FrameType | None = top
        while f is not None:
            ids.add(id(f))
            f = f.f_back
    return ids


def _edge(holder: Any, child: Any) -> str:
    """How `holder` refers to `child`, in words."""
    if getattr(holder, "__dict__", None) is child:
        return "."  # the instance's attribute dict: the next edge names the attribute
    if isinstance(holder, dict):
        for k, v in list(holder.items()):
            if v is child:
                return f"[{k!r}]"
        return "[<key>]"
    if isinstance(holder, (list, tuple)):
        for i, v in enumerate(holder):
            if v is child:
                return f"[{i}]"
    if isinstance(holder, (set, frozenset)):
        return " (member)"
    if isinstance(holder, types.CellType):
        return " (closure cell)"
    if isinstance(holder, types.FunctionType):
        return " (closure)"
    d = getattr(holder, "__dict__", None)
    if isinstance(d, dict):
        for k, v in d.items():
            if v is child:
                return f".{k}"
    return ""


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return f"class {obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, (dict, list, set, tuple)):
        return type(obj).__name__
    return f"{type(obj).__module__}.{type(obj).__qualname__} object"


def _module_of_dict(d: dict[str, Any]) -> str | None:
    name = d.get("__name__")
    if isinstance(name, str):
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "__dict__", None) is d:
            return name
    return None


def _loop_dicts(targets: list[Any]) -> dict[int, Any]:
    """id(loop.__dict__) -> loop, for the loops of the targets (asking for
    vars() makes the dict the referrer gc reports, on every version)."""
    out: dict[int, Any] = {}
    for t in targets:
        loop = getattr(t, "_loop", None)
        if isinstance(loop, asyncio.AbstractEventLoop):
            d = getattr(loop, "__dict__", None)
            if isinstance(d, dict):
                out[id(d)] = loop
    return out


def old_holder_paths(
    targets: list[Any], suspects: set[int], exclude: Iterable[int] = (), max_depth: int = 10, max_paths: int = 3
) -> dict[int, list[str]]:
    """For each target (by id) the holder paths found from long-lived roots;
    targets absent from the result are held only by running frames, the loop,
    or nothing visible. `suspects`: ids of tasks whose coroutines do not count
    as long-lived holders (tasks created in the scope under check)."""
    running = _running_frames()
    own: set[int] = set(exclude)
    # For each node reached: the frontier objects it holds (`kids`) and the
    # targets reachable below it (`reach`), so one container holding several
    # targets yields a path to each of them.
    reach: dict[int, set[int]] = {id(t): {id(t)} for t in targets}
    kids_of: dict[int, list[Any]] = {}
    found: dict[int, list[str]] = {}
    frontier: list[Any] = list(targets)
    seen: set[int] = {id(t) for t in targets}
    own.update({id(frontier), id(targets), id(seen), id(reach), id(kids_of)})
    loop_dicts = _loop_dicts(targets)
    for _ in range(max_depth):
        if not frontier:
            break
        own.add(id(frontier))
        referrers = gc.get_referrers(*frontier)
        own.add(id(referrers))
        frontier_ids = {id(x) for x in frontier}
        nxt: list[Any] = []
        for r in referrers:
            rid = id(r)
            if (
                rid in own
                or rid in seen
                or isinstance(r, types.FrameType)
                and (rid in running or r.f_code.co_filename.startswith(_OWN_DIR))
            ):
                continue
            if isinstance(r, asyncio.AbstractEventLoop):
                # 3.13+ keep instance attributes inline: the collector then
                # names the loop itself, not its __dict__, as the referrer.
                # Look at its attributes as the loop's dict.
                d = getattr(r, "__dict__", None)
                if not isinstance(d, dict) or id(d) in seen or id(d) in own:
                    continue
                loop_dicts[id(d)] = r
                r, rid = d, id(d)
            # A loop's dict is read by its items: with inline values its
            # tp_traverse may report nothing.
            held = list(r.values()) if rid in loop_dicts else gc.get_referents(r)
            kids = [c for c in held if id(c) in frontier_ids]
            if not kids:
                continue
            if rid in loop_dicts:
                # The loop's attributes: its bookkeeping is a dead end, the
                # rest is state hung on the loop by user code.
                names = loop_bookkeeping(loop_dicts[rid])
                kids = [c for c in kids if any(v is c and k not in names for k, v in list(r.items()))]
                if not kids:
                    continue
            seen.add(rid)
            kids_of[rid] = kids
            reach[rid] = set().union(*(reach[id(c)] for c in kids))
            root = "loop.__dict__" if rid in loop_dicts else _root_name(r, suspects)
            if root is None:
                nxt.append(r)
                continue
            if root == "":
                continue  # a dead end that is not a leak
            for tid in reach[rid]:
                paths = found.setdefault(tid, [])
                if len(paths) < max_paths:
                    paths.append(_render(root, r, tid, kids_of, reach))
        frontier = nxt
        del referrers
    return found


# taskleak's own frames (the package root, not just heap/) are never holders.
_OWN_DIR = os.path.dirname(os.path.abspath(taskleak.__file__))


def _root_name(r: Any, suspects: set[int]) -> str | None:
    """A description if `r` is a long-lived root, "" for a harmless dead end,
    None to keep searching above it."""
    if isinstance(r, dict):
        mod = _module_of_dict(r)
        if mod is not None:
            return f"module {mod}"
        return None
    if isinstance(r, type):
        return f"class {r.__module__}.{r.__qualname__}"
    if isinstance(r, types.ModuleType):
        return f"module {r.__name__}"
    if isinstance(r, types.FrameType):
        return None
    if isinstance(r, (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType)):
        # A coroutine on the active await chain is a running frame (3.12+
        # reports the coroutine, not its frame, as the referrer).
        running = getattr(r, "cr_running", None) or getattr(r, "gi_running", None) or getattr(r, "ag_running", None)
        return "" if running else None
    if isinstance(r, asyncio.Task):
        if id(r) in suspects or r.done():
            return ""
        return f"task {r.get_name()!r} ({getattr(r.get_coro(), '__qualname__', '?')}), still running"
    return None


def _render(root: str, r: Any, tid: int, kids_of: dict[int, list[Any]], reach: dict[int, set[int]]) -> str:
    parts = [root]
    node = r
    for _ in range(64):
        child = next((c for c in kids_of.get(id(node), ()) if tid in reach.get(id(c), ())), None)
        if child is None:
            break
        if isinstance(child, dict) and _module_of_dict(child) is None and isinstance(node, (type, types.ModuleType)):
            edge = ""
        else:
            edge = _edge(node, child)
        if edge == ".":
            parts.append(".")
        elif edge.startswith("[") and parts[-1] == ".":
            parts[-1] = f".{edge[2:-2]}" if edge[1] in "'\"" else edge
        else:
            parts.append(edge if edge else f" -> {_describe(child)}")
        if id(child) == tid:
            break
        node = child
    return "".join(parts)


# ---- timing -------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=66_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--many", type=int, default=5_000)
    args = ap.parse_args()

    build_heap(args.units)
    HOLDER["jobs"] = [finished_task()]
    gc.collect()
    n_objects = len(gc.get_objects())
    print(f"CPython {sys.version.split()[0]}, {n_objects:,} GC-tracked objects, median of {args.repeats} runs")

    # The task is only ever named through HOLDER, so that no frame of this
    # script holds it in a local variable.
    def ours() -> dict[int, list[str]]:
        t = HOLDER["jobs"][0]
        return holders_of_finished([t], {id(t)})

    def old() -> dict[int, list[str]]:
        t = HOLDER["jobs"][0]
        return old_holder_paths([t], {id(t)})

    def theirs() -> Any:
        return objgraph.find_backref_chain(HOLDER["jobs"][0], objgraph.is_proper_module)

    t_ours = timed(ours, args.repeats)
    t_old = timed(old, args.repeats)
    t_theirs = timed(theirs, args.repeats)
    print("holder search: one finished task in HOLDER['jobs'][0]")
    print(f"  taskleak (C++ forward search)      {ms(t_ours)}")
    print(f"  old Python gc.get_referrers walk   {ms(t_old)}")
    print(f"  objgraph.find_backref_chain        {ms(t_theirs)}")
    print(f"  taskleak paths: {list(ours().values())}")
    print(f"  old walk paths: {list(old().values())}")
    chain = theirs()
    print(f"  objgraph chain: {' -> '.join(type(o).__name__ for o in chain)}")
    del chain

    MANY.extend(finished_tasks(args.many))
    gc.collect()

    def ours_many() -> dict[int, list[str]]:
        return holders_of_finished(list(MANY), {id(t) for t in MANY})

    def old_many() -> dict[int, list[str]]:
        return old_holder_paths(list(MANY), {id(t) for t in MANY})

    t_ours_many = timed(ours_many, 3)
    t_old_many = timed(old_many, 3)
    print(f"holder search: {args.many:,} finished tasks in MANY[...], asked at once")
    print(f"  taskleak (C++ forward search)      {ms(t_ours_many)}")
    print(f"  old Python gc.get_referrers walk   {ms(t_old_many)}")
    found, before = ours_many(), old_many()
    print(f"  same paths: {found == before}, e.g. {found[id(MANY[-1])]}")
    del found, before

    print("ratios (baseline / taskleak, medians)")
    for label, xs, base in (
        ("old Python walk", t_old, t_ours),
        ("objgraph.find_backref_chain", t_theirs, t_ours),
        (f"old Python walk, {args.many:,} tasks", t_old_many, t_ours_many),
    ):
        print(f"  {label:<34} {statistics.median(xs) / statistics.median(base):8.1f}x")


if __name__ == "__main__":
    main()
