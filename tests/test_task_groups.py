"""The grouped listing the dashboard polls (/api/tasks): its per-group
aggregates come from the census natively; here they are checked against the
same figures computed in Python from the snapshot's columns."""

from __future__ import annotations

import asyncio
import heapq
from collections import Counter

import taskleak
from taskleak.live import task_groups


async def parked(ev: asyncio.Event) -> None:
    await ev.wait()


async def parent(ev: asyncio.Event, n: int, out: list) -> None:
    for _ in range(n):
        out.append(asyncio.ensure_future(parked(ev)))  # one site for every parent
    await ev.wait()


def _reference(snap, g: list[int], max_names: int) -> dict:
    serial, created, par = snap.column("serial"), snap.column("created"), snap.column("parent")
    shown = heapq.nsmallest(max_names, g, key=lambda i: (serial[i] or 1 << 62, i))
    births = [created[i] for i in g if created[i] >= 0]
    parents = Counter(par[i] for i in g if par[i]).most_common(3)
    return {
        "tasks": [snap.at(i).name for i in shown],
        "oldest_age_s": None if not births else (snap.taken_ns - min(births)) / 1e9,
        "newest_age_s": None if not births else (snap.taken_ns - max(births)) / 1e9,
        "parents": [p for p, _ in parents],
    }


def _check(payload_groups, snap, max_names):
    groups = snap.row_groups()
    assert len(payload_groups) == len(groups)
    for doc, g in zip(payload_groups, groups):
        ref = _reference(snap, g, max_names)
        assert doc["count"] == len(g)
        assert doc["tasks"] == ref["tasks"], doc["coro"]
        assert doc["oldest_age_s"] == ref["oldest_age_s"]
        assert doc["newest_age_s"] == ref["newest_age_s"]
        # A parent may be gone (a task of an earlier test, in a full run).
        names = []
        for p in ref["parents"]:
            t = snap.task_by_serial(p)
            names.append(t.name if t is not None else f"<task #{p}, no longer alive>")
        assert doc["created_by"] == names, doc["coro"]


def test_group_aggregates_match_the_rows(tracked):
    untracked_loop = asyncio.new_event_loop()
    taskleak.uninstall()
    try:
        # Tasks made before tracking: serial 0, no creation time.
        ev0 = asyncio.Event()
        early = [untracked_loop.create_task(parked(ev0), name=f"early-{i}") for i in range(30)]
        untracked_loop.run_until_complete(asyncio.sleep(0))
    finally:
        taskleak.install()

    async def main() -> None:
        ev = asyncio.Event()
        kids: list = []
        # Parents with 7, 3, 3 and 1 children: the top three by count, ties
        # in order of first appearance, as Counter.most_common orders them.
        ps = [asyncio.ensure_future(parent(ev, n, kids), loop=None) for n in (1, 3, 7, 3)]
        plain = [asyncio.ensure_future(parked(ev)) for _ in range(40)]
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        snap = taskleak.snapshot()
        for max_names in (2, 5, 100):
            doc = task_groups.tasks_payload(snap, max_names=max_names)
            _check(doc["groups"], snap, max_names)
        by_coro = {g["coro"]: g for g in task_groups.tasks_payload(snap)["groups"]}
        assert any(g["count"] == 14 and len(g["created_by"]) == 3 for g in by_coro.values() if g["coro"] == "parked")
        ev.set()
        await asyncio.gather(*ps, *kids, *plain)

    asyncio.run(main())

    # The untracked tasks: their loop runs again (under tracking now), and
    # they are found (asyncio's registry on 3.10-3.13, the running loop's
    # own tasks on 3.14+) in a group of their own, with no creation time.
    async def later() -> None:
        snap = taskleak.snapshot()
        doc = task_groups.tasks_payload(snap, max_names=5)
        _check(doc["groups"], snap, 5)
        early_group = [g for g in doc["groups"] if any(n.startswith("early-") for n in g["tasks"])]
        assert early_group and early_group[0]["oldest_age_s"] is None
        # Untracked rows come in the order they were found: the first five.
        assert len(early_group[0]["tasks"]) == 5 and early_group[0]["count"] == 30

    try:
        untracked_loop.run_until_complete(later())
    finally:
        ev0.set()
        untracked_loop.run_until_complete(asyncio.gather(*early))
        untracked_loop.close()
