"""Heap analysis cost on a heap of ~1M objects: taskleak vs objgraph, side by side.

Workload: UNITS (default 330,000) groups of one instance of a plain class
(attributes inline on 3.11+), one list and one dict referring to each other,
kept in a module-level list: ~1M GC-tracked objects in all. One finished
asyncio task is held in a container: module global HOLDER['jobs'] -> list.

Timed, median over REPEATS (default 5) runs each, same process:

  census       taskleak.growth(limit=10)        vs objgraph.typestats()
  who_holds    first query: taskleak.who_holds(task) (a forward search from the
               roots, no index) vs objgraph.find_backref_chain(task,
               objgraph.is_proper_module)
  further      HeapIndex().who_holds(task) on an index built once (median of
               QUERIES queries) vs the same objgraph call

objgraph.find_backref_chain runs gc.collect() itself (part of what a user
pays); taskleak never collects. Targets: census >= 10x, first query >= 10x,
further queries >= 100x faster. Also printed: the index's size in bytes per
heap object, and the path each tool found.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
from typing import Any

import objgraph
from timing import ms, timed

import taskleak

HEAP: list[Any] = []
HOLDER: dict = {}


class Node:
    def __init__(self, i: int) -> None:
        self.i = i
        self.peers: list[Any] = []
        self.meta = {"peers": self.peers}  # refers to a tracked object: tracked itself


def build_heap(units: int) -> None:
    for i in range(units):
        n = Node(i)
        n.peers.append(n.meta)
        HEAP.append(n)


def finished_task() -> asyncio.Task[Any]:
    async def job() -> int:
        return 1

    async def main() -> asyncio.Task[Any]:
        t = asyncio.ensure_future(job())
        await t
        return t

    return asyncio.run(main())


def line(label: str, ours: list[float], theirs: list[float], target: float) -> None:
    ratio = statistics.median(theirs) / statistics.median(ours)
    verdict = "meets" if ratio >= target else "MISSES"
    print(f"  {label:<34} {ratio:8.1f}x   target >= {target:.0f}x: {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=330_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()

    build_heap(args.units)
    HOLDER["jobs"] = [finished_task()]
    gc.collect()
    n_objects = len(gc.get_objects())
    print(
        f"CPython {sys.version.split()[0]}, heap walk: {taskleak._core.HEAP_WALK}, "
        f"{n_objects:,} GC-tracked objects, median of {args.repeats} runs"
    )

    print("census")
    taskleak.growth(limit=10)  # first call names every type once
    ours_c = timed(lambda: taskleak.growth(limit=10), args.repeats)
    theirs_c = timed(objgraph.typestats, args.repeats)
    print(f"  taskleak.growth(limit=10)          {ms(ours_c)}")
    print(f"  objgraph.typestats()               {ms(theirs_c)}")

    # The task is only ever named through HOLDER, so that no frame of this
    # script holds it in a local variable (which would be a shorter path).
    print("who_holds: finished task in HOLDER['jobs'][0]")
    ours_first = timed(lambda: taskleak.who_holds(HOLDER["jobs"][0]), args.repeats)
    theirs = timed(lambda: objgraph.find_backref_chain(HOLDER["jobs"][0], objgraph.is_proper_module), args.repeats)
    ix = taskleak.HeapIndex()
    ix.who_holds(HOLDER["jobs"][0])  # the first query on an index sizes its scratch space
    ours_more = timed(lambda: ix.who_holds(HOLDER["jobs"][0]), args.queries)
    print(f"  taskleak.who_holds (first query)   {ms(ours_first)}")
    print(f"  HeapIndex() build                  {ix.build_seconds * 1e3:9.2f} ms (once, for the reused queries)")
    print(f"  HeapIndex.who_holds (reused)       {ms(ours_more)}  (median of {args.queries})")
    print(f"  objgraph.find_backref_chain        {ms(theirs)}")
    print(
        f"  index: {ix.objects:,} objects, {ix.edges:,} edges, {ix.bytes / 1e6:.1f} MB = "
        f"{ix.bytes / ix.objects:.1f} bytes per heap object"
    )
    for p in ix.who_holds(HOLDER["jobs"][0]):
        print(f"  taskleak path: {p}")
    chain = objgraph.find_backref_chain(HOLDER["jobs"][0], objgraph.is_proper_module)
    print(f"  objgraph chain: {' -> '.join(type(o).__name__ for o in chain)}")
    del chain

    print("ratios (objgraph / taskleak, medians)")
    line("census", ours_c, theirs_c, 10)
    line("who_holds, first query", ours_first, theirs, 10)
    line("who_holds, further queries", ours_more, theirs, 100)


if __name__ == "__main__":
    main()
