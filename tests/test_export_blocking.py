"""The monitor exports the watchdog's blocked-loop counters (issue 12 into
issue 10's exporters), parsed by prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

import taskleak


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


OTEL_SCRIPT = r"""
import asyncio, json, sys, time
import taskleak
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from taskleak.monitor.otel import instrument

def blocked(reader):
    out = {}
    data = reader.get_metrics_data()
    for rm in (data.resource_metrics if data else []):
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name.startswith("taskleak.event_loop.block"):
                    out[m.name] = {"unit": m.unit, "monotonic": m.data.is_monotonic,
                                   "points": [[dict(p.attributes), p.value] for p in m.data.data_points]}
    return out

async def blocks_once():
    await asyncio.sleep(0.01)
    time.sleep(0.3)
    await asyncio.sleep(0.05)

mon = taskleak.Monitor(interval=60)
reader = InMemoryMetricReader()
provider = MeterProvider(metric_readers=[reader])
res = {}
if sys.argv[1] == "instrument-first":
    instrument(mon, provider)
    res["before"] = blocked(reader)
    watch = taskleak.watch_blocking(0.1)
else:
    watch = taskleak.watch_blocking(0.1)
    instrument(mon, provider)
res["watching"] = blocked(reader)
asyncio.run(blocks_once())
res["after"] = blocked(reader)
watch.stop()
provider.shutdown()
print(json.dumps(res))
"""


@pytest.mark.parametrize("order", ["instrument-first", "watch-first"])
def test_opentelemetry_blocked_counters_whatever_the_order(order):
    """instrument() before or after the watchdog starts: the blocked-loop
    counters are there once it watches (0, then the episode), with the real
    OpenTelemetry SDK, in a fresh process (the watchdog's totals are
    process-wide)."""
    pytest.importorskip("opentelemetry.sdk")
    r = subprocess.run([sys.executable, "-c", OTEL_SCRIPT, order], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    if order == "instrument-first":
        # Declared, but not observed before anything watches: no data point
        # (not a 0 that would claim no loop blocked).
        assert res["before"] == {}
    blocks, secs = "taskleak.event_loop.blocks", "taskleak.event_loop.blocked.time"
    # Watching, but no loop runs yet: no series (no loop label to give one).
    assert all(res["watching"][k]["points"] == [] for k in (blocks, secs) if k in res["watching"])
    after = res["after"]
    assert after[blocks]["unit"] == "{block}" and after[secs]["unit"] == "s"
    assert after[blocks]["monotonic"] and after[secs]["monotonic"]
    # The loop's stable label (its thread's name), never a repr with an address.
    assert after[blocks]["points"] == [[{"loop": "MainThread"}, 1]]
    [[labels, seconds]] = after[secs]["points"]
    assert labels == {"loop": "MainThread"} and seconds >= 0.25
