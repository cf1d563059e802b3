"""``taskleak.serve()``: the read-only debug endpoint, on threads of its own.

The server never runs on an event loop. A native thread (src/core/live/,
no GIL) owns the listening socket, reads each request head, and answers
``/metrics``, ``/api/blocked`` and ``/api/info`` itself, from answers
rendered here ahead of time (after each monitor sample, when an episode is
recorded) and the watchdog's episodes in progress: so they come within
milliseconds even while a loop is stuck in a C call that holds the GIL.
Every other request is claimed by a Python thread and gets a short-lived
thread of its own (at most ``max_clients`` at once; more are answered 503 at
once); one that Python has not claimed within ``HANDOFF_SECONDS`` is
answered 503 by the native thread, naming the loop blocked now and its line.
A slow or hostile client only ever ties up its own connection, for at most
``timeout`` seconds of reading and as long again of writing.

Security: on loopback without a token, requests must name a loopback Host
(a web page cannot reach it through DNS rebinding); beyond loopback a token
is required, compared in constant time; on a Unix socket (the agent) the
peer's uid is checked on every connection.
"""

from __future__ import annotations

import atexit
import hmac
import ipaddress
import logging
import os
import socket
import threading
import weakref
from typing import Any

import taskleak._core as _core

from ..blocking import watchdog as _watchdog
from ..monitor.config import check_interval
from .agent import clean_stale, peer_allowed, peer_credentials, prepare_dir, socket_dir, socket_path
from .blocked_loops import blocked_parts
from .endpoints import Endpoints, Response, static_paths
from .http_request import HttpError, Request, parse_request

__all__ = ["Server", "serve", "start_agent"]

log = logging.getLogger("taskleak")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
    507: "Insufficient Storage",
}

_LIVE: weakref.WeakSet[Server] = weakref.WeakSet()
_agent_lock = threading.Lock()

MIN_TOKEN_LENGTH = 16
# How long a request that needs Python waits for a Python thread to claim it
# (the GIL may be held by a stuck C call) before the native thread answers 503.
HANDOFF_SECONDS = 1.0
RENDER_GAP = 0.05  # seconds between two renderings of the native answers


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_is_loopback(value: str) -> bool:
    """Is a Host header (``name[:port]``) a loopback name?"""
    v = value.strip().lower()
    if v.startswith("["):
        name = v[1 : v.find("]")] if "]" in v else v
    else:
        name = v.rsplit(":", 1)[0] if v.count(":") == 1 else v
    return name.endswith(".localhost") or _is_loopback(name)


def _check_token(token: str | None) -> bytes | None:
    if token is None:
        return None
    if not isinstance(token, str):
        raise TypeError(f"token must be a str, got {type(token).__name__}")
    if len(token) < MIN_TOKEN_LENGTH or not all(33 <= ord(c) <= 126 for c in token):
        raise ValueError(
            f"token must be at least {MIN_TOKEN_LENGTH} printable ASCII characters without spaces "
            "(e.g. secrets.token_urlsafe())"
        )
    return token.encode("ascii")


def _find_monitor() -> Any:
    from ..monitor.monitor import running_monitor

    return running_monitor()


class Server:
    """A running debug endpoint: ``url`` to reach it, :meth:`close` to stop it
    (joins its threads; the Unix socket file is removed). Also a context manager."""

    def __init__(
        self,
        sock: socket.socket,
        url: str,
        endpoints: Endpoints,
        token: bytes | None,
        loopback: bool,
        unix_path: str | None,
        own_monitor: Any,
        max_clients: int,
        timeout: float,
    ) -> None:
        self.url = url
        self.path = unix_path
        self.monitor = endpoints.monitor
        self._sock = sock
        self._endpoints = endpoints
        self._token = token
        self._loopback = loopback
        self._own_monitor = own_monitor
        self._timeout = timeout
        self._slots = threading.BoundedSemaphore(max_clients)
        self._handlers: set[threading.Thread] = set()
        self._conns: set[socket.socket] = set()
        self._guard = threading.Lock()
        self._closed = False
        self._native = _core.NativeListener(
            sock.fileno(), unix_path is not None, loopback, token or b"", timeout, HANDOFF_SECONDS
        )
        # What the native thread serves while the GIL does not come, rendered
        # now and kept fresh by the refresher thread.
        self._want = {"metrics", "blocked"}
        self._wanted = threading.Event()
        self._closing = threading.Event()
        self._render_info()
        self._render_static()
        self._render()
        self._refresher = threading.Thread(target=self._refresh_loop, name="taskleak-http-render", daemon=True)
        self._refresher.start()
        self._exporter = _SampleHook(self)
        add = getattr(self.monitor, "add_exporter", None)
        if add is not None:
            add(self._exporter)
        _watchdog.add_change_listener(self._blocked_changed)
        self._thread = threading.Thread(target=self._claim_loop, name="taskleak-http", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    @property
    def unix(self) -> bool:
        return self.path is not None

    @property
    def running(self) -> bool:
        return not self._closed

    def __repr__(self) -> str:
        return f"<taskleak.Server {self.url} {'running' if self.running else 'closed'}>"

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- stopping ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop answering, wait for requests in flight (bounded by the
        timeouts), remove the socket file. Idempotent."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
        _LIVE.discard(self)
        _watchdog.remove_change_listener(self._blocked_changed)
        remove = getattr(self.monitor, "remove_exporter", None)
        if remove is not None:
            remove(self._exporter)
        self._native.close()  # joins the native thread; take() returns None from now on
        self._closing.set()
        self._wanted.set()
        for t in (self._thread, self._refresher):
            if t is not threading.current_thread():
                t.join()
        with self._guard:
            handlers = list(self._handlers)
        for t in handlers:
            if t is not threading.current_thread():
                t.join(self._timeout * 3)
        self._sock.close()
        self._remove_socket_file()
        if self._own_monitor is not None:
            self._own_monitor.stop()

    def _remove_socket_file(self) -> None:
        if self.path is None:
            return
        try:
            st = os.lstat(self.path)
            # Only ours: after a fork the child must not remove the parent's.
            if self._inode == (st.st_dev, st.st_ino):
                os.unlink(self.path)
        except OSError:
            pass

    _inode: Any = None

    def _forget_after_fork(self) -> None:
        # In a child of fork(): the threads are gone; drop the inherited
        # descriptors without touching the parent's socket file.
        self._closed = True
        self._handlers.clear()
        self._native.forget_after_fork()
        try:
            self._sock.close()
        except OSError:
            pass

    # -- serving ----------------------------------------------------------------------
    def _render_info(self) -> None:
        self._native.set_info(self._endpoints.handle(Request("GET", "/api/info")).body)

    def _render_static(self) -> None:
        # The dashboard's page and assets never change: the native thread
        # serves them, so that a dashboard opened while the loop is stuck
        # loads (and shows the banner: it polls /api/blocked, also native).
        # The same bytes and content types as Endpoints.handle answers.
        for path in static_paths():
            try:
                resp = self._endpoints.handle(Request("GET", path))
            except Exception:  # a damaged install: Python answers it (and says what is wrong)
                log.exception("taskleak: the dashboard file %s could not be read", path)
                continue
            self._native.set_static(path, resp.content_type, resp.body, path.startswith("/assets/"))

    def _render(self) -> None:
        want, self._want = self._want, set()
        if "metrics" in want:
            # Without the live gauges: the native thread appends them, read at each request.
            self._native.set_metrics(self.monitor.metrics_text(live=False).encode())
        if "blocked" in want:
            self._native.set_blocked(*blocked_parts())

    def _blocked_changed(self) -> None:
        # From the watchdog's sink (a loop's thread): only wake the refresher.
        self._want.add("blocked")
        self._wanted.set()

    def _refresh_loop(self) -> None:
        while True:
            self._wanted.wait()
            if self._closed:
                return
            self._wanted.clear()
            try:
                self._render()
            except Exception:
                log.exception("taskleak: rendering the native answers failed")
            # At most RENDER_GAP apart: a loop that blocks again and again
            # must not keep this thread rendering (and holding the GIL).
            self._closing.wait(RENDER_GAP)

    def _claim_loop(self) -> None:
        try:
            while True:
                got = self._native.take()  # waits without the GIL
                if got is None:
                    return
                fd, head = got
                try:
                    conn = socket.socket(fileno=fd)
                except OSError:
                    os.close(fd)
                    continue
                self._dispatch(conn, head)
        except Exception:
            log.exception("taskleak: debug endpoint claim loop failed")

    def _dispatch(self, conn: socket.socket, head: bytes) -> None:
        if not self._slots.acquire(blocking=False):
            conn.settimeout(0.5)
            self._send(
                conn,
                Response(503, "text/plain; charset=utf-8", b"too many clients; try again\n", [("Retry-After", "1")]),
                _asks_head(head),
            )
            conn.close()
            return
        t = threading.Thread(target=self._handle, args=(conn, head), name="taskleak-http-client", daemon=True)
        with self._guard:
            self._handlers.add(t)
        try:
            t.start()
        except RuntimeError:  # cannot start a thread (interpreter shutting down, limits)
            with self._guard:
                self._handlers.discard(t)
            self._slots.release()
            conn.close()

    def _handle(self, conn: socket.socket, head: bytes) -> None:
        head_only = _asks_head(head)
        try:
            if self.path is not None:
                # (the native thread checked it already and answered 403 itself)
                _pid, uid, _gid = peer_credentials(conn)
                if not peer_allowed(uid):
                    conn.settimeout(1.0)
                    self._send(
                        conn,
                        _error(
                            403,
                            f"peer uid {uid} is not allowed: only uid {os.geteuid()} (and root) may read this process",
                        ),
                        head_only,
                    )
                    return
            try:
                req = parse_request(head)
                self._authorize(req)
                resp = self._endpoints.handle(req)
            except HttpError as e:
                resp = _error(e.status, e.message, list(e.headers))
            except (ConnectionError, OSError):
                return
            except Exception as e:  # a bug here must never reach the host program
                log.exception("taskleak: debug endpoint request failed")
                resp = _error(500, f"internal error: {type(e).__name__}")
            conn.settimeout(self._timeout)
            self._send(conn, resp, head_only)
        except Exception:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass
            with self._guard:
                self._handlers.discard(threading.current_thread())
            self._slots.release()

    def _authorize(self, req: Request) -> None:
        if self.path is not None:
            return  # the peer's uid was checked
        if self._token is not None:
            if req.path.startswith("/assets/"):
                return  # the dashboard's own script and style: public files of the package, no process data
            given = req.headers.get("authorization", "")
            given = given[7:].strip() if given[:7].lower() == "bearer " else req.param("token")
            if not hmac.compare_digest(given.encode("utf-8", "replace"), self._token):
                raise HttpError(
                    401,
                    "a valid token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)",
                    (("WWW-Authenticate", 'Bearer realm="taskleak"'),),
                )
        elif self._loopback:
            host = req.headers.get("host")
            if host is not None and not _host_is_loopback(host):
                raise HttpError(421, "this endpoint only answers requests addressed to a loopback host name")

    @staticmethod
    def _send(conn: socket.socket, resp: Response, head_only: bool) -> None:
        head = [
            f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Error')}",
            f"Content-Type: {resp.content_type}",
            f"Content-Length: {len(resp.body)}",
            "Connection: close",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'",
            "Referrer-Policy: no-referrer",
        ]
        head += [f"{k}: {v}" for k, v in resp.headers]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        try:
            conn.sendall(data if head_only else data + resp.body)
        except OSError:
            pass


class _SampleHook:
    """The monitor's exporter hook: after each sample, re-render /metrics."""

    def __init__(self, srv: Server) -> None:
        self._srv = weakref.ref(srv)

    def on_sample(self, sample: Any) -> None:
        srv = self._srv()
        if srv is not None:
            srv._want.add("metrics")
            srv._want.add("blocked")
            srv._wanted.set()


def _asks_head(head: bytes) -> bool:
    """Whatever else is wrong with it, a request that says HEAD gets no body
    (RFC 9110 9.3.2): not a 4xx, not a 503 (as the native thread)."""
    return head.startswith(b"HEAD ")


def _error(status: int, message: str, headers: list[Any] | None = None) -> Response:
    return Response(
        status, "text/plain; charset=utf-8", (message + "\n").encode("utf-8", "replace"), list(headers or [])
    )


def _after_fork_in_child() -> None:
    for srv in list(_LIVE):
        unix = srv.unix
        srv._forget_after_fork()
        _LIVE.discard(srv)
        if unix:
            # A pre-forking server's worker gets an agent of its own.
            try:
                serve(unix=True, monitor=srv.monitor)
            except Exception:
                log.exception("taskleak: could not start the agent after fork")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_all_at_exit() -> None:
    # The agent's socket file goes with the process.
    for srv in list(_LIVE):
        try:
            srv.close()
        except Exception:
            pass


atexit.register(_close_all_at_exit)


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    unix: bool = False,
    *,
    monitor: Any = None,
    interval: float = 10.0,
    max_clients: int = 16,
    timeout: float = 5.0,
) -> Server:
    """Start the read-only debug endpoint and dashboard on threads of its own.

    ``serve()`` listens on ``127.0.0.1`` at a free port (``.url`` says which).
    Binding beyond loopback (``host="0.0.0.0"``, a LAN address) requires a
    ``token`` of at least 16 characters; clients send ``Authorization: Bearer
    TOKEN`` (or ``?token=TOKEN`` to open the dashboard in a browser).
    ``unix=True`` starts the agent instead: a Unix socket that ``taskleak
    ps/top/dump PID`` find (one per process; calling it again returns the
    running one).

    Data comes from ``monitor`` (a :class:`taskleak.Monitor`), else from a
    monitor already running in the process, else from one started here with
    ``interval`` seconds (0.001 to 86400, as ``Monitor``; stopped by
    :meth:`Server.close`). At most ``max_clients``
    requests are served at once; each must arrive within ``timeout`` seconds.

    Errors: ValueError for a bad ``interval`` (even when a running monitor is
    used), a non-loopback host without token or a weak token;
    OSError if the address cannot be bound or the agent directory is unsafe.
    Nothing a client sends raises in the program."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in 0..65535, got {port!r}")
    # Checked now even if a running monitor will be used: serve(interval=inf)
    # is a mistake whichever monitor answers.
    interval = check_interval("interval", interval)
    if not timeout > 0 or max_clients < 1:
        raise ValueError("timeout must be > 0 and max_clients >= 1")
    tok = _check_token(token)
    if unix:
        with _agent_lock:
            for srv in list(_LIVE):
                if srv.unix and srv.running and srv.path == socket_path():
                    return srv
            return _start(None, 0, tok, True, monitor, interval, max_clients, timeout)
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty string, got {host!r}")
    loopback = _is_loopback(host)
    if not loopback and tok is None:
        raise ValueError(
            f"binding to {host!r} exposes the endpoint beyond this machine: pass a token "
            "(e.g. token=secrets.token_urlsafe()), or keep host='127.0.0.1'"
        )
    return _start(host, port, tok, loopback, monitor, interval, max_clients, timeout)


def _start(
    host: str | None,
    port: int,
    tok: bytes | None,
    loopback: bool,
    monitor: Any,
    interval: float,
    max_clients: int,
    timeout: float,
) -> Server:
    own = None
    if monitor is None:
        monitor = _find_monitor()
    if monitor is None:
        from ..monitor.monitor import Monitor

        monitor = own = Monitor(interval=interval)
    if not monitor.running:
        monitor.start()  # a caller's monitor stays the caller's to stop
    path = None
    try:
        if host is None:
            directory = socket_dir()
            prepare_dir(directory)
            clean_stale(directory)
            path = socket_path()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # A client that finds the socket file connects at once (``dump
            # --inject`` polls for it): bound but not yet listening, the file
            # refuses it. So bind under a private name and rename the file into
            # place only once it listens, with its final mode.
            staging = os.path.join(directory, f".{os.getpid()}.new")  # short: sun_path holds 107 bytes
            for p in (path, staging):
                try:
                    os.unlink(p)  # ours (same pid): left by a process that reused the pid, or a crash
                except FileNotFoundError:
                    pass
            try:
                sock.bind(staging)
                os.chmod(staging, 0o600)
                sock.listen(64)
                os.rename(staging, path)
            except BaseException:
                sock.close()
                try:
                    os.unlink(staging)
                except OSError:
                    pass
                raise
            url = f"unix:{path}"
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.strip("[]"), port))
            bound = sock.getsockname()[1]
            shown = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
            url = f"http://{shown}:{bound}/"
            sock.listen(64)
        sock.setblocking(False)
    except BaseException:
        if own is not None:
            own.stop()
        raise
    srv = Server(sock, url, Endpoints(monitor, agent=path is not None), tok, loopback, path, own, max_clients, timeout)
    if path is not None:
        st = os.lstat(path)
        srv._inode = (st.st_dev, st.st_ino)
    log.info("taskleak: debug endpoint at %s", url)
    return srv


def start_agent(monitor: Any = None, environ: Any | None = None) -> Server | None:
    """Start the agent for ``taskleak run --monitor`` and ``TASKLEAK_MONITOR``:
    like ``serve(unix=True, monitor=monitor)``, but it never raises (a
    program must start even if the agent cannot) and ``TASKLEAK_AGENT=0``
    turns it off. Returns the server, or None."""
    env = os.environ if environ is None else environ
    if env.get("TASKLEAK_AGENT", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        return serve(unix=True, monitor=monitor)
    except Exception as e:
        import sys

        print(f"taskleak: agent not started: {e}", file=sys.stderr)
        return None
