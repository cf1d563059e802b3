"""What each URL of the debug endpoint answers. Read-only: nothing here
changes the process (no cancel, no eval); every answer is bounded in size.

Expensive answers (a snapshot of every task) are computed by one client at
a time and shared for a second, or five times what they cost if that is
longer: many clients polling a process with 100,000 tasks cost it one
snapshot every few seconds, not one per client.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..diagnosis.why import why
from ..monitor.metrics import suspected_labels
from .blocked_loops import DEFAULT_EPISODES, MAX_EPISODES, blocked_payload
from .dashboard import ASSETS, asset
from .http_request import HttpError, Request
from .task_groups import find_task, snapshot_payload, take_snapshot, tasks_payload, tasks_text

__all__ = ["Endpoints", "Response", "PATHS", "MAX_BODY_BYTES", "static_paths"]

MAX_BODY_BYTES = 16 << 20
CACHE_SECONDS = 1.0

PATHS = (
    "/",
    "/metrics",
    "/api/info",
    "/api/samples",
    "/api/tasks",
    "/api/alerts",
    "/api/snapshot",
    "/api/why",
    "/api/blocked",
    "/tasks.txt",
)


def static_paths() -> list[str]:
    """The URLs whose answer is a file of the package, the same whatever the
    query and whenever asked (the dashboard's page and assets): the native
    thread serves them from bytes registered once."""
    return ["/", "/index.html"] + [f"/assets/{name}" for name in ASSETS]


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def _json(obj: Any) -> Response:
    return Response(200, "application/json", json.dumps(obj, default=str, allow_nan=False).encode())


def _version() -> str:
    # Not `from .. import __version__`: nothing below the package root takes from it.
    try:
        from importlib.metadata import version

        return version("taskleak")
    except Exception:
        return "unknown"


def _clean(x: Any) -> Any:
    """JSON has no NaN/Infinity: they become null."""
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _int_param(req: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = req.param(name, "")
    if raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise HttpError(400, f"parameter {name!r} must be an integer") from None
    if not lo <= v <= hi:
        raise HttpError(400, f"parameter {name!r} must be between {lo} and {hi}")
    return v


def _float_param(req: Request, name: str) -> float | None:
    raw = req.param(name, "")
    if raw == "":
        return None
    try:
        v = float(raw)
    except ValueError:
        raise HttpError(400, f"parameter {name!r} must be a number") from None
    if v != v:
        raise HttpError(400, f"parameter {name!r} must be a number")
    return v


class Endpoints:
    """Routes requests to answers over `monitor` (a :class:`taskleak.Monitor`)."""

    def __init__(self, monitor: Any, agent: bool = False) -> None:
        self.monitor = monitor
        self.agent = agent
        self.started = time.time()
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, Response]] = {}
        self._routes: dict[str, Callable[[Request], Response]] = {
            "/": self._page,
            "/index.html": self._page,
            "/metrics": self._metrics,
            "/api/info": self._info,
            "/api/samples": self._samples,
            "/api/tasks": self._cached(self._tasks),
            "/api/alerts": self._alerts,
            "/api/snapshot": self._cached(self._snapshot),
            "/api/why": self._why,
            "/api/blocked": self._blocked,
            "/tasks.txt": self._cached(self._text),
        }

    def handle(self, req: Request) -> Response:
        route = self._routes.get(req.path)
        if route is None and req.path.startswith("/assets/"):
            found = asset(req.path[len("/assets/") :])
            if found is not None:
                return Response(200, found[1], found[0])
        if route is None:
            raise HttpError(404, f"no such endpoint: {req.path[:100]} (try /, /metrics, /api/tasks, /tasks.txt)")
        resp = route(req)
        if len(resp.body) > MAX_BODY_BYTES:
            resp = Response(
                507,
                "text/plain; charset=utf-8",
                f"answer larger than {MAX_BODY_BYTES} bytes; ask for fewer groups\n".encode(),
            )
        return resp

    def _cached(self, fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
        # An answer is reused for CACHE_SECONDS, or for 5x what it cost to
        # compute if that is longer: however many clients poll, snapshots
        # take at most ~1/6 of the process's time (a listing of 100,000
        # tasks costs ~0.5 s, mostly holding the GIL).
        def run(req: Request) -> Response:
            key = (req.path, "&".join(f"{k}={v}" for k, v in sorted(req.query.items())))
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None and time.monotonic() < hit[0]:
                    return hit[1]
                t0 = time.monotonic()
                resp = fn(req)
                t1 = time.monotonic()
                if len(self._cache) > 16:
                    self._cache.clear()
                self._cache[key] = (t1 + max(CACHE_SECONDS, 5 * (t1 - t0)), resp)
                return resp

        return run

    # -- the answers -----------------------------------------------------------------
    def _page(self, req: Request) -> Response:
        found = asset("index.html")
        assert found is not None
        return Response(200, found[1], found[0])

    def _metrics(self, req: Request) -> Response:
        return Response(200, "text/plain; version=0.0.4; charset=utf-8", self.monitor.metrics_text().encode())

    def _info(self, req: Request) -> Response:
        argv = [a[:200] for a in sys.argv[:20]]
        return _json(
            {
                "pid": os.getpid(),
                "uid": os.geteuid(),
                "python": sys.version.split()[0],
                "implementation": sys.implementation.name,
                "taskleak": _version(),
                "argv": argv,
                "started": self.started,
                "interval": getattr(self.monitor, "interval", None),
                "agent": self.agent,
                "creation_sites": True,
            }
        )

    def _samples(self, req: Request) -> Response:
        since = _float_param(req, "since")
        limit = _int_param(req, "limit", 1000, 1, 100_000)
        samples = self.monitor.samples()
        if since is not None:
            samples = [s for s in samples if s.time > since]
        samples = samples[-limit:]
        return _json(
            {"interval": getattr(self.monitor, "interval", None), "samples": [_clean(s.to_dict()) for s in samples]}
        )

    def _alerts(self, req: Request) -> Response:
        limit = _int_param(req, "limit", 100, 1, 1000)
        alerts = self.monitor.alerts()[-limit:]
        return _json(
            {
                "alerts": [_clean(a.to_dict()) for a in alerts],
                "suspected": [suspected_labels(s, d) for (s, d), on in sorted(self.monitor.suspected().items()) if on],
            }
        )

    def _blocked(self, req: Request) -> Response:
        limit = _int_param(req, "limit", DEFAULT_EPISODES, 0, MAX_EPISODES)
        return _json(_clean(blocked_payload(limit)))

    def _tasks(self, req: Request) -> Response:
        groups = _int_param(req, "groups", 200, 1, 2000)
        names = _int_param(req, "names", 20, 0, 1000)
        return _json(_clean(tasks_payload(take_snapshot(), groups, names)))

    def _snapshot(self, req: Request) -> Response:
        return _json(_clean(snapshot_payload(take_snapshot())))

    def _text(self, req: Request) -> Response:
        groups = _int_param(req, "groups", 200, 1, 2000)
        return Response(200, "text/plain; charset=utf-8", tasks_text(take_snapshot(), groups).encode())

    def _why(self, req: Request) -> Response:
        name = req.param("task")
        if not name:
            raise HttpError(400, "give the task: /api/why?task=NAME")
        with self._lock:  # one snapshot at a time, like the cached answers
            snap = take_snapshot()
            task = find_task(snap, name)
            del snap
            if task is None:
                raise HttpError(404, f"no live task named {name[:200]!r}")
            w = why(task, quiet=True)
        d = _clean(w.to_dict())
        d["text"] = str(w)
        return _json(d)
