"""What the monitor's descriptor reading costs the sampler thread, by how many descriptors are open.

Each sample, before asking for the GIL, the sampler thread counts the open
descriptors (getdents64 on /proc/self/fd) and the TCP sockets among them in
CLOSE_WAIT (one getsockopt(TCP_INFO) each): ``_core.open_fds()``. This times
that call with a few descriptors, with 10,000 files, with 5,000 connected
TCP pairs (10,000 sockets) and with 5,000 of those in CLOSE_WAIT (median of 5
runs of 200 calls). None of it holds the GIL; at a 10 s interval, 17 ms is
0.17% of one core.

    python bench/open_fds_cost.py

Linux only (elsewhere the count is unknown and costs nothing).
"""

from __future__ import annotations

import resource
import socket
import statistics
import time

import taskleak._core as _core


def per_call(calls: int = 200) -> float:
    _core.open_fds()
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            _core.open_fds()
        runs.append((time.perf_counter() - start) / calls)
    return statistics.median(runs)


def show(what: str) -> None:
    t = per_call()
    opened, peer_closed = _core.open_fds()
    print(f"  {what:34s} {opened:6d} open, {peer_closed:5d} in CLOSE_WAIT: {t * 1e6:9.1f} us a sample")


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 10_100:
        raise SystemExit(f"needs 10,100 descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 10_100), hard))
    print("_core.open_fds(), median of 5 x 200 calls:")
    show("a few")
    files = [open("/dev/null") for _ in range(10_000)]
    show("10,000 files")
    for f in files:
        f.close()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5_000)
    clients, servers = [], []
    for _ in range(5_000):
        clients.append(socket.create_connection(listener.getsockname()))
        servers.append(listener.accept()[0])
    show("5,000 TCP pairs")
    for c in clients:
        c.close()
    time.sleep(0.2)  # the FINs arrive
    show("5,000 TCP sockets in CLOSE_WAIT")
    for s in servers:
        s.close()
    listener.close()


if __name__ == "__main__":
    main()
