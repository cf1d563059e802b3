"""A JSON-lines sample log: one line per sample (and per alert), appended
with a single ``write(2)`` to a file opened ``O_APPEND``, so the file never
holds half a line, even if the process is killed between samples: no buffer
is left to flush. Readable with ``json.loads`` per line."""

from __future__ import annotations

import json
import os
from typing import Any

from .sample import Alert, Sample

__all__ = ["JsonLinesLog"]


class JsonLinesLog:
    def __init__(self, path: str) -> None:
        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):
            raise ValueError(f"jsonl: directory does not exist: {d}")
        self.path = path
        # 0600: the log names source files and task names.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _write(self, obj: Any) -> None:
        if self._fd < 0:
            return
        data = (json.dumps(obj, separators=(",", ":"), default=str) + "\n").encode()
        while data:
            n = os.write(self._fd, data)
            data = data[n:]

    def on_sample(self, s: Sample) -> None:
        self._write({"type": "sample", **s.to_dict()})

    def on_alert(self, a: Alert) -> None:
        self._write({"type": "alert", **a.to_dict()})

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
