"""What does the debug endpoint (taskleak.serve) cost, and how fast does it answer?

1. Latency of each endpoint with N pending tasks in the process (N = 1,000,
   10,000, 100,000 in 200 creation sites), median of REPEATS requests, each
   with the 1-second answer cache cleared first (the cost a fresh snapshot has).
   Printed next to ``taskleak.dump()`` into a string: the same work without HTTP.
2. The event loop's task create+complete throughput while a client polls
   /api/tasks every 100 ms, side by side with no server at all, with the
   monitor alone (what serve() starts) and with an idle server (interleaved
   rounds, medians).
3. Latency percentiles of the natively answered URLs (/metrics, /api/blocked,
   /api/info, the dashboard's / and /assets/dashboard.js) while the event loop churns tasks at 100% CPU (the GIL convoy
   that made /metrics take seconds), asked by a client in another process;
   /api/samples (answered by Python) alongside. Goal: p99 <= 100 ms.

    .venv/py3.11/bin/python bench/bench_live_endpoint.py [--quick]
"""

from __future__ import annotations

import asyncio
import io
import statistics
import sys
import threading
import time
import urllib.request

import taskleak

REPEATS = 5


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url) as r:
        return r.read()


async def _park(ev: asyncio.Event) -> None:
    await ev.wait()


def latency(n: int) -> None:
    src = "\n".join(
        f"def make_{i}(coro, ev, k):\n    return [asyncio.ensure_future(coro(ev)) for _ in range(k)]"
        for i in range(200)
    )
    ns: dict = {"asyncio": asyncio}
    exec(compile(src, "sites.py", "exec"), ns)

    async def main() -> None:
        ev = asyncio.Event()
        tasks = [t for i in range(200) for t in ns[f"make_{i}"](_park, ev, n // 200)]
        await asyncio.sleep(0)
        srv = taskleak.serve(interval=3600)
        rows = []
        try:
            for path in ("/api/tasks", "/tasks.txt", "/api/snapshot", "/metrics", "/api/samples"):
                times, size = [], 0
                for _ in range(REPEATS):
                    srv._endpoints._cache.clear()
                    t0 = time.perf_counter()
                    size = len(await asyncio.to_thread(_get, srv.url.rstrip("/") + path))
                    times.append(time.perf_counter() - t0)
                rows.append((path, statistics.median(times), size))
            times = []
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                buf = io.StringIO()
                await asyncio.to_thread(taskleak.dump, buf, growth=False)
                times.append(time.perf_counter() - t0)
            rows.append(("taskleak.dump() (no HTTP)", statistics.median(times), len(buf.getvalue())))
        finally:
            srv.close()
            ev.set()
            await asyncio.gather(*tasks)
        print(f"\n{n:,} pending tasks in 200 groups")
        for path, t, size in rows:
            print(f"  {path:<28} {t * 1000:9.1f} ms  {size / 1024:9.1f} KiB")

    asyncio.run(main())


async def _noop() -> None:
    pass


def throughput(rounds: int, per_round: int) -> None:
    async def run_batch() -> float:
        t0 = time.perf_counter()
        for _ in range(per_round // 100):
            await asyncio.gather(*[asyncio.get_running_loop().create_task(_noop()) for _ in range(100)])
        return per_round / (time.perf_counter() - t0)

    results: dict = {"no server": [], "monitor only": [], "idle server": [], "polled every 100 ms": []}
    for _ in range(rounds):
        for variant in results:
            srv = None
            mon = None
            stop = threading.Event()
            poller = None
            if variant != "no server":
                mon = taskleak.Monitor(interval=10).start()
            if variant not in ("no server", "monitor only"):
                srv = taskleak.serve(monitor=mon)
            if variant == "polled every 100 ms":

                def poll() -> None:
                    while not stop.is_set():
                        _get(srv.url.rstrip("/") + "/api/tasks")
                        stop.wait(0.1)

                poller = threading.Thread(target=poll)
                poller.start()
            try:
                results[variant].append(asyncio.run(run_batch()))
            finally:
                stop.set()
                if poller is not None:
                    poller.join()
                if srv is not None:
                    srv.close()
                if mon is not None:
                    mon.stop()
    base = statistics.median(results["no server"])
    print(f"\ntask create+complete throughput (taskleak installed in every variant), median of {rounds} rounds")
    for variant, xs in results.items():
        m = statistics.median(xs)
        print(f"  {variant:<22} {m:12,.0f} tasks/s   {m / base:6.3f}x")


_CLIENT = r"""
import json, socket, sys, time
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1]); n = int(sys.argv[2])
def get(path):
    t = time.perf_counter()
    s = socket.create_connection((u.hostname, u.port), timeout=60)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    # Python's URLs may get the native 503 when the GIL does not come within
    # its bound (the convoy this section shows); the native ones never may.
    python = path.startswith("/api/samples")
    ok = data.startswith(b"HTTP/1.1 200") or (python and data.startswith(b"HTTP/1.1 503"))
    assert ok, data[:100]
    return time.perf_counter() - t, data.startswith(b"HTTP/1.1 503")
out = {}
busy = {}
for path in ("/metrics", "/api/blocked", "/api/info", "/", "/assets/dashboard.js", "/api/samples?limit=10"):
    ts = []
    busy[path] = 0
    for _ in range(n if not path.startswith("/api/samples") else max(10, n // 5)):
        dt, was_503 = get(path)
        ts.append(dt)
        busy[path] += was_503
        time.sleep(0.005)
    out[path] = ts
print(json.dumps({"times": out, "busy": busy}))
"""


def _pct(xs: list, q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def churning(n: int) -> None:
    import subprocess

    async def main() -> dict:
        srv = taskleak.serve(interval=1.0)
        watch = taskleak.watch_blocking(0.1)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLIENT, srv.url, str(n), stdout=subprocess.PIPE
        )
        out = asyncio.ensure_future(proc.communicate())
        churned = 0
        try:
            while not out.done():  # 100% CPU: tasks created and finished as fast as the loop goes
                await asyncio.gather(*[asyncio.get_running_loop().create_task(_noop()) for _ in range(100)])
                churned += 100
        finally:
            watch.stop()
            srv.close()
        import json

        doc = json.loads((await out)[0])
        doc["churned"] = churned
        return doc

    doc = asyncio.run(main())
    print(f"\nanswers while the loop churns tasks at 100% CPU ({doc['churned']:,} tasks churned meanwhile)")
    for path, ts in doc["times"].items():
        kind = "python" if path.startswith("/api/samples") else "native"
        busy = doc["busy"][path]
        print(
            f"  {path:<22} {kind:<6}  p50 {_pct(ts, 0.5) * 1000:8.2f} ms  p99 {_pct(ts, 0.99) * 1000:8.2f} ms  "
            f"max {max(ts) * 1000:8.2f} ms  ({len(ts)} requests"
            + (f", {busy} answered 503: Python did not get the GIL within 1 s)" if busy else ")")
        )


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds (what CI runs)")
    ap.add_argument("--churn-only", action="store_true", help="only part 3: the native URLs on a churning loop")
    args = ap.parse_args()
    quick = args.quick
    taskleak.install()
    if args.churn_only:
        churning(300)
        sys.exit(0)
    for n in (1_000, 10_000) if quick else (1_000, 10_000, 100_000):
        latency(n)
    throughput(3 if quick else 7, 20_000 if quick else 100_000)
    churning(100 if quick else 300)
