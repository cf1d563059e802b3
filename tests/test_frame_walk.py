"""The C++ frame walker must agree with the interpreter's own view of the stack."""

import traceback

from taskleak import _core


def level3():
    # Both on one line, so both see the same innermost line number.
    got, want = _core.capture_stack(5), traceback.extract_stack(limit=5)
    return got, [(f.filename, f.lineno, f.name) for f in reversed(want)]


def level2():
    return level3()


def level1():
    return level2()


def test_capture_stack_matches_traceback():
    got, want = level1()
    assert [(f, ln) for f, ln, _ in got] == [(f, ln) for f, ln, _ in want]
    assert [fn.rsplit(".", 1)[-1] for _, _, fn in got[:4]] == [
        "level3",
        "level2",
        "level1",
        "test_capture_stack_matches_traceback",
    ]


def test_capture_stack_depth_limit():
    assert len(_core.capture_stack(2)) == 2
    assert len(_core.capture_stack(1)) == 1


def test_capture_inside_generator_and_coroutine():
    def gen():
        yield _core.capture_stack(3)

    frames = next(gen())
    assert frames[0][2].endswith("gen")
    assert frames[1][2].endswith("test_capture_inside_generator_and_coroutine")

    async def coro():
        return _core.capture_stack(3)

    c = coro()
    try:
        c.send(None)
    except StopIteration as e:
        frames = e.value
    assert frames[0][2].endswith("coro")
    assert frames[0][1] == coro.__code__.co_firstlineno + 1


def test_frame_walk_mode_is_direct_on_supported_versions():
    assert _core.FRAME_WALK == "direct"
    assert taskleak_status()["frame_walk"] == "direct"


def taskleak_status():
    import taskleak

    return taskleak.status()


def test_await_chain_goes_to_innermost_frame():
    import asyncio

    async def inner(fut):
        await fut

    async def middle(fut):
        await inner(fut)

    async def outer(fut):
        await middle(fut)

    async def main():
        fut = asyncio.get_running_loop().create_future()
        t = asyncio.ensure_future(outer(fut))
        await asyncio.sleep(0)
        frames, leaf = _core.await_chain(t.get_coro())
        fut.set_result(None)
        await t
        return frames

    frames = asyncio.run(main())
    assert [fn.rsplit(".", 1)[-1] for _, _, fn in frames] == ["outer", "middle", "inner"]
    assert frames[-1][1] == test_await_chain_goes_to_innermost_frame.__code__.co_firstlineno + 4


def test_generator_local_reads_suspended_frame():
    def gen():
        secret = 41
        yield
        yield secret

    g = gen()
    next(g)
    assert _core.generator_local(g, "secret") == 41
    assert _core.generator_local(g, "missing") is None
    g.close()
    assert _core.generator_local(g, "secret") is None


def _python_chain(coro):
    """The await chain as the interpreter's own attributes give it: the
    reference the native walk (read off the frames' value stacks) must match."""
    import gc
    import types

    frames, obj = [], coro
    wrappers = ("coroutine_wrapper", "async_generator_asend", "async_generator_athrow")
    while obj is not None and len(frames) < 64:
        if isinstance(obj, (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType)):
            kind = {types.CoroutineType: "cr", types.GeneratorType: "gi", types.AsyncGeneratorType: "ag"}[type(obj)]
            frame = getattr(obj, f"{kind}_frame")
            if frame is None:
                return frames, None
            frames.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
            obj = getattr(obj, {"cr": "cr_await", "gi": "gi_yieldfrom", "ag": "ag_await"}[kind])
        elif type(obj).__name__ in wrappers:
            inner = [
                o
                for o in gc.get_referents(obj)
                if isinstance(o, (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType))
            ]
            if not inner:
                return frames, obj
            obj = inner[0]
        else:
            return frames, obj
    return frames, None


def test_census_chains_match_the_interpreters_own_links():
    # The census reads what each suspension point awaits off the frame's
    # value stack, asking the interpreter once per (code, offset): every
    # shape of chain, several tasks per shape (so the remembered answer is
    # used), must give the frames and leaf that cr_await / gi_yieldfrom /
    # ag_await give - including a plain `yield` whose stack top is an
    # iterator nothing awaits.
    import asyncio
    import itertools
    import types

    import taskleak

    async def on_future(fut):
        await fut

    async def two_deep(fut):
        await on_future(fut)

    @types.coroutine
    def bare_yield_over_iterator():
        for _ in itertools.repeat(None):
            yield  # the iterator is the stack top, not an awaited object

    async def plain_yield():
        await bare_yield_over_iterator()

    @types.coroutine
    def yield_from_future(fut):
        yield from fut

    async def generator_based(fut):
        await yield_from_future(fut)

    async def agen(fut):
        await fut
        yield 1

    async def async_for(fut):
        async for _ in agen(fut):
            pass

    @types.coroutine
    def through_wrapper(fut):
        yield from on_future(fut).__await__()

    async def wrapped(fut):
        await through_wrapper(fut)

    async def on_task(t):
        await t

    shapes = [on_future, two_deep, lambda f: plain_yield(), generator_based, async_for, wrapped]

    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        tasks = [asyncio.create_task(shape(fut)) for shape in shapes for _ in range(4)]
        tasks += [asyncio.create_task(on_task(tasks[0])) for _ in range(3)]
        tasks.append(asyncio.create_task(asyncio.sleep(3600)))
        for _ in range(3):
            await asyncio.sleep(0)
        snap = taskleak.snapshot()
        census = snap._s.census
        me = asyncio.current_task()
        me_chain = None
        compared = {}
        for i in range(len(census)):
            row = census.row(i)
            task, chain, leaf = row[0], row[-3], row[-1]
            if task not in tasks and task is not me:
                continue
            got = [(f, ln, n.rsplit(".", 1)[-1]) for f, ln, n in census.chain_frames(chain)] if chain >= 0 else []
            if task is me:
                # Running (not suspended): where it is now is a later line.
                me_chain = got
                continue
            want, want_leaf = _python_chain(task.get_coro())
            compared[task] = (got == want, leaf is want_leaf, len(want), got, want)
        fut.set_result(None)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return tasks, me_chain, compared

    taskleak.install()
    try:
        tasks, me_chain, compared = asyncio.run(main())
    finally:
        taskleak.uninstall()
    assert [name for _, _, name in me_chain] == ["main"]
    assert set(compared) == set(tasks)
    bad = {repr(t): (got, want) for t, (ok, leaf_ok, _, got, want) in compared.items() if not (ok and leaf_ok)}
    assert bad == {}
    # Not trivially equal: every shape's chain was walked past its first link.
    assert [repr(t) for t, v in compared.items() if v[2] < 1] == []
    assert sum(depth >= 2 for _, _, depth, _, _ in compared.values()) >= 20
