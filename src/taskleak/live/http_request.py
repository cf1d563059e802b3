"""Reading one HTTP request off a socket, within hard limits.

The debug endpoint runs inside a production process: whatever a client
sends, reading it must cost bounded memory and bounded time, and anything
that is not a plain, small ``GET``/``HEAD`` ends in an :class:`HttpError`
that the server turns into a 4xx. There is no request body, no chunked
encoding, no keep-alive: one request per connection.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HttpError", "Request", "read_request", "parse_request", "MAX_HEAD_BYTES", "MAX_TARGET_BYTES", "MAX_HEADERS"]

MAX_HEAD_BYTES = 8192  # request line + headers
MAX_TARGET_BYTES = 2048  # the request target (path + query)
MAX_HEADERS = 64

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(rb"^HTTP/1\.[01]$")


class HttpError(Exception):
    """A request the server refuses: ``status`` is the 4xx/5xx to send."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names

    def param(self, name: str, default: str = "") -> str:
        v = self.query.get(name)
        return v[-1] if v else default


def _read_head(sock: socket.socket, deadline: float) -> bytes:
    buf = bytearray()
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            end = buf.find(b"\n\n")  # a bare-LF client (netcat) is tolerated
        if end > MAX_HEAD_BYTES or (end < 0 and len(buf) > MAX_HEAD_BYTES):
            raise HttpError(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
        if end >= 0:
            return bytes(buf[:end])
        left = deadline - time.monotonic()
        if left <= 0:
            raise HttpError(408, "request not received in time")
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise HttpError(408, "request not received in time") from None
        if not chunk:
            if not buf:
                raise ConnectionAbortedError("client closed before sending a request")
            raise HttpError(400, "connection closed in the middle of the request head")
        buf += chunk


def read_request(sock: socket.socket, timeout: float) -> Request:
    """Read and validate one request from `sock` within `timeout` seconds."""
    return parse_request(_read_head(sock, time.monotonic() + timeout))


def parse_request(head: bytes) -> Request:
    """Validate a request head (without the blank line that ends it), read
    by read_request or by the native listener (src/core/live/)."""
    if len(head) > MAX_HEAD_BYTES:
        raise HttpError(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not _VERSION.match(version):
        raise HttpError(505 if version.startswith(b"HTTP/") else 400, "only HTTP/1.0 and HTTP/1.1 are served")
    if not _TOKEN.match(method):
        raise HttpError(400, "malformed method")
    if len(target) > MAX_TARGET_BYTES:
        raise HttpError(414, f"request target longer than {MAX_TARGET_BYTES} bytes")
    if not target.startswith(b"/") or any(c < 0x21 or c > 0x7E for c in target):
        raise HttpError(400, "malformed request target")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise HttpError(400, "malformed header field")
        if any((c < 0x20 and c != 0x09) or c == 0x7F for c in value):
            raise HttpError(400, "control character in a header value")
        key = name.decode("ascii").lower()
        if key in headers and key in ("host", "authorization", "content-length"):
            raise HttpError(400, f"duplicate {key} header")
        headers[key] = value.strip().decode("latin-1")
    if "transfer-encoding" in headers:
        raise HttpError(400, "request bodies are not accepted")
    if "content-length" in headers:
        cl = headers["content-length"]
        if not cl.isdigit():
            raise HttpError(400, "malformed Content-Length")
        if int(cl) > 0:
            raise HttpError(413, "request bodies are not accepted")
    m = method.decode("ascii")
    if m not in ("GET", "HEAD"):
        raise HttpError(405, "this endpoint is read-only: only GET and HEAD", (("Allow", "GET, HEAD"),))
    parts_ = urlsplit(target.decode("ascii"))
    try:
        path = unquote(parts_.path, errors="strict")
    except UnicodeDecodeError:
        raise HttpError(400, "malformed percent-encoding in the path") from None
    try:
        query = parse_qs(parts_.query, keep_blank_values=True, max_num_fields=32)
    except ValueError:
        raise HttpError(400, "too many query parameters") from None
    return Request(m, path, query, headers)
