"""check() on patterns whose leak is in the structure, not the clock, and on
what the grace itself must never leave behind:

* an abandoned gather branch (its gather already raised) is reported however
  long the grace, naming the gather's line;
* an async generator never closed on a hand-made loop (asyncio's aclose()
  task for it destroyed pending) is reported apart, not as a task leak;
* user code stopping the loop during the grace ends the grace cleanly;
* every report closes with advice that fits the kinds it lists.
"""

import asyncio
import inspect
from collections import Counter

import pytest

import taskleak
from taskleak import TaskLeakError

# ---- helpers -------------------------------------------------------------------


def kinds_of(leaks) -> dict:
    return dict(Counter(lk.kind for lk in leaks))


def line_of(fn, needle) -> int:
    lines, first = inspect.getsourcelines(fn)
    for i, line in enumerate(lines):
        if needle in line:
            return first + i
    raise AssertionError(needle)


async def raise_stop():
    raise StopAsyncIteration


async def slow(delay):
    await asyncio.sleep(delay)
    return delay


# ---- abandoned gather branches ---------------------------------------------------


async def zip_like(delay):
    # aiostream's zip in miniature: the fast source ends, gather re-raises,
    # the slow branch is left running.
    try:
        await asyncio.gather(raise_stop(), slow(delay))  # GATHER
    except StopAsyncIteration:
        pass


def test_abandoned_branch_is_reported_although_the_grace_lets_it_finish():
    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=1.0):  # far longer than the branch needs
                await zip_like(0.01)
        return ei.value

    err = asyncio.run(main())
    assert kinds_of(err.leaks) == {"abandoned": 1}
    lk = err.leaks[0]
    assert lk.task.coro == "slow"
    assert f"test_check_structure.py:{line_of(zip_like, '# GATHER')} in zip_like" in lk.note
    assert "finished during taskleak's grace" in lk.note
    msg = str(err)
    assert "[abandoned] 1 task abandoned" in msg
    assert "Fix: when gather() raises, cancel and await the branches still running" in msg


def test_abandoned_branch_still_running_after_the_grace_stays_pending_with_the_gather_named():
    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0):
                await zip_like(10)
        for t in asyncio.all_tasks() - {asyncio.current_task()}:
            t.cancel()
        return ei.value

    err = asyncio.run(main())
    assert kinds_of(err.leaks) == {"pending": 1}
    assert "abandoned: its only consumer, asyncio.gather() at" in err.leaks[0].note


def test_abandoned_counts_with_pending_and_can_be_left_out():
    async def main(kinds):
        async with taskleak.check(grace=1.0, kinds=kinds) as c:
            await zip_like(0.01)
        return c

    assert asyncio.run(main(["done-retained"])).leaks == []
    with pytest.raises(TaskLeakError):
        asyncio.run(main(["abandoned"]))
    with pytest.raises(ValueError, match="abandoned"):
        taskleak.check(kinds=["abandonned"])


def test_clean_gather_cancelled_from_outside_its_branches_finish_from_the_cancellation():
    # The outer future is done (cancelled) while the branches are still being
    # cancelled: they finish within a loop iteration; not abandoned.
    async def main():
        async with taskleak.check(grace=0.1) as c:
            g = asyncio.gather(slow(10), slow(10))
            await asyncio.sleep(0)
            g.cancel()
            # No await of g's branches: at scope exit they are cancelling.
        return c

    assert asyncio.run(main()).leaks == []


def test_clean_gather_that_raised_with_siblings_cancelled():
    async def main():
        async with taskleak.check(grace=0.1) as c:
            branch = asyncio.ensure_future(slow(10))
            try:
                await asyncio.gather(raise_stop(), branch)
            except StopAsyncIteration:
                branch.cancel()
        return c

    assert asyncio.run(main()).leaks == []


def test_clean_gather_with_return_exceptions():
    async def main():
        async with taskleak.check(grace=0.1) as c:
            await asyncio.gather(raise_stop(), slow(0.001), return_exceptions=True)
        return c

    assert asyncio.run(main()).leaks == []


def test_branch_with_a_consumer_of_its_own_is_not_abandoned():
    # Awaited elsewhere too: its result has a reader.
    async def main():
        async with taskleak.check(grace=1.0) as c:
            branch = asyncio.ensure_future(slow(0.01))

            async def read():
                return await branch

            reader = asyncio.ensure_future(read())  # a second consumer, awaiting the branch itself
            try:
                await asyncio.gather(raise_stop(), branch)
            except StopAsyncIteration:
                pass
            assert not branch.done() and not reader.done()  # both still running at scope exit
        return c

    assert asyncio.run(main()).leaks == []


# ---- async generators never closed --------------------------------------------------


async def ticker(log):
    try:
        while True:
            yield 1  # SUSPENDED
            await asyncio.sleep(0)
    finally:
        log.append("closed")


def abandon_generator_on_own_loop(log):
    # A unittest-style test: its own loop, run_until_complete(), close()
    # without shutdown_asyncgens(); the generator is dropped unfinished.
    loop = asyncio.new_event_loop()

    async def main():
        agen = ticker(log)
        async for _ in agen:
            break

    loop.run_until_complete(main())
    loop.close()


def test_unclosed_async_generator_is_reported_apart_not_as_a_task_leak(caplog):
    log: list = []
    with taskleak.check() as c:
        abandon_generator_on_own_loop(log)
    assert log == []  # its finally never ran: that is the bug reported
    assert c.leaks == []
    assert kinds_of(c.unclosed_asyncgens) == {"asyncgen": 1}
    report = "\n".join(r.getMessage() for r in caplog.records if r.name == "taskleak")
    assert "1 async generator never closed" in report
    assert "ticker()" in report
    assert f"test_check_structure.py:{line_of(ticker, '# SUSPENDED')} in ticker" in report
    assert "contextlib.aclosing" in report and "shutdown_asyncgens" in report
    assert "await or cancel" not in report and "async_generator_athrow" not in report


def test_unclosed_async_generator_fails_with_asyncgens_fail():
    with pytest.raises(TaskLeakError) as ei:
        with taskleak.check(asyncgens="fail"):
            abandon_generator_on_own_loop([])
    assert kinds_of(ei.value.leaks) == {"asyncgen": 1}
    assert "[asyncgen] 1 async generator never closed" in str(ei.value)


def test_unclosed_async_generator_ignored():
    with taskleak.check(asyncgens="ignore") as c:
        abandon_generator_on_own_loop([])
    assert c.leaks == [] and c.unclosed_asyncgens == []
    with pytest.raises(ValueError, match="asyncgens"):
        taskleak.check(asyncgens="maybe")


def test_clean_generator_closed_by_shutdown_asyncgens():
    log: list = []
    with taskleak.check(asyncgens="fail") as c:
        loop = asyncio.new_event_loop()

        async def main():
            async for _ in ticker(log):
                break

        loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert log == ["closed"] and c.leaks == [] and c.unclosed_asyncgens == []


# ---- the grace leaves nothing of its own -----------------------------------------------


def test_loop_stopped_during_the_grace_ends_it_cleanly():
    loop = asyncio.new_event_loop()

    async def stopper():  # code written for run_forever(): stops the loop when done
        # A step into the grace, not a timer: a timer of the user's due in
        # the same loop iteration as the grace's own would stop the loop
        # with the grace's future already done, and nothing would tell
        # the two stops apart (a loaded machine made that happen).
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        loop.stop()

    async def forever():
        await asyncio.sleep(3600)

    async def start():
        loop.create_task(stopper())
        loop.create_task(forever())

    try:
        with pytest.raises(TaskLeakError) as ei:
            with taskleak.check(grace=0.5):
                loop.run_until_complete(start())
        err = ei.value
        # Only the user's task: never taskleak's own wait.
        assert [lk.task.coro for lk in err.leaks] == [forever.__qualname__]
        assert not [t for t in asyncio.all_tasks(loop) if t.get_coro().__qualname__ == "sleep"]
        msg = str(err)
        assert "grace was cut short: the event loop was stopped (loop.stop())" in msg
        assert f"{stopper.__qualname__}() created at" in msg
        assert "only because it ran their loop" in msg
    finally:
        for t in asyncio.all_tasks(loop):
            t.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def test_grace_on_an_idle_loop_makes_no_task():
    loop = asyncio.new_event_loop()
    made = []
    loop.set_task_factory(lambda lp, coro, **kw: made.append(coro) or asyncio.Task(coro, loop=lp, **kw))

    async def soon():
        await asyncio.sleep(0.01)

    try:
        with taskleak.check(grace=0.5) as c:
            loop.run_until_complete(asyncio.sleep(0))
            loop.create_task(soon())
        made_by_grace = made[2:]  # the body's run_until_complete wrapper, soon()
        assert c.leaks == [] and made_by_grace == []
    finally:
        loop.close()


# ---- advice that fits ------------------------------------------------------------------

KEEP: set = set()


def test_done_retained_advice_is_to_drop_the_reference():
    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0):
                KEEP.add(asyncio.create_task(slow(0)))
                await asyncio.sleep(0.01)
        KEEP.clear()
        return str(ei.value)

    msg = asyncio.run(main())
    assert "Fix: drop the reference once the task is done" in msg
    assert "add_done_callback(tasks.discard)" in msg
    assert "await or cancel" not in msg


def test_several_kinds_get_one_advice_line_each():
    async def main():
        with pytest.raises(TaskLeakError) as ei:
            async with taskleak.check(grace=0):
                KEEP.add(asyncio.create_task(slow(0)))
                pending = asyncio.create_task(slow(10))
                await asyncio.sleep(0.01)
        pending.cancel()
        KEEP.clear()
        return str(ei.value)

    msg = asyncio.run(main())
    fix = msg[msg.index("Fix:") :].splitlines()
    assert fix[0] == "Fix:"
    assert fix[1].startswith("  pending: await or cancel these tasks")
    assert fix[2].startswith("  done-retained: drop the reference")
    assert fix[3].startswith("Or pass ignore=[...]")
