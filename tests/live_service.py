"""Helpers for the live-endpoint tests: an event loop running on a thread of
its own (the "service"), and a raw HTTP client that can send anything."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit


class Service:
    """An asyncio loop on a thread; `call(fn)` runs fn on the loop and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ticks = 0
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="service-loop", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def heartbeat() -> None:
            while True:
                self.ticks += 1
                await asyncio.sleep(0.01)

        self.loop.call_soon(self._ready.set)
        self.hb = self.loop.create_task(heartbeat(), name="heartbeat")
        self.loop.run_forever()

    def call(self, fn: Callable[[], Any]) -> Any:
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["v"] = fn()
            except BaseException as e:  # pragma: no cover - reported below
                box["e"] = e
            done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(60)
        if "e" in box:
            raise box["e"]
        return box.get("v")

    def spawn(self, coro_fn: Callable[..., Any], n: int, name: str, *args: Any) -> list:
        return self.call(lambda: [self.loop.create_task(coro_fn(*args), name=f"{name}-{i}") for i in range(n)])

    def stop(self) -> None:
        def halt() -> None:
            for t in asyncio.all_tasks(self.loop):
                t.cancel()
            self.loop.call_later(0.05, self.loop.stop)

        self.loop.call_soon_threadsafe(halt)
        self.thread.join(10)
        self.loop.close()


def raw(url: str, data: bytes, timeout: float = 10.0, unix: str | None = None) -> bytes:
    """Send `data` as-is, return everything the server answers."""
    if unix is not None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr: Any = unix
    else:
        u = urlsplit(url)
        s = socket.socket(socket.AF_INET6 if ":" in (u.hostname or "") else socket.AF_INET, socket.SOCK_STREAM)
        addr = (u.hostname, u.port)
    s.settimeout(timeout)
    try:
        s.connect(addr)
        if data:
            s.sendall(data)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = bytearray()
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            out += b
        return bytes(out)
    finally:
        s.close()


def parse(resp: bytes, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = resp.partition(b"\r\n\r\n")
    assert sep, f"not an HTTP response: {resp[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    proto, status, _ = lines[0].split(" ", 2)
    assert proto == "HTTP/1.1"
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    assert int(headers["content-length"]) == (0 if head_only else len(body)) or head_only and body == b""
    return int(status), headers, body


def get(
    url: str,
    path: str,
    headers: dict[str, str] | None = None,
    unix: str | None = None,
    method: str = "GET",
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    host = "localhost" if unix else urlsplit(url).netloc
    h = {"Host": host}
    h.update(headers or {})
    req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return parse(raw(url, req.encode("latin-1"), timeout=timeout, unix=unix), method == "HEAD")


def get_json(url: str, path: str, **kw: Any) -> Any:
    status, headers, body = get(url, path, **kw)
    assert status == 200, (status, body[:300])
    assert headers["content-type"] == "application/json"
    return json.loads(body)


def python_answer(path: str, head_only: bool = False) -> bytes:
    """The bytes the Python side of the endpoint sends for a GET (or HEAD)
    of `path` that needs no monitor (the dashboard's files): Endpoints.handle's
    answer, written by Server._send to a socket pair."""
    from taskleak.live.endpoints import Endpoints
    from taskleak.live.http_request import Request
    from taskleak.live.http_server import Server

    resp = Endpoints(None).handle(Request("GET", path))
    a, b = socket.socketpair()
    with a, b:
        Server._send(a, resp, head_only)
        a.shutdown(socket.SHUT_WR)
        out = bytearray()
        while chunk := b.recv(65536):
            out += chunk
    return bytes(out)
