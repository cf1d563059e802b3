"""A real aiohttp service stuck in a GIL-holding C call, asked from outside.

The service (a child process: ``service`` mode) runs aiohttp.web with
taskleak.serve() and watch_blocking(0.1). This script drives it: a load of
~30 requests a second on ``/``, and a dashboard poll of ``/api/tasks``,
``/api/blocked``, ``/metrics`` and ``/`` every 0.5 s. Ten seconds in, one
request validates its input with a backtracking ``re.match(r"(a+)+$")``,
which holds the GIL for several seconds (``--n`` sizes it: each extra
character doubles it; 28 is ~15 s here). With ``--prometheus`` a real
Prometheus (the ``prometheus`` binary on PATH) scrapes the endpoint every
second with a 1 s timeout, and the script prints ``up`` and the live gauges
it recorded.

    .venv/py3.11/bin/python bench/aiohttp_stall_service.py --prometheus
    .venv/py3.11/bin/python bench/aiohttp_stall_service.py --uvloop --n 26

What to expect: during the stall ``/metrics``, ``/api/blocked`` and the
dashboard's page answer in milliseconds (native), ``/api/tasks`` answers 503
in ~1 s naming ``aiohttp_stall_service.py:LINE in validate``, Prometheus
keeps ``up`` at 1 and sees ``taskleak_event_loop_blocked_now`` at 1. Needs
aiohttp (and uvloop for ``--uvloop``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

PATTERN = re.compile(r"(a+)+$")


async def validate(text: str) -> bool:
    return PATTERN.match(text) is not None  # backtracking in C: holds the GIL


def service(app_port: int, debug_port: int, use_uvloop: bool) -> None:
    from aiohttp import web

    import taskleak

    async def hello(request: web.Request) -> web.Response:
        await asyncio.sleep(0.01)
        return web.Response(text="ok")

    async def check(request: web.Request) -> web.Response:
        return web.Response(text=str(await validate("a" * int(request.query["n"]) + "!")))

    async def main() -> None:
        taskleak.install()
        taskleak.watch_blocking(0.1)
        srv = taskleak.serve(port=debug_port, interval=0.5)
        app = web.Application()
        app.router.add_get("/", hello)
        app.router.add_get("/validate", check)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", app_port).start()
        print("ready", srv.url, flush=True)
        await asyncio.Event().wait()

    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def drive(app_port: int, debug_port: int, n: int) -> tuple[list[tuple], float, float, int, int]:
    import aiohttp

    polls: list[tuple] = []
    stop = asyncio.Event()
    t0 = time.monotonic()
    errors = 0

    async def load(s: aiohttp.ClientSession) -> int:
        nonlocal errors
        done = 0
        while not stop.is_set():
            try:
                async with s.get(f"http://127.0.0.1:{app_port}/") as r:
                    await r.read()
                    done += 1
            except aiohttp.ClientError:
                errors += 1
            await asyncio.sleep(0.02)
        return done

    async def dashboard(s: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            for path in ("/api/tasks", "/api/blocked", "/metrics", "/"):
                t = time.monotonic()
                async with s.get(f"http://127.0.0.1:{debug_port}{path}") as r:
                    body = await r.read()
                polls.append((t - t0, path, r.status, time.monotonic() - t, body[:200]))
            await asyncio.sleep(0.5)

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        loaders = asyncio.gather(load(s), dashboard(s))
        await asyncio.sleep(10)
        start = time.monotonic() - t0
        async with s.get(f"http://127.0.0.1:{app_port}/validate", params={"n": str(n)}) as r:
            await r.read()
        end = time.monotonic() - t0
        await asyncio.sleep(5)
        stop.set()
        done, _ = await loaders
    return polls, start, end, done, errors


def prometheus_up(tmp: str, debug_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cfg = os.path.join(tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            f"scrape_configs: [{{job_name: app, static_configs: [{{targets: ['127.0.0.1:{debug_port}']}}]}}]\n"
        )
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={cfg}",
            f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, port


def query_range(port: int, query: str, seconds: int) -> list[tuple[str, list[str]]]:
    now = time.time()
    args = urllib.parse.urlencode({"query": query, "start": now - seconds, "end": now, "step": 1})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query_range?{args}", timeout=10) as r:
        doc = json.load(r)
    return [(s["metric"].get("loop", ""), [v[1] for v in s["values"]]) for s in doc["data"]["result"]]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "service":
        service(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "uvloop")
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=28, help="regex subject length (each +1 doubles the stall)")
    p.add_argument("--uvloop", action="store_true", help="run the service on uvloop")
    p.add_argument("--prometheus", action="store_true", help="scrape it with a real Prometheus")
    a = p.parse_args()
    if a.prometheus and shutil.which("prometheus") is None:
        p.error("--prometheus needs the prometheus binary on PATH (Debian: apt-get install prometheus)")
    app_port, debug_port = free_port(), free_port()
    child = subprocess.Popen(
        [sys.executable, __file__, "service", str(app_port), str(debug_port), "uvloop" if a.uvloop else "asyncio"],
        stdout=subprocess.PIPE,
        text=True,
    )
    tmp = tempfile.mkdtemp(prefix="taskleak-stall-")
    prom = None
    try:
        assert child.stdout is not None and child.stdout.readline().startswith("ready")
        if a.prometheus:
            prom, prom_port = prometheus_up(tmp, debug_port)
        polls, start, end, done, errors = asyncio.run(drive(app_port, debug_port, a.n))
        print(f"stall from {start:.2f} s to {end:.2f} s ({end - start:.2f} s); load: {done} requests, {errors} errors")
        print(
            "during the stall, per URL: answers, statuses, median and max seconds, a first body line (a 503's if any)"
        )
        for path in ("/metrics", "/api/blocked", "/", "/api/tasks"):
            seen = [q for q in polls if q[1] == path and start + 0.5 < q[0] < end - 0.5]
            if not seen:
                continue
            times = [q[3] for q in seen]
            statuses = sorted({q[2] for q in seen})
            shown = next((q for q in seen if q[2] != 200), seen[-1])  # a 503 says more than a 200
            first = shown[4].split(b"\n")[0].decode("utf-8", "replace")[:100]
            print(
                f"  {path:13} {len(seen):3} {statuses} median {statistics.median(times):.3f} "
                f"max {max(times):.3f}  {first}"
            )
        with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/api/blocked", timeout=5) as r:
            ep = json.load(r)["episodes"][-1]
        site = ep["site"]
        print(
            f"episode: {ep['duration']:.2f} s, {ep['samples']} samples, {ep['running']}, "
            f"at {os.path.basename(site['filename'])}:{site['lineno']} in {site['function']}"
        )
        if prom is not None:
            span = int(end) + 10  # the whole run: before, during and after the stall
            for q in ("up", "taskleak_event_loop_blocked_now", "taskleak_event_loop_current_block_seconds"):
                for loop, values in query_range(prom_port, q, span):
                    print(f"  prometheus {q}{{{loop}}}: {' '.join(v[:5] for v in values)}")
    finally:
        child.kill()
        child.wait()
        if prom is not None:
            prom.terminate()
            prom.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
