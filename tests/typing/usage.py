"""A typed use of taskleak's public API.

`make test` runs `mypy --strict` on this file (see `make typecheck`), so a
wrong or missing annotation on a public name fails CI; tests/test_typing.py
also runs it, so every line here is a working example.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping
from typing import Any

import taskleak


async def _worker(event: asyncio.Event) -> None:
    await event.wait()


async def snapshots() -> str:
    taskleak.install(stack_depth=16)
    event = asyncio.Event()
    task = asyncio.create_task(_worker(event), name="typed-worker")
    await asyncio.sleep(0)
    snap: taskleak.Snapshot = taskleak.snapshot().pending()
    text: str = snap.format()
    as_json: dict[str, Any] = snap.to_dict()
    assert "typed-worker" in text and as_json
    info: taskleak.TaskInfo = next(t for t in snap if t.name == "typed-worker")
    created: list[taskleak.Frame] | None = info.created_at
    site: taskleak.Frame | None = info.site
    chain: list[taskleak.Frame] = info.stack
    waiting: str = info.waiting_on
    orphaned: bool = info.orphaned
    target: taskleak.WaitTarget = info.wait
    assert created and site and chain and waiting and not orphaned and target.kind == "event"
    answer: taskleak.Why = taskleak.why(task, quiet=True)
    graph: taskleak.TaskGraph = taskleak.task_graph()
    paths: list[taskleak.HolderPath] = taskleak.who_holds(task)
    out = io.StringIO()
    taskleak.dump(out, growth=False)
    assert answer and graph is not None and isinstance(paths, list) and "typed-worker" in out.getvalue()
    event.set()
    await task
    return text


async def checked() -> list[taskleak.Leak]:
    try:
        async with taskleak.check(grace=0.05, ignore=["heartbeat*"], blocking=None):
            asyncio.create_task(asyncio.sleep(3600), name="typed-leak")
            await asyncio.sleep(0)
    except taskleak.TaskLeakError as e:
        leaks: list[taskleak.Leak] = e.leaks
        kinds: list[str] = [lk.kind for lk in leaks]
        assert kinds == ["pending"]
        return leaks
    raise AssertionError("the leak was not found")


def monitored() -> list[taskleak.Sample]:
    detector = taskleak.Detector(window=10, sigma=2.0, consecutive=3)
    anomalies: list[taskleak.Anomaly] = []
    for i in range(60):
        a: taskleak.Anomaly | None = detector.update(100.0 + i * i)
        if a is not None:
            anomalies.append(a)
    assert anomalies and anomalies[0].kind in ("spike", "trend")
    with taskleak.Monitor(interval=0.05, allow=("heartbeat*",), on_alert=None) as monitor:
        sample: taskleak.Sample = monitor.sample_now()
        exposition: str = monitor.metrics_text()
        alerts: list[taskleak.Alert] = monitor.alerts()
        assert sample.tasks >= 0 and "taskleak_asyncio_tasks" in exposition and isinstance(alerts, list)
        server: taskleak.Server = taskleak.serve(port=0, monitor=monitor)
        url: str = server.url
        server.close()
        assert url.startswith("http://127.0.0.1:")
        return monitor.samples()


class Blob:
    pass


def heap_and_blocking() -> int:
    taskleak.growth(limit=None)  # the baseline
    blobs = [Blob() for _ in range(1000)]
    g: taskleak.Growth = taskleak.growth(limit=None)
    rows: list[taskleak.GrowthRow] = [r for r in g if r.name.endswith("Blob")]
    episodes: list[taskleak.Episode] = taskleak.block_episodes()
    events: list[taskleak.LossEvent] = taskleak.loss_events()
    # A TypedDict (taskleak.tracking.installer.Status): its keys are typed, and
    # it reads as a Mapping (a TypedDict is not a Dict[str, Any]).
    status: Mapping[str, Any] = taskleak.status()
    mechanism: str | None = taskleak.status()["mechanism"]
    assert (
        isinstance(status["mechanism"], str)
        and isinstance(mechanism, str)
        and isinstance(episodes, list)
        and isinstance(events, list)
    )
    assert len(blobs) == 1000
    return rows[0].delta if rows else 0
