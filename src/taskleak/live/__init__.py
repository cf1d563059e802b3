"""The live surface of a running process: what an operator or a tool asks it.

``http_server`` (serve(): the loopback/token HTTP endpoint and the agent
socket's server), ``http_request`` (parsing with limits), ``endpoints``
(the read-only routes), ``task_groups`` (the bounded task listing they
serve), ``blocked_loops`` (the watchdog's state as served), ``dashboard`` and
``assets/`` (the offline dashboard), ``agent`` (the 0600 Unix socket
``taskleak ps/top/dump`` talk to), ``autostart`` (``TASKLEAK_MONITOR``: the
monitor and agent started at interpreter start). See docs/live.md. May import
``monitor`` and every layer below; never ``testing`` or ``cli``.
"""

from .http_server import Server, serve

__all__ = ["Server", "serve"]
