"""Tasks that stand for a stream a peer keeps open.

The stale rule (``stale_tasks.py``) takes a rise of stale tasks matched by as
many new open descriptors for connections being kept, not a leak. A protocol
that multiplexes streams over one connection (HTTP/2, so gRPC) opens no
descriptor per stream: a server whose clients subscribe one by one to
long-lived streams, all on one connection, looked like a leak (a real
grpc.aio server paged at sample 200, ``bench/grpc_stream_service.py``).

Some servers keep one task per open stream whose only job is to wait for the
peer to close it. Their number is to streams what open descriptors are to
HTTP/1.1 connections, and the monitor adds it to the descriptors the rule
reads. Such a task is known by its coroutine's code:

* grpc.aio: every RPC runs under cygrpc's ``_schedule_rpc_coro``
  (``grpc/_cython/_cygrpc/aio/server.pyx.pxi``), which starts the RPC's
  handler task and then waits for the core to report the RPC closed; when
  the peer cancels the RPC or goes away, it cancels the handler. A pending
  one is an RPC its peer has not closed. (Its code comes from the Cython
  coroutine's ``cr_code``: see ``code_of`` in ``monitor/task_tally.cpp``.)

What this gives up is what the descriptors give up: a handler hung while its
client waits without a deadline looks like a stream being kept. Once the
client gives up, grpc cancels the handler, which then finishes.
"""

from __future__ import annotations

import types

__all__ = ["watches_a_stream"]

# (function name, how its file's path ends)
_WATCHERS: tuple[tuple[str, str], ...] = (("_schedule_rpc_coro", "/_cygrpc/aio/server.pyx.pxi"),)


def watches_a_stream(code: types.CodeType | type) -> bool:
    """Is a task of this coroutine code one that waits for a peer to close its stream?"""
    if not isinstance(code, types.CodeType):
        return False
    path = code.co_filename.replace("\\", "/")
    return any(code.co_name == name and path.endswith(end) for name, end in _WATCHERS)
