"""A baseline of known leaks, so a suite can adopt the pytest plugin gradually:
leaks recorded in the baseline file are tolerated, new ones fail.

An entry is keyed by ``(kind, created, suspended)``:

* ``kind``: the leak kind ("pending", "gc-pending", "done-retained",
  "never-retrieved"). "pending" and "gc-pending" tolerate each other: a task
  left pending that only a reference cycle keeps is reported "pending" when
  the check reaches it first and "gc-pending" when the collector does, and
  which comes first depends on allocation counts, not on the code under test;
* ``created``: ``module:qualname`` of the innermost *user* frame of the
  creation site (not asyncio, the standard library, site-packages or taskleak);
* ``suspended``: ``module:qualname`` of the innermost user frame of the await
  chain, or of its innermost frame when all of it is library code (a bare
  ``create_task(asyncio.sleep(60))``), or ``-`` for a task that is done.

No line numbers and no test ids: the key survives edits elsewhere in the
file, renamed or reordered tests, and parametrisation. Module names come from
the file path (relative to the rootdir, the stdlib or site-packages), so they
do not depend on pytest's import mode. Each entry also lists the tests it was
seen in; that is information for people, and it keeps ``--taskleak-update-
baseline`` from dropping entries of tests that did not run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from ..frame import Frame, creation_site, is_library, is_machinery, library_relative

__all__ = ["Baseline", "BaselineError", "leak_key", "frame_id", "VERSION"]

VERSION = 1
Key = tuple[str, str, str]


class BaselineError(ValueError):
    """The baseline file cannot be used (unreadable, not JSON, wrong shape or version)."""


def module_name(filename: str, rootdir: str) -> str:
    """A dotted module name derived from the file path alone."""
    rel = library_relative(filename)
    if rel is None and rootdir and filename.startswith(rootdir.rstrip(os.sep) + os.sep):
        rel = os.path.relpath(filename, rootdir)
    if rel is None:
        rel = os.path.basename(filename)
    rel = rel[:-3] if rel.endswith(".py") else rel
    if rel.endswith(os.sep + "__init__"):
        rel = rel[: -len("__init__") - 1]
    return rel.replace(os.sep, ".")


def frame_id(frame: Frame | None, rootdir: str) -> str:
    return "?" if frame is None else f"{module_name(frame.filename, rootdir)}:{frame.function}"


def _innermost_user(frames: Sequence[Frame]) -> Frame | None:
    for f in frames:
        if not is_machinery(f.filename) and not is_library(f.filename):
            return f
    return None


def leak_key(kind: str, created_at: Sequence[Frame] | None, stack: Sequence[Frame], rootdir: str) -> Key:
    """The baseline key of one leak. ``created_at`` is innermost first,
    ``stack`` (the await chain) outermost first, as in TaskInfo."""
    site = creation_site(created_at) if created_at else []
    created = _innermost_user(site) or (site[0] if site else None)
    if not stack:
        suspended = "-"
    else:
        inner_first = list(reversed(stack))
        suspended = frame_id(_innermost_user(inner_first) or inner_first[0], rootdir)
    return (kind, frame_id(created, rootdir), suspended)


_TWIN_KIND = {"pending": "gc-pending", "gc-pending": "pending"}


def _twin(key: Key) -> Key | None:
    """The key of the same leak seen at the other moment (see the module docstring)."""
    kind = _TWIN_KIND.get(key[0])
    return None if kind is None else (kind, key[1], key[2])


class Baseline:
    """The entries of one baseline file: key -> the tests it was recorded for."""

    def __init__(self, path: str, entries: dict[Key, set[str]], existed: bool) -> None:
        self.path = path
        self.entries = entries
        self.existed = existed

    @classmethod
    def load(cls, path: str, *, missing_ok: bool = False) -> Baseline:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            if missing_ok:
                return cls(path, {}, existed=False)
            raise BaselineError(
                f"taskleak baseline {path!r} does not exist (create it with --taskleak-update-baseline)"
            ) from None
        except OSError as e:
            raise BaselineError(f"taskleak baseline {path!r} cannot be read: {e}") from None
        try:
            data = json.loads(text)
        except ValueError as e:
            raise BaselineError(f"taskleak baseline {path!r} is not valid JSON: {e}") from None
        return cls(path, _parse(path, data), existed=True)

    def tolerates(self, key: Key) -> bool:
        k: Key = (key[0], key[1], key[2])  # a list, from a row that travelled as JSON
        return k in self.entries or _twin(k) in self.entries

    def updated(
        self, seen: dict[Key, set[str]], ran: set[str], force: bool
    ) -> tuple[dict[Key, set[str]], list[Key], list[Key]]:
        """The entries to write after a run: (entries, dropped, refused).

        With ``force`` (or a new file) the baseline becomes exactly what was
        seen. Otherwise it may only shrink: an entry is dropped when every
        test it was recorded for ran in this run and none of them leaked it
        again; new leaks are refused (they keep failing)."""
        if force or not self.existed:
            return {k: set(v) for k, v in seen.items()}, [k for k in self.entries if k not in seen], []
        out: dict[Key, set[str]] = {}
        dropped: list[Key] = []
        for key, tests in self.entries.items():
            twin = _twin(key)
            twin_seen = twin is not None and twin in seen
            if key in seen or twin_seen:
                twin_tests = seen[twin] if twin is not None and twin_seen else set()
                out[key] = set(seen.get(key, set())) | set(twin_tests) | (tests - ran)
            elif tests and tests <= ran:
                dropped.append(key)
            else:
                out[key] = set(tests)
        refused = [k for k in seen if not self.tolerates(k)]
        return out, dropped, refused

    @staticmethod
    def write(path: str, entries: dict[Key, set[str]]) -> None:
        rows = [
            {"kind": k[0], "created": k[1], "suspended": k[2], "tests": sorted(t)} for k, t in sorted(entries.items())
        ]
        data = {"version": VERSION, "tool": "taskleak", "entries": rows}
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)


def _parse(path: str, data: Any) -> dict[Key, set[str]]:
    def bad(why: str) -> BaselineError:
        return BaselineError(f"taskleak baseline {path!r} is malformed: {why}")

    if not isinstance(data, dict):
        raise bad("expected a JSON object with 'version' and 'entries'")
    if data.get("version") != VERSION:
        raise bad(f"unsupported version {data.get('version')!r} (this taskleak reads version {VERSION})")
    rows = data.get("entries")
    if not isinstance(rows, list):
        raise bad("'entries' must be a list")
    entries: dict[Key, set[str]] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise bad(f"entry {i} is not an object")
        fields = [row.get(name) for name in ("kind", "created", "suspended")]
        if not all(isinstance(v, str) and v for v in fields):
            raise bad(f"entry {i} needs non-empty strings 'kind', 'created' and 'suspended'")
        tests = row.get("tests", [])
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            raise bad(f"entry {i}: 'tests' must be a list of strings")
        entries.setdefault((str(fields[0]), str(fields[1]), str(fields[2])), set()).update(tests)
    return entries
