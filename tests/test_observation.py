"""Observing never changes the observed: listing, explaining or dumping the
tasks of a process leaves none of them referenced afterwards, without a
garbage collection. A finished task kept alive by a reference cycle through
taskleak's own objects would count as "done, still referenced" in the
monitor, so opening the dashboard would raise a done_retained alert."""

from __future__ import annotations

import asyncio
import gc
import io
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
        LISTINGS[name](w)   # the finished task is still held (as a request's task is while it answers)
        del done            # ... and then let go
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
