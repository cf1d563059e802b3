"""taskleak.who_holds / HeapIndex / growth: holder paths and type growth."""

import asyncio
import gc
import io
import json
import sys

import pytest

import taskleak
from taskleak import _core

# Long-lived holders the paths should start from.
REGISTRY = {}
TASK_LIST = []
TASK_SET = set()


class Pool:
    live = []


class Service:
    def __init__(self):
        self.tasks = []


class Slotted:
    __slots__ = ("item",)


class Thing:
    pass


SERVICE = Service()


def finished_task():
    async def job():
        return 1

    async def main():
        t = asyncio.ensure_future(job())
        await t
        return t

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def _clean():
    yield
    REGISTRY.clear()
    TASK_LIST.clear()
    TASK_SET.clear()
    Pool.live.clear()
    SERVICE.tasks.clear()


def paths_to(obj, **kw):
    return [str(p) for p in taskleak.who_holds(obj, **kw)]


def test_module_global_dict_path():
    REGISTRY["job"] = [Thing(), Thing()]
    target = REGISTRY["job"][1]
    paths = paths_to(target)
    assert f"module {__name__}['REGISTRY']['job'][1]" in paths, paths


def test_list_and_set_members():
    t = Thing()
    TASK_LIST.append(t)
    TASK_SET.add(t)
    paths = paths_to(t, max_paths=5)
    assert f"module {__name__}['TASK_LIST'][0]" in paths, paths
    assert f"module {__name__}['TASK_SET'] (set member)" in paths, paths


def test_instance_attribute_and_class_attribute():
    t = Thing()
    SERVICE.tasks.append(t)
    Pool.live.append(t)
    paths = paths_to(t, max_paths=5)
    assert f"module {__name__}['SERVICE'].tasks[0]" in paths, paths
    assert f"class {__name__}.Pool.live[0]" in paths, paths


def test_inline_instance_values_and_slots():
    # 3.11+ keeps instance attributes inline (no __dict__ object) until asked.
    holder = Thing()
    holder.item = Thing()
    slotted = Slotted()
    slotted.item = Thing()
    REGISTRY["h"] = holder
    REGISTRY["s"] = slotted
    del holder, slotted  # else the shortest paths start at this frame's locals
    # (Not inside `assert`: pytest's rewriting keeps intermediates in locals.)
    by_attr = paths_to(REGISTRY["h"].item)
    by_slot = paths_to(REGISTRY["s"].item)
    assert f"module {__name__}['REGISTRY']['h'].item" in by_attr, by_attr
    assert f"module {__name__}['REGISTRY']['s'].item" in by_slot, by_slot


def test_closure_cell():
    def make():
        captured = Thing()

        def tick():
            return captured

        return tick

    REGISTRY["tick"] = make()
    target = REGISTRY["tick"]()
    paths = paths_to(target)
    assert any(p.startswith(f"module {__name__}['REGISTRY']['tick']") and "closure 'captured'" in p for p in paths), (
        paths
    )


def test_running_frame_local():
    def inner():
        mine = [Thing()]
        return paths_to(mine[0]), mine

    paths, _ = inner()
    assert any(p.startswith("running frame ") and "inner" in p and "local 'mine'[0]" in p for p in paths), paths


def test_finished_task_in_container():
    REGISTRY["t"] = [finished_task()]
    paths = paths_to(REGISTRY["t"][0])
    assert f"module {__name__}['REGISTRY']['t'][0]" in paths, paths


def test_event_loop_bookkeeping():
    async def main():
        loop = asyncio.get_running_loop()
        payload = Thing()
        loop.call_later(3600, lambda p=payload: p)
        handle_paths = []
        ref = payload
        del payload
        handle_paths = [p for p in taskleak.who_holds(ref, max_paths=5) if p.root_kind == "loop"]
        return handle_paths

    paths = asyncio.run(main())
    assert paths, paths
    assert str(paths[0]).startswith("event loop <") and "_scheduled" in str(paths[0]), paths


def test_running_coroutine_local_is_a_frame_root():
    async def main():
        keep = {"x": Thing()}
        await asyncio.sleep(0)
        return paths_to(keep["x"])

    paths = asyncio.run(main())
    assert any(p.startswith("running frame ") and "local 'keep'['x']" in p for p in paths), paths
    assert not any("_current_tasks" in p for p in paths), paths


def test_several_queries_share_one_index():
    a, b = Thing(), Thing()
    REGISTRY["a"] = [a]
    Pool.live.append(b)
    ix = taskleak.HeapIndex()
    assert ix.objects > 1000 and ix.edges > ix.objects // 2
    assert ix.bytes > 8 * ix.objects
    assert f"module {__name__}['REGISTRY']['a'][0]" in [str(p) for p in ix.who_holds(a)]
    assert f"class {__name__}.Pool.live[0]" in [str(p) for p in ix.who_holds(b)]
    assert f"module {__name__}['REGISTRY']['a'][0]" in [str(p) for p in ix.who_holds(a)]
    assert not ix.stale


def test_index_staleness_never_invents_paths():
    a = Thing()
    REGISTRY["a"] = [a]
    ix = taskleak.HeapIndex()
    old = REGISTRY["a"]
    REGISTRY["a"] = []  # the indexed references are gone
    old.clear()
    paths = [str(p) for p in ix.who_holds(a, max_paths=10)]
    assert not any("REGISTRY" in p or "'old'" in p for p in paths), paths
    assert ix.stale
    # An object born after the build is found through one live pass.
    REGISTRY["c"] = Thing()  # no local: the module path is then the only one
    assert f"module {__name__}['REGISTRY']['c']" in [str(p) for p in ix.who_holds(REGISTRY["c"])]


def test_untracked_target():
    s = "a string nobody else has " + str(id(REGISTRY))
    REGISTRY["s"] = s
    assert f"module {__name__}['REGISTRY']['s']" in paths_to(s)


def test_max_depth_respected():
    deep = Thing()
    REGISTRY["deep"] = [[[[deep]]]]
    assert not any("REGISTRY" in p for p in paths_to(deep, max_depth=3))
    assert f"module {__name__}['REGISTRY']['deep'][0][0][0][0]" in paths_to(deep, max_depth=6)


def test_max_paths_respected():
    t = Thing()
    for i in range(6):
        REGISTRY[f"k{i}"] = [t]
    assert len(taskleak.who_holds(t, max_paths=2)) == 2


def test_holder_path_json():
    TASK_LIST.append(Thing())
    p = next(p for p in taskleak.who_holds(TASK_LIST[0]) if p.root_kind == "module")
    d = p.to_dict()
    assert d == {
        "root": f"module {__name__}",
        "root_kind": "module",
        "steps": ["['TASK_LIST']", "[0]"],
        "path": f"module {__name__}['TASK_LIST'][0]",
    }
    json.dumps(d)


def test_bad_arguments():
    with pytest.raises(ValueError):
        taskleak.who_holds(1, max_depth=0)
    with pytest.raises(TypeError):
        taskleak.who_holds(1, max_paths="3")
    with pytest.raises(ValueError):
        taskleak.growth(limit=-1)
    with pytest.raises(TypeError):
        taskleak.growth(limit=1.5)
    with pytest.raises(TypeError):
        taskleak.HeapIndex(max_objects="many")


def test_heap_too_large_is_refused():
    with pytest.raises(MemoryError, match="max_objects"):
        taskleak.HeapIndex(max_objects=100)


# ---- growth -------------------------------------------------------------------


def test_growth_exact_for_a_new_class():
    class Widget:
        pass

    taskleak.growth(limit=None)
    batch = [Widget() for _ in range(1234)]
    rows = {r.name: r for r in taskleak.growth(limit=None)}
    name = f"{__name__}.{Widget.__qualname__}"
    assert rows[name].count == 1234 and rows[name].delta == 1234
    assert not rows[name].highlight
    del batch
    rows = {r.name: r for r in taskleak.growth(limit=None)}
    assert name not in rows  # shrank: only growth is listed


def test_growth_highlights_coroutines_and_asyncio_types():
    async def heartbeat():
        await asyncio.sleep(3600)

    async def main():
        taskleak.growth(limit=None)
        tasks = [asyncio.ensure_future(heartbeat()) for _ in range(50)]
        await asyncio.sleep(0)
        g = taskleak.growth(limit=None)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return g

    g = asyncio.run(main())
    coro = [r for r in g if r.kind == "coroutine" and "heartbeat" in r.name]
    assert len(coro) == 1 and coro[0].delta == 50 and coro[0].highlight, [r for r in g if r.kind == "coroutine"]
    assert "test_heap.py:" in coro[0].name
    task_rows = [r for r in g if r.name in ("_asyncio.Task", "asyncio.tasks.Task")]
    assert task_rows and task_rows[0].highlight and task_rows[0].delta >= 50
    text = g.format()
    assert any(line.startswith("* coroutine ") and "heartbeat" in line for line in text.splitlines()), text


def test_growth_limit_order_and_text():
    class Gadget:
        pass

    class Sprocket:
        pass

    class Cog:
        pass

    taskleak.growth()
    keep = [Gadget() for _ in range(20000)]
    out = io.StringIO()
    extra = [Sprocket() for _ in range(100)] + [Cog() for _ in range(50)]  # three types grow at least
    g = taskleak.growth(limit=3, file=out)
    assert len(g) == 3
    del extra
    assert [r.delta for r in g] == sorted((r.delta for r in g), reverse=True)
    assert any(r.name.endswith("Gadget") for r in g)
    assert "Gadget" in out.getvalue()
    d = g.to_dict()
    json.dumps(d)
    assert set(d) == {"total_objects", "collected", "first", "rows"}
    assert set(d["rows"][0]) == {"name", "count", "delta", "kind", "highlight"}
    del keep


def test_no_garbage_collection_unless_asked():
    runs = []

    def cb(phase, info):
        runs.append(phase)

    was = gc.isenabled()
    gc.disable()  # so that no automatic collection can be mistaken for ours
    gc.callbacks.append(cb)
    try:
        taskleak.growth()
        taskleak.HeapIndex().who_holds(REGISTRY)
        taskleak.who_holds(REGISTRY)
        assert runs == []
        assert taskleak.growth(collect=True).collected
        assert runs == ["start", "stop"]
    finally:
        gc.callbacks.remove(cb)
        if was:
            gc.enable()


def test_index_memory_accounting():
    ix = taskleak.HeapIndex()
    # Address table (8 bytes/slot, load <= 1/2), CSR offsets, referrer ids.
    per_object = ix.bytes / ix.objects
    assert 12 < per_object < 120, per_object
    assert "objects=" in repr(ix)


def test_heap_walk_mode():
    assert _core.HEAP_WALK == ("gc-visit" if sys.version_info >= (3, 12) else "gc-lists")


def test_growth_survives_types_whose_module_is_not_a_string():
    # Cython metatypes (uvloop's) expose __module__ as a descriptor on the type.
    import uvloop  # noqa: F401 - installed by the test environment

    class Meta(type):
        __module__ = property(lambda self: 1)  # type: ignore[assignment]

    Odd = Meta("Odd", (), {})
    taskleak.growth()
    keep = [Odd() for _ in range(3)]
    rows = taskleak.growth(limit=100_000).rows
    assert [r.count for r in rows if r.name == "Odd"] == [3]
    del keep


# -- ranking, own objects, bad targets (issue 13) ----------------------------------------


class App:
    def __init__(self):
        self.cache = {}


APP = App()


def test_module_global_ranks_before_the_callers_frames():
    # The caller's local list holds the task one reference away; the module
    # global three away. The global explains the retention: it comes first.
    async def noop():
        pass

    async def main():
        done = [asyncio.create_task(noop()) for _ in range(4)]
        await asyncio.gather(*done)
        APP.cache["tasks"] = done
        return [str(p) for p in taskleak.who_holds(done[3])], [p.root_kind for p in taskleak.who_holds(done[3])]

    try:
        paths, kinds = asyncio.run(main())
    finally:
        APP.cache.clear()
    assert paths[0] == f"module {__name__}['APP'].cache['tasks'][3]", paths
    assert any(k == "frame" for k in kinds[1:]), paths  # the caller's frame is still listed, after it
    assert kinds.index("frame") > kinds.index("module")


def test_taskleak_objects_are_never_on_a_path():
    t = Thing()
    TASK_LIST.append(t)
    REGISTRY["snap"] = taskleak.snapshot()  # holds TaskInfo rows, unrelated to `t`
    REGISTRY["ix"] = taskleak.HeapIndex()

    async def job():
        return 1

    async def main():
        task = asyncio.create_task(job(), name="kept")
        await task
        REGISTRY["snap2"] = taskleak.snapshot()  # a finished task stays in this snapshot's rows
        TASK_LIST.append(task)
        return task

    task = asyncio.run(main())
    paths = [str(p) for p in taskleak.who_holds(task, max_paths=10)]
    assert f"module {__name__}['TASK_LIST'][1]" in paths, paths
    assert not any("snap" in p or "_row" in p or "infos" in p for p in paths), paths
    ix_paths = [str(p) for p in REGISTRY["ix"].who_holds(task, max_paths=10)]
    assert not any("snap" in p or "_row" in p for p in ix_paths), ix_paths


@pytest.mark.parametrize("singleton", [None, True, False, Ellipsis, NotImplemented])
def test_who_holds_refuses_singletons_with_a_clear_error(singleton):
    with pytest.raises(TypeError, match="shared singleton"):
        taskleak.who_holds(singleton)
    with pytest.raises(TypeError, match="shared singleton"):
        taskleak.HeapIndex().who_holds(singleton)


def test_loop_machinery_comes_last():
    # A handle in the loop's timer heap holds the payload; so does a module
    # global. The global comes first, the loop's machinery after it.
    async def main():
        loop = asyncio.get_running_loop()
        REGISTRY["payload"] = Thing()
        loop.call_later(3600, lambda p=REGISTRY["payload"]: p)
        return taskleak.who_holds(REGISTRY["payload"], max_paths=5)

    paths = asyncio.run(main())
    assert str(paths[0]) == f"module {__name__}['REGISTRY']['payload']", paths
    loop_paths = [p for p in paths if p.root_kind == "loop"]
    assert loop_paths and "_scheduled" in str(loop_paths[0]), paths
    assert paths.index(loop_paths[0]) > 0


def test_forward_search_does_not_visit_a_big_container_it_does_not_need():
    # A list of 100,000 records next to the dict that holds the target: the
    # search reaches the target without visiting the records.
    REGISTRY["big"] = [Thing() for _ in range(100_000)]
    REGISTRY["small"] = {"it": Thing()}
    found, visited, _ = _core.forward_search(REGISTRY["small"]["it"], [sys.modules[__name__].__dict__], [], [], 10, 3)
    assert [len(chain) for _, chain in found] == [4]  # module dict -> REGISTRY -> small -> it
    assert visited < 50_000, visited  # not the 100,000 records


def test_growth_first_call_is_a_baseline_and_taskleak_objects_are_left_out():
    import taskleak.heap.growth as growth_mod

    growth_mod._previous = None  # as in a fresh process
    first = taskleak.growth()
    assert first.first and len(first) == 0
    assert first.format().startswith("baseline taken: ") and "call growth() again" in first.format()
    keep = [taskleak.snapshot() for _ in range(30)]  # Snapshot, TaskInfo, Frame... objects

    class Widget2:
        pass

    mine = [Widget2() for _ in range(40)]
    g = taskleak.growth(limit=None)
    assert not g.first
    names = [r.name for r in g]
    assert any(n.endswith("Widget2") for n in names), names
    assert not any(n.startswith("taskleak.") for n in names), names
    del keep, mine


def test_heap_walk_sees_what_gc_get_objects_sees():
    gc.disable()  # no collection between the two counts
    try:
        total = _core.type_census()[0]
        expected = len(gc.get_objects())
    finally:
        gc.enable()
    assert abs(total - expected) < 50, (total, expected)
    # 3.10/3.11 read the generation lists through a checked mirror; it must not
    # have fallen back to gc.get_objects().
    assert _core.heap_walk_mode() == ("gc-visit" if sys.version_info >= (3, 12) else "gc-lists")


def test_a_running_coroutine_held_by_its_awaiting_frame_is_not_a_path():
    # uvloop.run() wraps main(): its wrapper's frame holds the running
    # coroutine in a local. That coroutine's locals are a running frame's.
    async def main():
        mine = [Thing()]
        REGISTRY["w"] = mine[0]
        return [str(p) for p in taskleak.who_holds(mine[0], max_paths=5)]

    async def wrapper():
        m = main()
        return await m

    paths = asyncio.run(wrapper())
    assert paths[0] == f"module {__name__}['REGISTRY']['w']", paths
    assert not any("local 'm'" in p for p in paths), paths
