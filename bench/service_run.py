"""What the service benches share: the entry point, the run itself, with the dashboard polled
the whole time (aiohttp_stale_service.py, uvicorn_ws_service.py), and the
summary of what the monitor saw (those two, hung_handlers_service.py and
backlog_service.py). Imported as a sibling: ``python bench/x.py`` puts
bench/ first on sys.path."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from typing import Any


def service_main(
    doc: str,
    run_client: Callable[[list[str]], object],
    run_server: Callable[[argparse.Namespace], int],
    more_args: Callable[[argparse.ArgumentParser], object] | None = None,
) -> int:
    """A service bench's entry point. ``x.py client ARGS...`` (how the server
    starts its load) runs ``run_client(ARGS)``; anything else parses the
    options every service bench has (--leak, --samples) and ``more_args``'
    ones, and runs ``run_server`` with the random seed fixed."""
    if len(sys.argv) >= 3 and sys.argv[1] == "client":
        try:
            run_client(sys.argv[2:])
        except KeyboardInterrupt:
            pass
        return 0
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--leak", action="store_true")
    ap.add_argument("--samples", type=int, default=1400)
    if more_args is not None:
        more_args(ap)
    args = ap.parse_args()
    random.seed(18)
    return run_server(args)


async def run_polled(
    mon: Any, live_url: str, samples: int, stop_on_alert: bool, client: subprocess.Popen[Any]
) -> dict[str, int]:
    """Until the monitor has ``samples`` samples (or, with ``stop_on_alert``,
    its first alert), poll the dashboard's /api/tasks every 0.2 s from a
    thread, as a browser tab left open does; then stop the poller and the
    client process. The polls that answered and those that failed."""
    polls = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"{live_url.rstrip('/')}/api/tasks", timeout=5) as r:
                    json.load(r)
                polls["ok"] += 1
            except Exception:
                polls["failed"] += 1
            stop.wait(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        while len(mon.samples()) < samples and not (stop_on_alert and mon.alerts()):
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        poller.join(10)
        client.terminate()
        client.wait(10)
    return polls


def print_stale(mon: Any, polls: dict[str, int], seconds: float) -> dict[str, int]:
    """The run's size, the dashboard's polls, and the five groups whose
    stale count went highest; the highest stale count per group label."""
    samples = mon.samples()
    print(
        f"samples {len(samples)} in {seconds:.0f} s; dashboard polls ok {polls['ok']}, "
        f"failed {polls['failed']}; pending went from {samples[0].pending} to {max(s.pending for s in samples)}"
    )
    stale: dict[str, int] = {}
    for s in samples:
        for g in s.groups:
            stale[g.label] = max(stale.get(g.label, 0), g.stale)
    for label, n in sorted(stale.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  max stale {n:4d}  {label}")
    return stale


def print_alerts(mon: Any, first_leak: list[int]) -> int:
    """When the first task leaked, then every alert with the sample it came
    at; the exit status (1 if anything alerted)."""
    times = [s.time for s in mon.samples()]
    if first_leak:
        print(f"first task leaked at sample {first_leak[0]} (the client process starts after the monitor)")
    alerts = mon.alerts()
    print(f"alerts: {len(alerts)}")
    for a in alerts:
        at = times.index(a.time) if a.time in times else "?"
        print(f"  at sample {at}: {a.text}")
    return 1 if alerts else 0
