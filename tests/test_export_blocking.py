"""The monitor exports the watchdog's blocked-loop counters (issue 12 into
issue 10's exporters), parsed by prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import time

import taskleak
from prometheus_client.parser import text_string_to_metric_families


def _counters(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("taskleak_event_loop_block"):
                out[(s.name, s.labels.get("loop"))] = s.value
    return out


def test_blocked_seconds_and_blocks_are_exported():
    async def blocks_once() -> None:
        await asyncio.sleep(0.01)
        time.sleep(0.3)  # blocks the loop: the watchdog records one episode
        await asyncio.sleep(0.05)

    with taskleak.watch_blocking(0.1):
        before = _counters(taskleak.Monitor(interval=60).metrics_text())
        asyncio.run(blocks_once())
        with taskleak.Monitor(interval=60) as mon:
            mon.sample_now()
            after = _counters(mon.metrics_text())
    blocks = {k: v for k, v in after.items() if k[0] == "taskleak_event_loop_blocks_total"}
    seconds = {k: v for k, v in after.items() if k[0] == "taskleak_event_loop_blocked_seconds_total"}
    assert blocks and seconds
    gained = sum(blocks.values()) - sum(v for k, v in before.items() if k[0] == "taskleak_event_loop_blocks_total")
    assert gained >= 1
    assert sum(seconds.values()) >= 0.25
