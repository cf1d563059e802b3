"""Exporters against the real libraries: Prometheus text (parsed by
prometheus_client's own parser), the prometheus_client collector, and
OpenTelemetry's SDK with its in-memory reader."""

import asyncio
import gc

import pytest

import taskleak
from taskleak.monitor.prometheus import TaskleakCollector, register

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

NAMES = {
    "taskleak_asyncio_tasks",
    "taskleak_asyncio_tasks_created",
    "taskleak_asyncio_task_losses",
    "taskleak_asyncio_group_tasks",
    "taskleak_asyncio_stale_tasks",
    "taskleak_sockets_peer_closed",
    "taskleak_streams_peer_open",
    "taskleak_event_loop_lag_seconds",
    "taskleak_leak_suspected",
    "taskleak_alerts",
}

HELD = []


@pytest.fixture(autouse=True)
def collect_our_garbage():
    # The SDKs leave reference cycles behind; collect them here rather than
    # in the middle of a later test that counts objects (test_heap's growth()).
    yield
    gc.collect()


@pytest.fixture
def mon():
    taskleak.install()

    async def stuck():
        await asyncio.Event().wait()

    async def main():
        # Allow-list globs match per group (creation site x coroutine): the
        # heartbeat has a line of its own, as it would in a service.
        HELD.append(asyncio.create_task(stuck(), name="heartbeat-0"))
        for _ in range(6):
            HELD.append(asyncio.create_task(stuck()))
        m = taskleak.Monitor(allow={"heartbeat-*": 1}, window=5, detector_options=dict(trend_blocks=3, horizon=60))
        m.sample_now()
        await asyncio.sleep(0.01)
        m.sample_now()
        return m

    m = asyncio.run(main())
    yield m
    HELD.clear()


def _samples(families):
    out = {}
    for fam in families:
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_text_exposition_parses_and_has_the_contract_names(mon):
    text = mon.metrics_text()
    fams = list(text_string_to_metric_families(text))
    # The watchdog's counters and live gauges join once any loop was watched
    # in this process (earlier tests may have): tests/test_export_blocking.py covers them.
    blocked = {
        "taskleak_event_loop_blocked_seconds",
        "taskleak_event_loop_blocks",
        "taskleak_event_loop_blocked_now",
        "taskleak_event_loop_current_block_seconds",
    }
    assert {f.name for f in fams} - blocked == NAMES
    types = {f.name: f.type for f in fams}
    assert types["taskleak_asyncio_tasks_created"] == "counter"
    assert types["taskleak_asyncio_tasks"] == "gauge"
    vals = _samples(fams)
    assert types["taskleak_sockets_peer_closed"] == "gauge" and vals[("taskleak_sockets_peer_closed", ())] >= 0
    assert types["taskleak_streams_peer_open"] == "gauge" and vals[("taskleak_streams_peer_open", ())] == 0
    assert vals[("taskleak_asyncio_tasks", (("allowlisted", "false"), ("state", "pending")))] >= 6
    assert vals[("taskleak_asyncio_tasks", (("allowlisted", "true"), ("state", "pending")))] == 1
    assert ("taskleak_asyncio_task_losses_total", (("kind", "gc-pending"),)) in vals
    # The default pager: stale tasks, not the pending count (count_rules=False).
    assert vals[("taskleak_leak_suspected", (("detector", "rise"), ("signal", "stale")))] == 0
    assert ("taskleak_leak_suspected", (("detector", "trend"), ("signal", "pending"))) not in vals
    assert ("taskleak_asyncio_stale_tasks", (("allowlisted", "false"), ("group", "other"))) not in vals
    assert any(k[0] == "taskleak_asyncio_stale_tasks" and v == 0 for k, v in vals.items())
    # No pid label, no process_* duplicates.
    assert "pid" not in text and "process_" not in text


def test_collector_matches_the_text_exposition(mon):
    reg = prometheus_client.CollectorRegistry(auto_describe=True)
    register(mon, reg)
    out = prometheus_client.generate_latest(reg).decode()
    from_client = _samples(text_string_to_metric_families(out))
    from_text = _samples(text_string_to_metric_families(mon.metrics_text()))
    # prometheus_client adds *_created timestamps for counters; everything else is equal.
    from_client = {k: v for k, v in from_client.items() if not k[0].endswith("_created")}
    assert from_client == from_text
    assert 'taskleak_asyncio_group_tasks{allowlisted="false"' in out


def test_collector_with_the_global_registry_and_process_collector(mon):
    c = TaskleakCollector(mon)
    prometheus_client.REGISTRY.register(c)
    try:
        out = prometheus_client.generate_latest().decode()
        assert "taskleak_asyncio_tasks{" in out
        assert "process_resident_memory_bytes" in out  # theirs, not ours
    finally:
        prometheus_client.REGISTRY.unregister(c)


def test_group_label_values_are_escaped(mon):
    from taskleak.monitor.prometheus import _escape

    assert _escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_opentelemetry_observable_instruments(mon):
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from taskleak.monitor.otel import instrument

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrument(mon, provider)
    data = reader.get_metrics_data()
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {
        "taskleak.task.count",
        "taskleak.task.created",
        "taskleak.task.losses",
        "taskleak.task.group.count",
        "taskleak.leak.suspected",
        "taskleak.alerts",
    } <= set(metrics)
    count = metrics["taskleak.task.count"]
    assert count.unit == "{task}"
    points = {tuple(sorted(p.attributes.items())): p.value for p in count.data.data_points}
    assert points[(("allowlisted", "false"), ("state", "pending"))] >= 6
    assert points[(("allowlisted", "true"), ("state", "pending"))] == 1
    created = metrics["taskleak.task.created"]
    assert created.data.is_monotonic and created.data.data_points[0].value >= 7
    provider.shutdown()


def test_grafana_dashboard_queries_only_exported_metrics():
    import json
    import os
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dash = json.load(open(os.path.join(root, "deploy", "grafana", "taskleak-dashboard.json")))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs and dash["uid"] == "taskleak-overview"
    used = {m for e in exprs for m in re.findall(r"\b(taskleak_[a-z_]+)", e)}
    exported = {
        "taskleak_asyncio_tasks",
        "taskleak_asyncio_tasks_created_total",
        "taskleak_asyncio_task_losses_total",
        "taskleak_asyncio_group_tasks",
        "taskleak_asyncio_stale_tasks",
        "taskleak_sockets_peer_closed",
        "taskleak_streams_peer_open",
        "taskleak_event_loop_lag_seconds",
        "taskleak_leak_suspected",
        "taskleak_alerts_total",
        "taskleak_event_loop_blocked_seconds_total",
        "taskleak_event_loop_blocks_total",
        "taskleak_event_loop_current_block_seconds",
    }
    assert used <= exported and len(used) >= 6
    # Every family a page or a panel is for has a panel.
    assert {
        "taskleak_event_loop_current_block_seconds",
        "taskleak_asyncio_stale_tasks",
        "taskleak_sockets_peer_closed",
        "taskleak_streams_peer_open",
    } <= used
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
