"""Reading a CPython 3.14+ process from outside, when it has no agent.

CPython 3.14 and later can be read from outside with ``_remote_debugging``
(what ``python -m asyncio ps`` uses), through the target's own interpreter
(see ``target_interpreter``).

What the outside view gives: every task's coroutine chain and who awaits
it. What it cannot give: creation sites (taskleak's hook is not in the
process), task states other than pending, done-but-retained tasks, wait
targets. The output says so. ``--inject`` (``remote_inject``) starts the
real agent instead.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .attach import Target
from .target_interpreter import check_reply, run_in_target

__all__ = ["LIMITATIONS", "format_tasks", "read_tasks", "read_blocked_now"]

LIMITATIONS = (
    "read from outside with CPython's remote debugging (no taskleak agent in the process): "
    "await chains and awaited-by only; no creation sites, no done or retained tasks, "
    "no wait targets (start the agent for those: --inject, or taskleak.serve(unix=True))"
)

# Both readers below start with this. A process is read while it runs, so a
# read can catch a frame as it changes and see garbage: CPython's reader then
# raises ("Unhandled frame owner 33", seen once in CI on a loop waking every
# 20 ms). A read a moment later sees the frame settled. A process that is
# gone, or that we may not read, stays so: those are not retried.
_SETTLED = r"""
import time
def settled(read, tries=5):
    for i in range(tries):
        try:
            return read()
        except (PermissionError, ProcessLookupError):
            raise
        except Exception:
            if i == tries - 1:
                raise
            time.sleep(0.01 * (i + 1))
"""

# Runs inside the target's interpreter: prints one JSON document.
_READER = (
    _SETTLED
    + r"""
import json, sys
out = {"python": sys.version.split()[0], "version": list(sys.version_info[:2])}
try:
    import _remote_debugging as rd
except ImportError:
    out["error"] = "version"
    print(json.dumps(out)); sys.exit(0)
def field(o, name, i):
    return getattr(o, name) if hasattr(o, name) else o[i]
def lineno(f):
    # 3.14: FrameInfo.lineno; 3.15: FrameInfo.location, a LocationInfo.
    if hasattr(f, "lineno"):
        return f.lineno
    loc = getattr(f, "location", None)
    if loc is None:
        loc = f[1]
    if hasattr(loc, "lineno"):
        return loc.lineno
    return loc[0] if isinstance(loc, (tuple, list)) else loc
def frames(stack):
    res = []
    for f in stack:
        n = lineno(f)
        res.append([str(field(f, "funcname", 2)), str(field(f, "filename", 0)), int(n) if n is not None else 0])
    return res
try:
    raw = settled(lambda: rd.RemoteUnwinder(int(sys.argv[1])).get_all_awaited_by())
    threads = []
    for th in raw:
        tasks = []
        for t in field(th, "awaited_by", 1):
            coros = [frames(field(c, "call_stack", 0)) for c in field(t, "coroutine_stack", 2)]
            by = [{"task_id": field(c, "task_name", 1), "stack": frames(field(c, "call_stack", 0))}
                  for c in field(t, "awaited_by", 3)]
            tasks.append({"id": field(t, "task_id", 0), "name": str(field(t, "task_name", 1)),
                          "stack": [f for c in coros for f in c], "awaited_by": by})
        threads.append({"thread_id": field(th, "thread_id", 0), "tasks": tasks})
    out["threads"] = threads
except PermissionError as e:
    out["error"] = "ptrace"; out["detail"] = str(e)
except ProcessLookupError as e:
    out["error"] = "gone"; out["detail"] = str(e)
except Exception as e:
    while e.__context__ is not None and not str(e):
        e = e.__context__
    out["error"] = "read"; out["detail"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""
)


# Runs inside the target's interpreter: is a thread running an event loop
# stuck in one place? Stacks are read a few times over SPAN seconds (remote
# reads need no help from the process, so a loop stuck in a C call that
# holds the GIL is read like any other); a loop thread whose stack did not
# move and is not waiting in its selector is blocked for at least that long.
_STUCK_READER = (
    _SETTLED
    + r"""
import json, os, sys, sysconfig, time
out = {"python": sys.version.split()[0]}
try:
    import _remote_debugging as rd
except ImportError:
    out["error"] = "version"
    print(json.dumps(out)); sys.exit(0)
SPAN, N = float(sys.argv[2]), 4
LIB = (sysconfig.get_paths()["stdlib"] + os.sep,)
MARKERS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)
def field(o, name, i):
    return getattr(o, name) if hasattr(o, name) else o[i]
def lineno(f):
    if hasattr(f, "lineno"):
        return f.lineno
    loc = f.location
    return loc.lineno if hasattr(loc, "lineno") else loc[0]
def threads(u):
    r = u.get_stack_trace()
    if r and hasattr(r[0], "threads"):
        r = [t for i in r for t in i.threads]
    return {t.thread_id: [(f.filename, lineno(f) or 0, f.funcname) for f in t.frame_info] for t in r}
def lib(fn):
    return fn.startswith(LIB) or any(m in fn for m in MARKERS) or fn.startswith("<frozen")
def runs_loop(stack):
    return any(fn.endswith(os.sep + "base_events.py") and name in ("_run_once", "run_forever") for fn, _, name in stack)
def waiting(stack):
    fn, _, name = stack[0]
    return fn.endswith(os.sep + "selectors.py") or name in ("select", "poll", "_poll")
try:
    u = rd.RemoteUnwinder(int(sys.argv[1]), all_threads=True)
    # Threads with asyncio tasks run a loop (a task's stack, read from
    # outside, may end at its coroutine: the loop's own frames are not there).
    try:
        loops = {field(t, "thread_id", 0) for t in settled(u.get_all_awaited_by) if field(t, "awaited_by", 1)}
    except Exception:
        loops = set()
    first = settled(lambda: threads(u))
    t0 = time.monotonic()
    seen = [first]
    for _ in range(N - 1):
        time.sleep(SPAN / (N - 1))
        seen.append(settled(lambda: threads(u)))
    span = time.monotonic() - t0
    stuck = []
    for tid, stack in first.items():
        if not stack or not (tid in loops or runs_loop(stack)) or waiting(stack):
            continue
        if all(s.get(tid) == stack for s in seen[1:]):
            site = next((f for f in stack if not lib(f[0])), stack[0])
            callee = None
            if site is not stack[0]:
                base = os.path.basename(stack[0][0])
                mod = os.path.basename(os.path.dirname(stack[0][0])) if base == "__init__.py" else base[:-3]
                callee = mod + "." + stack[0][2].rsplit(".", 1)[-1]
            stuck.append({"thread_id": tid, "at_least": span, "call": callee,
                          "site": {"filename": site[0], "lineno": site[1], "function": site[2]},
                          "frames": [{"filename": f, "lineno": n, "function": fn} for f, n, fn in stack[:20]]})
    out["stuck"] = stuck
except PermissionError as e:
    out["error"] = "ptrace"; out["detail"] = str(e)
except ProcessLookupError as e:
    out["error"] = "gone"; out["detail"] = str(e)
except Exception as e:
    out["error"] = "read"; out["detail"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""
)


def read_blocked_now(t: Target, span: float = 0.6) -> list[dict[str, Any]]:
    """CPython 3.14+, no agent that can answer: the event loop threads of `t`
    whose stack did not move for `span` seconds outside their selector,
    read from outside (each: thread_id, at_least seconds, site, call, frames).
    A blocked loop seen this way has no start time: ``at_least`` is all it says."""
    doc = run_in_target(t, _STUCK_READER, str(t.pid), str(span), timeout=30.0)
    check_reply(t, doc)
    return list(doc.get("stuck") or [])


def read_tasks(t: Target) -> dict[str, Any]:
    """Every task of `t` as the outside view sees it (see the module doc)."""
    doc = run_in_target(t, _READER, str(t.pid))
    check_reply(t, doc)
    tasks = [dict(task, thread_id=th["thread_id"]) for th in doc.get("threads", []) for task in th["tasks"]]
    names = {task["id"]: task["name"] for task in tasks}
    for task in tasks:
        task["awaited_by"] = [dict(a, task_name=names.get(a["task_id"], str(a["task_id"]))) for a in task["awaited_by"]]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for task in tasks:
        key = (
            tuple(tuple(f) for f in task["stack"]),
            tuple(sorted({tuple(tuple(f) for f in a["stack"]) for a in task["awaited_by"]})),
        )
        groups[key].append(task)
    out_groups = []
    for (stack, _), members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        out_groups.append(
            {
                "count": len(members),
                "state": "pending",
                # innermost first, as CPython reports it
                "chain": [{"function": f[0], "filename": f[1], "lineno": f[2]} for f in stack],
                "tasks": [m["name"] for m in members[:20]],
                "awaited_by": sorted({a["task_name"] for m in members for a in m["awaited_by"]})[:20],
                "created_at": None,
            }
        )
    return {
        "kind": "remote",
        "pid": t.pid,
        "python": doc.get("python"),
        "source": "remote-debugging",
        "limitations": LIMITATIONS,
        "task_count": len(tasks),
        "groups": out_groups,
        "tasks": tasks,
    }


def format_tasks(doc: dict[str, Any]) -> str:
    n = doc["task_count"]
    lines = [
        f"taskleak: process {doc['pid']} (Python {doc['python']}), {n} task{'s' if n != 1 else ''} "
        f"in {len(doc['groups'])} groups",
        f"  note: {doc['limitations']}",
    ]
    for g in doc["groups"]:
        lines.append("")
        top = g["chain"][0]["function"] if g["chain"] else "?"
        lines.append(f"{g['count']} task{'s' if g['count'] != 1 else ''}, pending, in {top}")
        lines.append("    " + ", ".join(g["tasks"]) + (", ..." if g["count"] > len(g["tasks"]) else ""))
        lines.append("  created at: (unknown: read from outside, no taskleak agent)")
        if g["chain"]:
            lines.append("  suspended at:")
            lines += [f"    {f['filename']}:{f['lineno']} in {f['function']}" for f in g["chain"][:8]]
        if g["awaited_by"]:
            lines.append("  awaited by: " + ", ".join(g["awaited_by"]))
    return "\n".join(lines) + "\n"
