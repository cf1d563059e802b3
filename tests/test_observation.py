"""Observing never changes the observed: listing, explaining or dumping the
tasks of a process leaves none of them referenced afterwards, without a
garbage collection. A finished task kept alive by a reference cycle through
taskleak's own objects would count as "done, still referenced" in the
monitor, so opening the dashboard would raise a done_retained alert."""

from __future__ import annotations

import asyncio
import gc
import io
import threading
import weakref

import pytest

import taskleak
from taskleak.live import task_groups
from taskleak.report.dump import dump_to_dict, format_dump

LISTINGS = {
    "snapshot().format()": lambda w: taskleak.snapshot().format(),
    "snapshot().to_dict()": lambda w: taskleak.snapshot().to_dict(),
    "TaskInfo fields": lambda w: [(t.orphaned, t.waiting_on, t.parent, t.created_at) for t in taskleak.snapshot()],
    "groups()": lambda w: taskleak.snapshot().groups(),
    "/api/tasks": lambda w: task_groups.tasks_payload(task_groups.take_snapshot()),
    "/api/snapshot": lambda w: task_groups.snapshot_payload(task_groups.take_snapshot()),
    "/tasks.txt": lambda w: task_groups.tasks_text(task_groups.take_snapshot()),
    "dump text": lambda w: format_dump(),
    "dump JSON": lambda w: dump_to_dict(),
    "task_graph().format()": lambda w: taskleak.task_graph().format(),
    "why()": lambda w: taskleak.why(w, file=io.StringIO()),
}


def _answer(listing, task, loop_waits: threading.Event) -> None:
    loop_waits.wait(10)
    listing(task)  # and drop what it made, as an endpoint does once it has answered


async def _finished() -> None:
    await asyncio.sleep(0)


@pytest.mark.parametrize("name", list(LISTINGS))
def test_a_listing_leaves_no_finished_task_referenced(tracked, name):
    async def main():
        blocker = asyncio.get_running_loop().create_future()

        async def waiting():
            await blocker

        w = asyncio.ensure_future(waiting())
        done = asyncio.ensure_future(_finished())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert done.done()
        ref = weakref.ref(done)
        # Asked from another thread while the loop waits, as the live
        # endpoint and the agent ask; the finished task is still held (as a
        # request's task is while it answers), and then let go. (Asked from
        # a frame that is running and holds the task in a local, CPython
        # 3.10-3.12 keep that frame's f_locals snapshot, which the holder
        # search has to read, until the frame reads its locals again.)
        # The listing runs once main() is suspended: on CPython 3.10-3.12 a
        # frame that is *running* while the holder search reads its locals
        # keeps that f_locals snapshot (see docs/heap.md), so asking while
        # main() itself runs would test CPython, not taskleak.
        loop_waits = threading.Event()
        loop = asyncio.get_running_loop()
        loop.call_soon(loop_waits.set)
        await loop.run_in_executor(None, _answer, LISTINGS[name], w, loop_waits)
        del done
        alive = ref() is not None
        w.cancel()
        return alive

    gc.collect()
    gc.disable()
    try:
        alive = asyncio.run(main())
    finally:
        gc.enable()
    assert not alive, f"{name} left a finished task referenced until the next garbage collection"


def test_naming_a_suspended_coroutines_local_leaves_the_local_alone(tracked):
    """who_holds() names the local of a suspended coroutine that holds an
    object, and the coroutine still has that local when it resumes (on 3.13+
    f_locals is a live view: clearing it would delete the local)."""

    class Payload:
        pass

    async def main():
        fut = asyncio.get_running_loop().create_future()
        seen = {}

        async def keeper():
            kept = Payload()
            seen["obj"] = weakref.ref(kept)
            await fut
            return type(kept).__name__

        t = asyncio.ensure_future(keeper())
        await asyncio.sleep(0)
        paths = [str(p) for p in taskleak.who_holds(seen["obj"]())]
        fut.set_result(None)
        return paths, await t

    paths, resumed_with = asyncio.run(main())
    assert any("local 'kept'" in p for p in paths), paths
    assert resumed_with == "Payload"
