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
