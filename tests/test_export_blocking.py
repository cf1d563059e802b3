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


LIVE = ("taskleak_event_loop_blocked_now", "taskleak_event_loop_current_block_seconds")


def _live(text: str, loop: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in LIVE and s.labels == {"loop": loop}:
                out[s.name] = s.value
    return out


def _help_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("#") and any(f" {n} " in ln for n in LIVE)]


def test_prometheus_client_scrapes_the_live_gauges_while_the_loop_sleeps():
    """A loop stuck in a call that releases the GIL (time.sleep): Python
    threads still run, so prometheus_client's own HTTP server answers a
    scrape, and the collector reads the live gauges from the watchdog then:
    the same names, label and help as the endpoint's native /metrics."""
    import urllib.request

    import prometheus_client
    from live_service import Service

    from taskleak import _core
    from taskleak.monitor.prometheus import register

    watch = taskleak.watch_blocking(0.1)
    svc = Service()  # a loop on the thread "service-loop": its stable label
    mon = taskleak.Monitor(interval=60)
    reg = prometheus_client.CollectorRegistry()
    register(mon, reg)
    httpd, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=reg)
    url = f"http://127.0.0.1:{httpd.server_port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()

    try:
        mon.sample_now()
        idle = _live(scrape(), "service-loop")
        assert idle == {LIVE[0]: 0.0, LIVE[1]: 0.0}
        svc.loop.call_soon_threadsafe(time.sleep, 1.5)
        deadline = time.monotonic() + 5
        while True:
            text = scrape()
            stuck = _live(text, "service-loop")
            if stuck[LIVE[0]] == 1.0 and stuck[LIVE[1]] >= 0.4 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert stuck[LIVE[0]] == 1.0 and 0.4 <= stuck[LIVE[1]] < 1.5, stuck
        # The same help and type lines as the native /metrics renders.
        assert _help_lines(text) == _help_lines(_core.live_blocked_now_metrics())
        assert len(_help_lines(text)) == 4
        deadline = time.monotonic() + 5
        while _live(scrape(), "service-loop")[LIVE[0]] != 0.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _live(scrape(), "service-loop") == {LIVE[0]: 0.0, LIVE[1]: 0.0}
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
        svc.stop()
        watch.stop()


def test_opentelemetry_reads_the_live_gauges_while_the_loop_sleeps():
    """The same with the real OpenTelemetry SDK (in-memory reader)."""
    pytest.importorskip("opentelemetry.sdk")
    from live_service import Service
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from taskleak.monitor.otel import instrument

    def gauges(reader: InMemoryMetricReader) -> dict:
        out = {}
        data = reader.get_metrics_data()
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for p in m.data.data_points:
                        if dict(p.attributes) == {"loop": "service-loop"}:
                            out[m.name] = (m.unit, p.value)
        return out

    now, secs = "taskleak.event_loop.blocked_now", "taskleak.event_loop.current_block.duration"
    mon = taskleak.Monitor(interval=60)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrument(mon, provider)  # before anything watches: declared, observed once it does
    watch = taskleak.watch_blocking(0.1)
    svc = Service()
    try:
        for _ in range(100):
            idle = gauges(reader)
            if now in idle:
                break
            time.sleep(0.02)
        assert idle[now] == ("1", 0) and idle[secs] == ("s", 0.0)
        svc.loop.call_soon_threadsafe(time.sleep, 1.5)
        deadline = time.monotonic() + 5
        while True:
            stuck = gauges(reader)
            if stuck[now][1] == 1 and stuck[secs][1] >= 0.4 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert stuck[now] == ("1", 1) and 0.4 <= stuck[secs][1] < 1.5, stuck
    finally:
        svc.stop()
        watch.stop()
        provider.shutdown()
