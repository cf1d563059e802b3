"""Records go away with their tasks; the stack table is capped and counts drops."""

import asyncio
import gc

import taskleak
from taskleak import _core


async def tiny():
    pass


def _make_tasks(n, batch=10_000):
    async def main():
        for _ in range(n // batch):
            ts = [asyncio.create_task(tiny()) for _ in range(batch)]
            await asyncio.gather(*ts)
            del ts

    asyncio.run(main())


def test_million_tasks_return_to_baseline(tracked):
    gc.collect()
    base = taskleak.status()
    _make_tasks(1_000_000)
    gc.collect()
    after = taskleak.status()
    assert after["tracked_total"] - base["tracked_total"] >= 1_000_000
    assert after["live_records"] == base["live_records"]
    assert after["stacks"] == base["stacks"]
    assert after["buried_records"] == 0
    # storage shrinks back too (not just the counts)
    assert after["table_bytes"] <= max(base["table_bytes"], 64 * 1024)
    assert after["stack_bytes"] <= max(base["stack_bytes"], 64 * 1024)


def test_stack_table_cap_and_drop_counter(tracked):
    gc.collect()
    base = taskleak.status()
    _core.set_stack_limit(base["stacks"] + 2)
    try:

        async def site_a():
            return asyncio.create_task(asyncio.sleep(10))

        async def site_b():
            return asyncio.create_task(asyncio.sleep(10))

        async def site_c():
            return asyncio.create_task(asyncio.sleep(10))

        async def main():
            ts = [await site_a(), await site_b(), await site_c()]
            await asyncio.sleep(0)
            infos = [_core.creation_info(t) for t in ts]
            snap = {id(i.task): i for i in taskleak.snapshot()}
            for t in ts:
                t.cancel()
            return infos, [snap[id(t)].created_at for t in ts]

        infos, created = asyncio.run(main())
        # main() itself may take one slot; at least the last site is dropped
        assert infos[-1][5] is True and infos[-1][4] is None
        assert created[-1] is None
        assert taskleak.status()["stack_drops"] > base["stack_drops"]
    finally:
        _core.set_stack_limit(base["stack_limit"])


def test_records_survive_until_gc_finalizer_runs(tracked):
    """The collector clears weakrefs before finalizers; the creation site must
    still be known when 'Task was destroyed but it is pending!' is reported."""
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, context: None)

    async def stuck():
        await asyncio.Event().wait()

    async def main():
        for i in range(50):
            asyncio.create_task(stuck(), name=f"gc-{i}")
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    loop.close()
    del loop
    gc.collect()
    ev = [e for e in taskleak.loss_events() if e.kind == "destroyed-pending" and e.task_name.startswith("gc-")]
    assert len(ev) == 50
    assert all(e.created_at is not None for e in ev)
    assert taskleak.status()["buried_records"] == 0
