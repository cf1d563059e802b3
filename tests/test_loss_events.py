"""Loss events: destroyed-pending, never-retrieved, pending-at-shutdown."""

import asyncio
import gc
import sys

import taskleak


def kinds(kind):
    return [e for e in taskleak.loss_events() if e.kind == kind]


async def forever():
    await asyncio.Event().wait()


async def boom():
    raise ValueError("secret-ish detail")


def test_destroyed_pending_is_recorded_with_creation_site(tracked):
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, ctx: None)  # user handler: silent

    async def main():
        line = main.__code__.co_firstlineno + 2
        asyncio.create_task(forever(), name="doomed")
        await asyncio.sleep(0)
        return line

    line = loop.run_until_complete(main())
    loop.close()  # the task is still pending; nothing references it but cycles
    del loop
    gc.collect()
    ev = [e for e in kinds("destroyed-pending") if e.task_name == "doomed"]
    assert len(ev) == 1
    e = ev[0]
    assert e.coro.endswith("forever")
    assert e.created_at is not None
    assert any(f.lineno == line and f.function.endswith("main") for f in e.created_at)
    assert [f.function.rsplit(".", 1)[-1] for f in e.stack] == ["forever", "wait"]
    assert e.waiting_on == "Event.wait()"


def test_never_retrieved_is_recorded_with_exception(tracked, caplog):
    async def main():
        asyncio.create_task(boom(), name="fire-and-forget")
        await asyncio.sleep(0.01)

    asyncio.run(main())
    gc.collect()
    ev = [e for e in kinds("never-retrieved") if e.task_name == "fire-and-forget"]
    assert len(ev) == 1
    raise_line = next(n for n, text in enumerate(open(__file__), 1) if 'secret-ish detail")' in text)
    # The exception, and where it was raised.
    assert ev[0].exception.startswith("ValueError: secret-ish detail (raised at ")
    assert ev[0].exception.endswith(f"test_loss_events.py:{raise_line} in boom)")
    assert ev[0].created_at is not None
    # the previous handler (asyncio's default) still ran
    assert "Task exception was never retrieved" in caplog.text


def test_pending_at_shutdown_asyncio_run(tracked):
    async def main():
        for i in range(3):
            asyncio.create_task(forever(), name=f"left-{i}")
        await asyncio.sleep(0)

    asyncio.run(main())
    ev = [e for e in kinds("pending-at-shutdown") if e.task_name.startswith("left-")]
    assert len(ev) == 3
    assert all(e.waiting_on == "Event.wait()" for e in ev)
    assert all(e.created_at is not None for e in ev)


def test_a_task_only_a_cycle_keeps_is_cancelled_at_shutdown_not_collected(tracked, monkeypatch):
    # Recording allocates, so the collector may run between the recording
    # and the runner's own all_tasks() (a weak set): a pending task that only
    # a cycle keeps was then "destroyed while pending" instead of cancelled
    # (seen on 3.10 in a pytest-asyncio suite). A collection forced there:
    from taskleak.tracking import loss_events

    real = loss_events._record

    def record_then_collect(event):
        real(event)
        gc.collect()

    monkeypatch.setattr(loss_events, "_record", record_then_collect)
    ends = []

    async def waits_for_ever():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            ends.append("cancelled")
            raise

    async def main():
        asyncio.create_task(waits_for_ever(), name="cycle-only")  # no reference kept
        await asyncio.sleep(0)

    asyncio.run(main())
    assert ends == ["cancelled"]
    assert [e.task_name for e in kinds("pending-at-shutdown")] == ["cycle-only"]
    assert not [e for e in kinds("destroyed-pending") if e.task_name == "cycle-only"]


def test_pending_at_shutdown_runner(tracked):
    if sys.version_info < (3, 11):
        return  # asyncio.Runner is 3.11+; asyncio.run is covered above
    with asyncio.Runner() as r:

        async def main():
            asyncio.create_task(forever(), name="runner-left")
            await asyncio.sleep(0)

        r.run(main())
    assert [e.task_name for e in kinds("pending-at-shutdown")] == ["runner-left"]


def test_snapshot_shows_loss_events_and_json(tracked):
    async def main():
        asyncio.create_task(forever(), name="left")
        await asyncio.sleep(0)

    asyncio.run(main())
    snap = taskleak.snapshot()
    text = snap.format()
    assert "pending when their event loop shut down" in text
    assert "left" in text
    d = snap.to_dict()
    assert any(e["kind"] == "pending-at-shutdown" and e["task_name"] == "left" for e in d["loss_events"])


def test_user_exception_handler_is_still_called(tracked):
    seen = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: seen.append(ctx["message"]))
        asyncio.create_task(boom(), name="handled")
        await asyncio.sleep(0.01)

    asyncio.run(main())
    gc.collect()
    assert any("never retrieved" in m for m in seen)


def test_event_buffer_is_bounded(tracked, monkeypatch):
    from taskleak.tracking import loss_events as loss_recorder

    monkeypatch.setattr(loss_recorder, "_events", __import__("collections").deque(maxlen=5))

    async def main():
        for i in range(8):
            asyncio.create_task(forever(), name=f"b{i}")
        await asyncio.sleep(0)

    asyncio.run(main())
    assert len(taskleak.loss_events()) == 5
    assert loss_recorder.dropped_events() >= 3


def test_loss_event_reports_list_names_in_natural_order():
    from taskleak.model.text import format_loss_events

    taskleak.install()
    taskleak.clear_loss_events()

    async def main():
        for i in (10, 2, 1):
            asyncio.create_task(asyncio.sleep(60), name=f"w-{i}")
        await asyncio.sleep(0)

    asyncio.run(main())
    text = format_loss_events([e for e in taskleak.loss_events() if e.task_name.startswith("w-")])
    assert "w-1, w-2, w-10" in text
