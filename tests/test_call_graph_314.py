"""taskleak's await chains and awaited-by graph against asyncio.capture_call_graph() (3.14+).

For each scenario, every task of interest is checked two ways:

(a) the coroutine frames of ``TaskInfo.stack`` (outermost first) are the
    ``call_stack`` of ``capture_call_graph(task)`` reversed (it lists the
    innermost first). For a task that is not the current one, graph.py walks
    ``coro.cr_await`` from ``task.get_coro()`` and records ``cr_frame`` of each
    coroutine, stopping at the first awaitable without ``cr_await`` (a
    FutureIter, a generator); taskleak also follows ``gi_yieldfrom`` into
    generator-based coroutines, so its stack may go on with non-coroutine
    frames after that prefix (see ``test_generator_based_frames_extend_the_chain``).
(b) the names in ``TaskGraph.awaited_by[task]`` are the tasks in
    ``capture_call_graph(task).awaited_by``.
"""

import asyncio
import types

import pytest

if not hasattr(asyncio, "capture_call_graph"):
    pytest.skip("asyncio.capture_call_graph() and native awaited-by links are CPython 3.14+", allow_module_level=True)

import taskleak
from taskleak.diagnosis import awaited_by as awaited_by_mod

taskleak.install()


async def settle(n=5):
    for _ in range(n):
        await asyncio.sleep(0)


async def cleanup(*tasks):
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def native_chain(cg):
    """capture_call_graph's call stack, outermost first, coroutine frames only,
    as (filename, lineno, qualname)."""
    return [
        (e.frame.f_code.co_filename, e.frame.f_lineno, e.frame.f_code.co_qualname)
        for e in reversed(cg.call_stack)
        if isinstance(e.frame.f_generator, types.CoroutineType)
    ]


def compare(tasks, *, extra_frames=None):
    """Check (a) and (b) for each task; return {name: (our chain, awaited_by names)}
    so that tests can also assert what the scenario must contain."""
    extra_frames = extra_frames or {}
    g = taskleak.task_graph()
    name_of = {id(info.task): name for name, info in g.tasks.items()}
    out = {}
    for task in tasks:
        name = name_of[id(task)]
        ours = [(f.filename, f.lineno, f.function) for f in g.tasks[name].stack]
        cg = asyncio.capture_call_graph(task)
        try:
            native = native_chain(cg)
            native_awaiters = {name_of.get(id(p.future), repr(p.future)) for p in cg.awaited_by}
        finally:
            del cg
        n_extra = extra_frames.get(name, 0)
        # (a): the coroutine prefix of taskleak's chain is capture_call_graph's stack.
        assert ours[: len(ours) - n_extra] == native, (name, ours, native)
        # (b): the same awaiters.
        assert set(g.awaited_by.get(name, [])) == native_awaiters, (name, g.awaited_by.get(name), native_awaiters)
        assert len(g.awaited_by.get(name, [])) == len(native_awaiters)  # no duplicates
        out[name] = (ours, sorted(native_awaiters))
    return out


def functions(chain):
    return [fn for (_, _, fn) in chain]


def test_native_links_are_used():
    assert awaited_by_mod.NATIVE_AWAITED_BY is True

    async def main():
        r = awaited_by_mod.resolver(list(taskleak.snapshot().pending()))
        try:
            assert r.native is True and isinstance(r, awaited_by_mod.NativeAwaitersResolver)
        finally:
            r.close()

    asyncio.run(main())


async def inner(ev):
    await ev.wait()


async def middle(ev):
    await inner(ev)


async def outer(ev):
    await middle(ev)


async def leaf():
    await asyncio.sleep(30)


def test_nested_coroutines_awaiting_an_event():
    async def main():
        ev = asyncio.Event()
        t = asyncio.create_task(outer(ev), name="nested")
        await settle()
        res = compare([t])
        chain, by = res["nested"]
        assert functions(chain) == ["outer", "middle", "inner", "Event.wait"]
        assert by == []
        await cleanup(t)

    asyncio.run(main())


def test_task_awaiting_another_task():
    async def awaiter(other):
        await other

    async def main():
        ev = asyncio.Event()
        callee = asyncio.create_task(outer(ev), name="callee")
        caller = asyncio.create_task(awaiter(callee), name="caller")
        await settle()
        res = compare([callee, caller])
        assert res["callee"][1] == ["caller"]
        assert res["caller"][1] == []
        assert functions(res["caller"][0]) == ["test_task_awaiting_another_task.<locals>.awaiter"]
        await cleanup(caller, callee)

    asyncio.run(main())


def test_gather_of_children():
    async def parent(kids):
        await asyncio.gather(*kids, leaf(), asyncio.gather(leaf(), leaf()))

    async def main():
        kids = [asyncio.create_task(leaf(), name=f"kid-{i}") for i in range(2)]
        p = asyncio.create_task(parent(kids), name="gatherer")
        await settle()
        g = taskleak.task_graph()
        wrapped = [g.tasks[n].task for n in g.awaits["gatherer"] if not n.startswith("kid-")]
        assert len(wrapped) == 3  # leaf() and the two of the inner gather, wrapped in tasks
        res = compare(kids + wrapped + [p])
        for k in ("kid-0", "kid-1"):
            assert res[k][1] == ["gatherer"]
            assert functions(res[k][0]) == ["leaf", "sleep"]
        assert res["gatherer"][1] == []
        del g, wrapped
        await cleanup(p, *kids)

    asyncio.run(main())


def test_taskgroup_children():
    async def parent():
        async with asyncio.TaskGroup() as tg:
            tg.create_task(leaf(), name="tg-a")
            tg.create_task(leaf(), name="tg-b")

    async def main():
        p = asyncio.create_task(parent(), name="tg-parent")
        await settle()
        kids = [t for t in asyncio.all_tasks() if t.get_name() in ("tg-a", "tg-b")]
        assert len(kids) == 2
        res = compare(kids + [p])
        assert res["tg-a"][1] == res["tg-b"][1] == ["tg-parent"]
        chain = functions(res["tg-parent"][0])
        assert chain[0] == "test_taskgroup_children.<locals>.parent"
        assert "TaskGroup.__aexit__" in chain
        await cleanup(p)

    asyncio.run(main())


def test_shield():
    async def parent(inner_task):
        await asyncio.shield(inner_task)

    async def main():
        shielded = asyncio.create_task(leaf(), name="shielded")
        p = asyncio.create_task(parent(shielded), name="shielder")
        await settle()
        res = compare([shielded, p])
        assert res["shielded"][1] == ["shielder"]
        assert res["shielder"][1] == []
        await cleanup(p, shielded)

    asyncio.run(main())


def test_two_awaiters_of_one_task():
    async def awaiter(other):
        await other

    async def main():
        shared = asyncio.create_task(leaf(), name="shared")
        a = asyncio.create_task(awaiter(shared), name="aw-1")
        b = asyncio.create_task(asyncio.wait([shared]), name="aw-2")
        await settle()
        res = compare([shared, a, b])
        assert res["shared"][1] == ["aw-1", "aw-2"]
        await cleanup(a, b, shared)

    asyncio.run(main())


def test_as_completed_links_are_native_only():
    # as_completed() leaves no callback that leads back to the awaiting task
    # (its callback is bound to the iterator), only the native link.
    async def consumer(kids):
        async for f in asyncio.as_completed(kids):
            await f

    async def main():
        kids = [asyncio.create_task(leaf(), name=f"ac-{i}") for i in range(2)]
        c = asyncio.create_task(consumer(kids), name="consumer")
        await settle()
        res = compare(kids + [c])
        assert res["ac-0"][1] == res["ac-1"][1] == ["consumer"]
        await cleanup(c, *kids)

    asyncio.run(main())


@types.coroutine
def gen_wait(fut):
    yield from fut


def test_generator_based_frames_extend_the_chain():
    async def uses_generator(fut):
        await gen_wait(fut)

    async def main():
        fut = asyncio.get_running_loop().create_future()
        t = asyncio.create_task(uses_generator(fut), name="gen")
        await settle()
        res = compare([t], extra_frames={"gen": 1})
        chain = functions(res["gen"][0])
        assert chain == ["test_generator_based_frames_extend_the_chain.<locals>.uses_generator", "gen_wait"]
        await cleanup(t)

    asyncio.run(main())


def test_await_cycle_matches_native_links():
    # capture_call_graph() follows awaited_by recursively and never returns on
    # an await cycle (RecursionError), so compare with the links it reads.
    box = {}

    async def a():
        await settle()
        await box["b"]

    async def b():
        await settle()
        await asyncio.shield(box["a"])  # cancellable: see test_diagnosis

    async def main():
        box["a"] = asyncio.create_task(a(), name="A")
        box["b"] = asyncio.create_task(b(), name="B")
        await settle(8)
        g = taskleak.task_graph()
        name_of = {id(info.task): name for name, info in g.tasks.items()}
        for name, task in (("A", box["a"]), ("B", box["b"])):
            native = {name_of.get(id(w), repr(w)) for w in task._asyncio_awaited_by}
            assert set(g.awaited_by[name]) == native
        assert g.awaited_by["A"] == ["B"] and g.awaited_by["B"] == ["A"]
        assert [sorted(c) for c in g.cycles] == [["A", "B"]]
        del g, name_of
        ta, tb = box.pop("a"), box.pop("b")
        tb.cancel()
        await asyncio.gather(ta, tb, return_exceptions=True)

    asyncio.run(main())
