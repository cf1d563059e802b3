"""The shipped fleet rules end to end: a real Prometheus and a real
Alertmanager (Debian's ``prometheus`` and ``prometheus-alertmanager``,
installed with apt-get when missing and possible) scrape a small fleet of
live processes (tests/fleet_service.py) on loopback:

* ``leak`` holds one never-finishing task every two samples from its start;
* ``lost`` drops pending tasks that the collector destroys;
* ``blocked`` blocks its loop 0.5 s in every 0.7 s (with the watchdog on);
* ``clean`` has a 20x request ramp and 60 keep-alive tasks opened at once,
  and this test polls its /api/tasks, /api/snapshot and /tasks.txt every
  0.2 s (what the dashboard and ``taskleak dump`` do).

Prometheus loads deploy/prometheus/taskleak.rules.yml exactly as shipped
(``TASKLEAK_FLEET_RULES=path`` loads another file instead: how to check that
this test fails without the verdict rule). Alertmanager sends to a webhook
receiver in this test. The leak's alert must reach the receiver naming the
leak's creation line; the lost tasks' alerts too (the loss counter's, and
the lost-tasks detector's verdict with their line), and the blocked loop's;
the clean instance must never have a firing alert, in Prometheus or at the
receiver.

The fleet's monitors sample every 50 ms, so their in-process detectors live
200x faster than at the default 10 s; Prometheus, Alertmanager and the
rules' ``for:`` run on real time (1 s scrapes and evaluations, 1 s
group_wait), so the time from a process's start to the receiver is the
detector's 200x-fast part plus the rules' and Alertmanager's real delays.
Everything started here is stopped at the end, whatever happened.

once_per_ci (tests/conftest.py): what this adds to the rest of the suite is
the rules, Prometheus and Alertmanager end to end, none of which depends on
the CPython version (the metrics the rules read are tested on every version
by test_export.py, test_export_blocking.py and test_monitor.py), so .ci/run
runs it on 3.11 and 3.15 only.
"""

from __future__ import annotations

import http.server
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_RULES = os.path.join(ROOT, "deploy", "prometheus", "taskleak.rules.yml")
SERVICE = os.path.join(ROOT, "tests", "fleet_service.py")

# How long the clean instance is watched at least: 1,400 of its samples at
# 50 ms (issue 18's "no alert in 1,400 samples"), while Prometheus scrapes it.
CLEAN_WATCH_S = 70.0
# Give up waiting for the leak's alert after this long (the measured time is
# in docs/monitoring.md: 41 s here).
DEADLINE_S = 150.0


def _which_or_install(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
            env=env,
            capture_output=True,
            timeout=900,
        )
        path = shutil.which(binary)
    if path is None:
        pytest.fail(
            f"{binary} not found: install Debian's {package!r} package (apt-get install {package}), "
            f"or run tools/ensure_ci_packages.sh"
        )
    return path


def _server_env() -> dict[str, str]:
    """The environment for Prometheus and Alertmanager: this one without the
    sanitizer runtime that `make test-asan` preloads for the Python under
    test (Go programs are not what it checks, and ASan's shadow memory is
    no place for the Go runtime)."""
    drop = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _service_env() -> dict[str, str]:
    """The environment for the fleet's services. Under `make test-asan` they
    run with the sanitizer like the rest of the suite, but without its
    allocator quarantine: ASan keeps freed memory unreused (256 MB by
    default), so a clean service's RSS climbs for minutes and its monitor's
    RSS trend detector rightly calls that memory growth. What this test
    judges is the alerting, not the instrumented allocator."""
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env or "libasan" in env.get("LD_PRELOAD", ""):
        opts = [o for o in env.get("ASAN_OPTIONS", "").split(":") if o and not o.startswith("quarantine_size_mb=")]
        env["ASAN_OPTIONS"] = ":".join(opts + ["quarantine_size_mb=0", "thread_local_quarantine_size_kb=0"])
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait_ready(url: str, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode} before it was ready")
        try:
            if _get(url, timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} not ready at {url} after {timeout}s")


class Receiver:
    """Alertmanager's webhook receiver: keeps every alert it is sent, with
    the monotonic time it arrived."""

    def __init__(self) -> None:
        self.alerts: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.monotonic()
                with outer.lock:
                    for a in json.loads(body).get("alerts", []):
                        outer.alerts.append((now, a))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)
        self.thread.start()

    def received(self) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return list(self.alerts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class Processes:
    """Every process this test starts, each in a session of its own, so that
    the end of the test stops exactly these (by their ids) and nothing else."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], log: str, **kw: Any) -> subprocess.Popen:
        """Start argv with its stderr (and stdout, unless given) in the file log."""
        with open(log, "wb") as f:
            kw.setdefault("stdout", f)
            p = subprocess.Popen(argv, start_new_session=True, stderr=f, **kw)
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        end = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
            for f in (p.stdout, p.stderr):
                if f is not None:
                    f.close()


def _read_line(p: subprocess.Popen, timeout: float) -> str:
    assert p.stdout is not None
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    assert ready, f"{p.args} printed no URL within {timeout}s"
    return p.stdout.readline().decode().strip()


def _creation_line(marker: str) -> int:
    with open(SERVICE) as f:
        for i, line in enumerate(f, 1):
            if line.rstrip().endswith(f"# {marker}"):
                return i
    raise AssertionError(f"no '# {marker}' line in {SERVICE}")


@pytest.fixture
def procs():
    ps = Processes()
    yield ps
    ps.stop_all()


@pytest.mark.once_per_ci
def test_fleet_alerts_end_to_end(procs, tmp_path):
    prometheus = _which_or_install("prometheus", "prometheus")
    alertmanager = _which_or_install("prometheus-alertmanager", "prometheus-alertmanager")
    rules = os.environ.get("TASKLEAK_FLEET_RULES") or SHIPPED_RULES
    receiver = Receiver()
    stop_polling = threading.Event()
    try:
        _run_fleet(procs, tmp_path, prometheus, alertmanager, rules, receiver, stop_polling)
    finally:
        stop_polling.set()
        procs.stop_all()
        receiver.close()


def _run_fleet(
    procs: Processes,
    tmp: Any,
    prometheus: str,
    alertmanager: str,
    rules: str,
    receiver: Receiver,
    stop_polling: threading.Event,
) -> None:
    # -- Alertmanager: no gossip (empty cluster address), short waits so that
    # the first notification leaves a second after the alert arrives.
    am_port = _free_port()
    (tmp / "alertmanager.yml").write_text(f"""
route:
  receiver: webhook
  group_by: [alertname, instance]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: http://127.0.0.1:{receiver.port}/
        send_resolved: false
""")
    am = procs.start(
        [
            alertmanager,
            f"--config.file={tmp / 'alertmanager.yml'}",
            f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        log=tmp / "alertmanager.log",
        env=_server_env(),
    )
    # -- Prometheus: targets from a file it watches, written once the fleet
    # has its ports (a deploy into a running monitoring stack).
    prom_port = _free_port()
    targets = tmp / "targets.json"
    targets.write_text("[]")
    (tmp / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {json.dumps(str(rules))}
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am_port}"]
scrape_configs:
  - job_name: fleet
    file_sd_configs:
      - files: [{json.dumps(str(targets))}]
        refresh_interval: 1s
""")
    prom = procs.start(
        [
            prometheus,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        log=tmp / "prometheus.log",
        env=_server_env(),
    )
    prom_url = f"http://127.0.0.1:{prom_port}"
    _wait_ready(f"http://127.0.0.1:{am_port}/-/ready", am, "alertmanager")
    _wait_ready(f"{prom_url}/-/ready", prom, "prometheus")

    # -- The fleet, started together; the clock of each starts at its Popen.
    started: dict[str, float] = {}
    urls: dict[str, str] = {}
    children: dict[str, subprocess.Popen] = {}
    for shape in ("leak", "lost", "clean", "blocked"):
        started[shape] = time.monotonic()
        # cwd=ROOT: the creation sites read tests/fleet_service.py:LINE
        children[shape] = procs.start(
            [sys.executable, SERVICE, shape],
            log=tmp / f"{shape}.log",
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env=_service_env(),
        )
    for shape, p in children.items():
        urls[shape] = _read_line(p, 60)
    inst = {shape: urllib.parse.urlsplit(u).netloc for shape, u in urls.items()}
    tmp_targets = tmp / "targets.json.new"
    tmp_targets.write_text(json.dumps([{"targets": sorted(inst.values())}]))
    os.replace(tmp_targets, targets)

    # -- The clean instance's dashboard and API, polled every 0.2 s.
    polls = {"ok": 0, "failed": 0}

    def poll() -> None:
        while not stop_polling.is_set():
            for path in ("api/tasks", "api/snapshot", "tasks.txt"):
                try:
                    ok = _get(urls["clean"] + path, timeout=5)[0] == 200
                except OSError:
                    ok = False
                polls["ok" if ok else "failed"] += 1
            stop_polling.wait(0.2)

    poller = threading.Thread(target=poll, name="dashboard-poller", daemon=True)
    poller.start()

    # -- Watch until the leak's and the lost tasks' alerts arrived and the
    # clean instance has lived CLEAN_WATCH_S; every second, Prometheus'
    # alerts (pending and firing) are recorded.
    leak_site = f"fleet_service.py:{_creation_line('LEAK-SITE')} in leak"
    seen_in_prometheus: list[dict[str, Any]] = []
    # "alertname shape state" -> seconds from that instance's start to the
    # first time Prometheus showed it so (where the time goes)
    first_seen: dict[str, float] = {}
    leak_at: float | None = None
    lost_at: float | None = None
    blocked_at: float | None = None
    while time.monotonic() - started["leak"] < DEADLINE_S:
        for shape, p in children.items():
            assert p.poll() is None, f"{shape} service exited with {p.returncode}: {(tmp / f'{shape}.log').read_text()}"
        assert prom.poll() is None and am.poll() is None, "prometheus or alertmanager exited"
        status, body = _get(f"{prom_url}/api/v1/alerts")
        assert status == 200
        now_alerts = json.loads(body)["data"]["alerts"]
        seen_in_prometheus += now_alerts
        for a in now_alerts:
            shape = next((k for k, v in inst.items() if v == a["labels"].get("instance")), "?")
            key = f"{a['labels'].get('alertname')} {shape} {a['state']}"
            first_seen.setdefault(key, round(time.monotonic() - started.get(shape, 0.0), 1))
        for at, a in receiver.received():
            labels = a["labels"]
            if (
                leak_at is None
                and labels.get("alertname") == "TaskleakLeakSuspected"
                and labels.get("instance") == inst["leak"]
                and labels.get("site", "").endswith(leak_site)
            ):
                leak_at = at
            if (
                lost_at is None
                and labels.get("alertname") == "TaskleakTasksLost"
                and labels.get("instance") == inst["lost"]
            ):
                lost_at = at
            if (
                blocked_at is None
                and labels.get("alertname") == "TaskleakEventLoopBlocked"
                and labels.get("instance") == inst["blocked"]
            ):
                blocked_at = at
        arrived = leak_at is not None and lost_at is not None and blocked_at is not None
        arrived = arrived and any(
            a["labels"].get("alertname") == "TaskleakLeakSuspected" and a["labels"].get("instance") == inst["lost"]
            for _, a in receiver.received()
        )
        if arrived and time.monotonic() - started["clean"] >= CLEAN_WATCH_S:
            break
        time.sleep(1.0)
    stop_polling.set()
    poller.join(10)

    received = receiver.received()
    report = {
        "leak: start to receiver (s)": None if leak_at is None else round(leak_at - started["leak"], 1),
        "lost: start to receiver (s)": None if lost_at is None else round(lost_at - started["lost"], 1),
        "blocked: start to receiver (s)": None if blocked_at is None else round(blocked_at - started["blocked"], 1),
        "first seen in prometheus (s)": first_seen,
        "clean watched (s)": round(time.monotonic() - started["clean"], 1),
        "dashboard polls ok/failed": (polls["ok"], polls["failed"]),
        "received": sorted(
            {
                (a["labels"].get("alertname"), a["labels"].get("instance"), a["labels"].get("site", ""))
                for _, a in received
            }
        ),
    }
    print("fleet:", json.dumps(report, indent=1))

    # The leak's alert reached the receiver naming its creation line, in a
    # label and in the text an operator reads.
    assert leak_at is not None, (
        f"no TaskleakLeakSuspected for the leak ({inst['leak']}, site ...{leak_site}) reached the receiver: {report}"
    )
    leak_alert = next(
        a
        for at, a in received
        if at == leak_at
        and a["labels"].get("instance") == inst["leak"]
        and a["labels"].get("alertname") == "TaskleakLeakSuspected"
    )
    assert leak_site in leak_alert["annotations"]["summary"], leak_alert
    assert leak_alert["labels"]["severity"] == "warning"
    assert "taskleak dump" in leak_alert["annotations"]["runbook"]
    # The lost tasks were paged for by themselves, no detector needed.
    assert lost_at is not None, f"no TaskleakTasksLost for {inst['lost']}: {report}"
    lost_alert = next(
        a
        for at, a in received
        if at == lost_at
        and a["labels"].get("instance") == inst["lost"]
        and a["labels"].get("alertname") == "TaskleakTasksLost"
    )
    assert lost_alert["labels"]["kind"] == "gc-pending"
    # ... and the monitor's lost-tasks detector (signal="lost") names their
    # creation line, through the same verdict rule as the leak.
    lost_site = f"fleet_service.py:{_creation_line('LOST-SITE')} in lose"
    assert any(
        a["labels"].get("alertname") == "TaskleakLeakSuspected"
        and a["labels"].get("instance") == inst["lost"]
        and a["labels"].get("signal") == "lost"
        and a["labels"].get("site", "").endswith(lost_site)
        for _, a in received
    ), report
    # The blocked loop, under the same label as its lag gauge (the thread's name).
    assert blocked_at is not None, f"no TaskleakEventLoopBlocked for {inst['blocked']}: {report}"
    blocked_alert = next(
        a
        for at, a in received
        if at == blocked_at
        and a["labels"].get("instance") == inst["blocked"]
        and a["labels"].get("alertname") == "TaskleakEventLoopBlocked"
    )
    assert blocked_alert["labels"]["loop"] == "MainThread", blocked_alert

    # The clean instance was really scraped all along...
    status, body = _get(
        f"{prom_url}/api/v1/query?"
        + urllib.parse.urlencode(
            {
                "query": f'count_over_time(taskleak_asyncio_tasks{{instance="{inst["clean"]}", state="pending", '
                f'allowlisted="false"}}[5m])'
            }
        )
    )
    scraped = json.loads(body)["data"]["result"]
    assert scraped and float(scraped[0]["value"][1]) >= 0.5 * CLEAN_WATCH_S, scraped
    # three paths every 0.2 s would be 1,050 answers in 70 s; each takes
    # some time on a busy service, a quarter of that is plenty of looking
    assert polls["ok"] >= 3 * CLEAN_WATCH_S / 0.2 / 4 and polls["failed"] == 0, polls
    # ... and never alerted: nothing firing for it in Prometheus, nothing at
    # the receiver, and its own monitor raised nothing either.
    firing = [a for a in seen_in_prometheus if a["labels"].get("instance") == inst["clean"] and a["state"] == "firing"]
    assert not firing, firing
    assert not [a for _, a in received if a["labels"].get("instance") == inst["clean"]]
    own = json.loads(_get(urls["clean"] + "api/alerts")[1])
    assert not own["alerts"], own["alerts"][:3]
