"""Hundreds of malformed, hostile or oversized requests (seeded, so a failure
replays): each gets a well-formed 4xx (or a 200 when the mutation happened
to stay valid), never a 500 or a hang; the host's event loop keeps running
throughout, the server still answers afterwards, nothing is logged as an
error, and no thread is left behind."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from live_service import Service, get_json, raw

import taskleak

SEED = 20261201
N_REQUESTS = 400

PATHS = [
    "/",
    "/metrics",
    "/api/tasks",
    "/api/samples",
    "/api/alerts",
    "/api/why",
    "/tasks.txt",
    "/api/info",
    "/assets/dashboard.js",
    "/api/snapshot",
    "/api/blocked",
]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "CONNECT", "G ET", "get", "GET\x00", "", "X" * 300]


def _valid(rng: random.Random, port: int) -> bytes:
    path = rng.choice(PATHS)
    if rng.random() < 0.5:
        path += "?" + "&".join(
            f"{rng.choice(['limit', 'since', 'groups', 'names', 'task', 'token'])}="
            f"{rng.choice(['1', '-5', 'abc', '1e309', 'nan', '%ff', '9' * 40, ''])}"
            for _ in range(rng.randint(1, 4))
        )
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(4)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            del b[min(pos, len(b) - 1)]
        elif op == 1:
            b[pos:pos] = bytes([rng.randrange(256)])
        elif op == 2 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        else:
            b[pos:pos] = rng.choice([b"\r\n", b"\n", b"\x00", b" ", b":", b"%", b"\xff\xfe", b"\r"])
    return bytes(b)


def _case(rng: random.Random, port: int) -> bytes:
    kind = rng.randrange(12)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 3000)))
    if kind == 1:
        return _mutate(rng, _valid(rng, port))
    if kind == 2:  # oversized header block
        return (
            b"GET / HTTP/1.1\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"v" * rng.randint(1, 400)) for i in range(rng.randint(30, 200)))
            + b"\r\n"
        )
    if kind == 3:  # oversized target
        return b"GET /" + b"a" * rng.randint(2000, 20000) + b" HTTP/1.1\r\n\r\n"
    if kind == 4:  # a body, or request smuggling attempts
        return rng.choice(
            [
                b"POST /api/tasks HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789",
                b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
                b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            ]
        )
    if kind == 5:
        m = rng.choice(METHODS)
        return f"{m} {rng.choice(PATHS)} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode("latin-1", "replace")
    if kind == 6:  # odd versions and request lines
        return rng.choice(
            [
                b"GET / HTTP/0.9\r\n\r\n",
                b"GET / HTTP/9.9\r\n\r\n",
                b"GET /\r\n\r\n",
                b"GET\r\n\r\n",
                b"GET  /  HTTP/1.1\r\n\r\n",
                b"\r\n\r\n",
                b"GET / HTTP/1.1 extra\r\n\r\n",
                b"GET http://evil/ HTTP/1.1\r\n\r\n",
                b"GET * HTTP/1.1\r\n\r\n",
            ]
        )
    if kind == 7:  # header syntax
        return (
            b"GET /api/info HTTP/1.1\r\n"
            + rng.choice(
                [
                    b"NoColon\r\n",
                    b" leading: space\r\n",
                    b"A\x00B: c\r\n",
                    b"X: \x01\x02\r\n",
                    b"Host: a\r\nHost: b\r\n",
                    b": empty-name\r\n",
                    b"X: " + b"\xff" * 50 + b"\r\n",
                ]
            )
            + b"\r\n"
        )
    if kind == 8:  # many query fields, bad percent-encoding
        q = "&".join(f"k{i}=v" for i in range(rng.randint(33, 500)))
        return rng.choice(
            [
                f"GET /api/samples?{q} HTTP/1.1\r\n\r\n".encode(),
                b"GET /%ff%fe HTTP/1.1\r\n\r\n",
                b"GET /api/%zz HTTP/1.1\r\n\r\n",
                b"GET /api/why?task=%00%ff HTTP/1.1\r\nHost: localhost\r\n\r\n",
            ]
        )
    if kind == 9:  # a token where none is configured: harmless
        return (
            b"GET /api/info HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
            + b"x" * rng.randint(0, 4000)
            + b"\r\n\r\n"
        )
    if kind == 10:  # foreign Host names (DNS rebinding)
        return f"GET /api/tasks HTTP/1.1\r\nHost: {rng.choice(['evil.com', '10.0.0.1:80', 'x' * 300, '[::1', ''])}\r\n\r\n".encode()
    return _valid(rng, port)


ALLOWED = {200, 400, 404, 405, 408, 413, 414, 421, 431, 503, 505}


@pytest.fixture
def service():
    taskleak.install()
    s = Service()
    yield s
    s.stop()


def test_fuzzed_requests_get_4xx_and_leave_the_host_unaffected(service, caplog):
    rng = random.Random(SEED)
    before = {t.ident for t in threading.enumerate()}
    srv = taskleak.serve(interval=0.05, timeout=0.5, max_clients=32)
    port = int(urlsplit(srv.url).port or 0)
    cases = [_case(rng, port) for _ in range(N_REQUESTS)]
    statuses: list = []
    caplog.set_level(logging.ERROR, logger="taskleak")
    ticks = service.ticks

    def send(data: bytes) -> None:
        resp = raw(srv.url, data, timeout=20)
        assert resp, f"no answer to {data[:120]!r}"
        status_line = resp.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 "), (data[:120], resp[:120])
        statuses.append(int(status_line.split()[1]))
        head, sep, body = resp.partition(b"\r\n\r\n")
        assert sep and b"Content-Length: %d" % len(body) in head or data.startswith(b"HEAD"), (data[:120], resp[:200])
        assert body == b"" or not data.startswith(b"HEAD "), (data[:120], resp[:200])  # no body for HEAD

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, cases))
        # Half-sent heads and silent clients time out with 408 (or are dropped).
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /api/tasks HTTP/1.1\r\nHost: loc")
            s.settimeout(10)
            assert s.recv(100).startswith(b"HTTP/1.1 408 ")
            s.close()
        assert len(statuses) == N_REQUESTS
        print("statuses:", sorted((s, statuses.count(s)) for s in set(statuses)))
        assert set(statuses) <= ALLOWED, sorted(set(statuses) - ALLOWED)
        assert statuses.count(200) > 10 and sum(400 <= s < 500 for s in statuses) > N_REQUESTS // 2
        # The host: its loop kept running, the server still answers, nothing logged.
        assert service.ticks > ticks
        assert get_json(srv.url, "/api/tasks")["states"]["pending"] >= 1
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        srv.close()
    for _ in range(100):
        left = [t for t in threading.enumerate() if t.ident not in before]
        if not left:
            break
        time.sleep(0.05)
    assert left == []
