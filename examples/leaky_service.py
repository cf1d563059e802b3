"""A deliberately leaky asyncio service: a demo target for ``taskleak run``.

The program starts a tiny line-protocol "session" server on 127.0.0.1 (an
ephemeral port), drives it with an in-process load generator of
``N_CLIENTS`` loopback connections for about 8-9 seconds, prints a summary
and exits with status 0.  Protocol (one request per line):

    PING | GET key | SET key value | FETCH key | QUIT

It contains exactly three classic task-leak bugs (look for ``# BUG:``):

1. Uncancelled heartbeat -- every connection starts a ``heartbeat()`` task
   that loops forever and is never cancelled when the connection closes.
   Leaks exactly 20 tasks (one per client), pending at shutdown.
2. Lost waiter -- ``FETCH`` races a backend lookup against a timeout with
   ``asyncio.wait(..., FIRST_COMPLETED)`` and never cancels the loser, which
   awaits a future in ``INFLIGHT`` that nobody ever resolves.
   Leaks exactly 5 tasks (clients 0, 4, 8, 12, 16 send one FETCH each),
   pending at shutdown.
3. Fire-and-forget -- every ``SET`` schedules ``audit_log()`` with
   ``asyncio.ensure_future`` and drops the result.  Audit records for
   ``counter:*`` keys with a non-numeric value raise ``ValueError`` that
   nobody retrieves ("Task exception was never retrieved").
   Exactly 3 such tasks fail (clients 3, 10, 17); the other audit tasks
   finish cleanly.

The counts are deterministic and exported as ``EXPECTED_LEAKS``.
Standard library only; Python 3.10-3.13.
"""

import asyncio
import itertools

HOST = "127.0.0.1"  # loopback only; port 0 = ephemeral
N_CLIENTS = 20
REQUESTS_PER_CLIENT = 12  # ordinary requests per client, before QUIT
REQUEST_GAP = 0.5  # seconds between a client's requests
CLIENT_STAGGER = 0.1  # client i connects after i * CLIENT_STAGGER seconds
HEARTBEAT_INTERVAL = 1.0
FETCH_TIMEOUT = 0.3
RUN_DEADLINE = 10.0  # hard upper bound for the load phase
FETCH_CLIENTS = (0, 4, 8, 12, 16)  # each sends exactly one FETCH
BAD_COUNTER_CLIENTS = (3, 10, 17)  # each sends exactly one bad counter SET

EXPECTED_LEAKS = {
    "heartbeat": N_CLIENTS,  # pending at shutdown, coroutine heartbeat()
    "lost_waiter": len(FETCH_CLIENTS),  # pending at shutdown, backend_fetch()
    "unretrieved_exception": len(BAD_COUNTER_CLIENTS),  # audit_log() ValueError
}
EXPECTED_PENDING_AT_SHUTDOWN = EXPECTED_LEAKS["heartbeat"] + EXPECTED_LEAKS["lost_waiter"]

STORE: dict[str, str] = {}
INFLIGHT: dict[str, asyncio.Future] = {}  # backend replies nobody ever delivers
AUDIT: list[tuple[str, str, object]] = []
SESSIONS: dict[int, dict] = {}
STATS = {"connections": 0, "requests": 0, "timeouts": 0, "beats": 0}
_session_ids = itertools.count(1)


async def heartbeat(session: dict) -> None:
    """Refresh the session's lease.  Never checks whether the session ended."""
    while True:
        await asyncio.sleep(HEARTBEAT_INTERVAL)
        STATS["beats"] += 1
        if not session["writer"].is_closing():
            session["lease"] = asyncio.get_running_loop().time() + 3 * HEARTBEAT_INTERVAL


async def backend_fetch(key: str) -> str:
    """Ask a (fictional) backend for `key`; the reply future is never resolved."""
    fut = INFLIGHT.setdefault(key, asyncio.get_running_loop().create_future())
    return await fut


async def audit_log(op: str, key: str, value: str) -> None:
    await asyncio.sleep(0.01)  # pretend to ship the record somewhere
    record = int(value) if key.startswith("counter:") else value  # ValueError on bad counters
    AUDIT.append((op, key, record))


async def dispatch(line: str) -> str | None:
    cmd, _, rest = line.partition(" ")
    if cmd == "PING":
        return "PONG"
    if cmd == "GET":
        return STORE.get(rest, "NIL")
    if cmd == "SET":
        key, _, value = rest.partition(" ")
        STORE[key] = value
        asyncio.ensure_future(audit_log("SET", key, value))  # BUG: fire-and-forget, exception never retrieved
        return "OK"
    if cmd == "FETCH":
        fetch = asyncio.create_task(backend_fetch(rest))  # BUG: lost waiter, loser of the race is never cancelled
        timeout = asyncio.create_task(asyncio.sleep(FETCH_TIMEOUT))
        done, _pending = await asyncio.wait({fetch, timeout}, return_when=asyncio.FIRST_COMPLETED)
        if fetch in done:
            return fetch.result()
        STATS["timeouts"] += 1
        return "ERR timeout"
    if cmd == "QUIT":
        return None
    return "ERR unknown command"


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sid = next(_session_ids)
    session = SESSIONS[sid] = {"writer": writer, "lease": 0.0}
    session["hb"] = asyncio.create_task(heartbeat(session), name=f"heartbeat-{sid}")  # BUG: heartbeat never cancelled
    STATS["connections"] += 1
    try:
        while line := await reader.readline():
            STATS["requests"] += 1
            reply = await dispatch(line.decode().strip())
            writer.write(f"{reply if reply is not None else 'BYE'}\n".encode())
            await writer.drain()
            if reply is None:
                break
    except ConnectionError:
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


def client_script(i: int) -> list[str]:
    script = []
    for j in range(REQUESTS_PER_CLIENT):
        script.append(("PING", f"SET user:{i}:{j} v{j}", f"GET user:{i}:{j - 1}")[j % 3])
    if i in FETCH_CLIENTS:
        script.insert(4, f"FETCH profile:{i}")
    if i in BAD_COUNTER_CLIENTS:
        script.insert(2, f"SET counter:{i} not-a-number")
    return script + ["QUIT"]


async def client(i: int, port: int, replies: dict[str, int]) -> None:
    await asyncio.sleep(i * CLIENT_STAGGER)
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for request in client_script(i):
            writer.write(f"{request}\n".encode())
            await writer.drain()
            reply = (await reader.readline()).decode().strip()
            replies[reply.split(" ")[0]] = replies.get(reply.split(" ")[0], 0) + 1
            if reply == "BYE":
                break
            await asyncio.sleep(REQUEST_GAP)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def main() -> None:
    server = await asyncio.start_server(handle_client, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    print(f"leaky_service: serving on {HOST}:{port}, {N_CLIENTS} clients")
    replies: dict[str, int] = {}
    clients = asyncio.gather(*(client(i, port, replies) for i in range(N_CLIENTS)))
    try:
        await asyncio.wait_for(clients, timeout=RUN_DEADLINE)
    except asyncio.TimeoutError:
        print("leaky_service: load generator hit the deadline")
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.1)  # let the last audit records land
    print(
        f"leaky_service: {STATS['connections']} connections, {STATS['requests']} requests, "
        f"{STATS['timeouts']} fetch timeouts, {len(AUDIT)} audit records, "
        f"{STATS['beats']} heartbeats, replies={dict(sorted(replies.items()))}"
    )


if __name__ == "__main__":
    asyncio.run(main())
