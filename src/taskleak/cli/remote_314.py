"""Inspecting a CPython 3.14+ process that has no agent.

CPython 3.14 can be read from outside (``_remote_debugging``, what
``python -m asyncio ps`` uses) and can run a script inside a process at its
next bytecode boundary (``sys.remote_exec``, PEP 768). Both require a
reader of the *same minor version* as the target, so both run through the
target's own interpreter, ``/proc/PID/exe``, in isolated mode (``-I``):
which Python runs ``taskleak`` itself does not matter.

What the outside view gives: every task's coroutine chain and who awaits
it. What it cannot give: creation sites (taskleak's hook is not in the
process), task states other than pending, done-but-retained tasks, wait
targets. The output says so. ``--inject`` starts the real agent instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections import defaultdict
from typing import Any, Dict, List, Optional, Tuple

from .attach import Agent, AttachError, Target, find_agent

__all__ = ["read_tasks", "format_tasks", "inject_agent", "remote_debug_disabled", "LIMITATIONS"]

LIMITATIONS = ("read from outside with CPython's remote debugging (no taskleak agent in the process): "
               "await chains and awaited-by only; no creation sites, no done or retained tasks, "
               "no wait targets (start the agent for those: --inject, or taskleak.serve(unix=True))")

# Runs inside the target's interpreter: prints one JSON document.
_READER = r"""
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
    raw = rd.RemoteUnwinder(int(sys.argv[1])).get_all_awaited_by()
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

_INJECTOR = r"""
import json, sys
try:
    sys.remote_exec(int(sys.argv[1]), sys.argv[2])
    print(json.dumps({"ok": True}))
except PermissionError as e:
    print(json.dumps({"error": "ptrace", "detail": str(e)}))
except Exception as e:
    print(json.dumps({"error": "inject", "detail": f"{type(e).__name__}: {e}"}))
"""

# Runs inside the target at its next bytecode boundary. Never raises there;
# removes itself (it may run long after the CLI gave up waiting).
_AGENT_SCRIPT = """\
try:
    import taskleak as _taskleak
    _taskleak.serve(unix=True)
except BaseException as _e:
    try:
        with open({err!r}, "w") as _f:
            _f.write(type(_e).__name__ + ": " + str(_e))
    except Exception:
        pass
try:
    import os as _os
    _os.unlink({script!r})
except Exception:
    pass
"""


def _exe(t: Target) -> str:
    if t.exe is None:
        raise AttachError(f"cannot read /proc/{t.pid}/exe: not permitted, or a kernel thread", "ptrace")
    if not t.looks_like_python:
        raise AttachError(f"process {t.pid} does not look like a Python process (executable {t.exe})", "version")
    return f"/proc/{t.pid}/exe"


def _run_in_target_python(t: Target, code: str, *args: str, timeout: float = 60.0) -> Dict[str, Any]:
    exe = _exe(t)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    try:
        p = subprocess.run([exe, "-I", "-c", code, *args], capture_output=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise AttachError(f"process {t.pid} has exited", "gone") from None
    except PermissionError:
        raise AttachError(f"cannot run process {t.pid}'s interpreter ({t.exe}): permission denied", "ptrace") from None
    except subprocess.TimeoutExpired:
        raise AttachError(f"reading process {t.pid} took longer than {timeout:.0f}s", "timeout") from None
    try:
        doc = json.loads(p.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
        if not isinstance(doc, dict):
            raise ValueError
    except (ValueError, IndexError):
        err = p.stderr.decode("utf-8", "replace").strip()[-500:]
        raise AttachError(f"malformed reply from process {t.pid}'s interpreter ({t.exe}, exit {p.returncode}): "
                          f"{err or p.stdout[:200]!r}", "malformed") from None
    return doc


def _raise_for(t: Target, doc: Dict[str, Any]) -> None:
    err = doc.get("error")
    if err is None:
        return
    ver = doc.get("python", "?")
    if err == "version":
        raise AttachError(f"process {t.pid} runs Python {ver} and has no taskleak agent: reading a process "
                          "from outside needs CPython 3.14+ (same minor version as the reader, which is why "
                          "taskleak uses the process's own interpreter); start the agent in it instead: "
                          "taskleak.serve(unix=True), `taskleak run --monitor`, or TASKLEAK_MONITOR=1", "version")
    if err == "ptrace":
        scope = _ptrace_scope()
        raise AttachError(f"not permitted to read process {t.pid}'s memory ({doc.get('detail')}): "
                          + (f"kernel.yama.ptrace_scope is {scope}; " if scope not in (None, "0") else "")
                          + "run as root or with CAP_SYS_PTRACE, or start the agent in the process", "ptrace")
    if err == "gone":
        raise AttachError(f"process {t.pid} has exited", "gone")
    if err == "inject":
        raise AttachError(f"sys.remote_exec into process {t.pid} failed: {doc.get('detail')}", "inject")
    raise AttachError(f"reading process {t.pid} (Python {ver}) failed: {doc.get('detail')}", "read")


def _ptrace_scope() -> Optional[str]:
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            return f.read().strip()
    except OSError:
        return None


def read_tasks(t: Target) -> Dict[str, Any]:
    """Every task of `t` as the outside view sees it (see the module doc)."""
    doc = _run_in_target_python(t, _READER, str(t.pid))
    _raise_for(t, doc)
    tasks = [dict(task, thread_id=th["thread_id"]) for th in doc.get("threads", []) for task in th["tasks"]]
    names = {task["id"]: task["name"] for task in tasks}
    for task in tasks:
        task["awaited_by"] = [dict(a, task_name=names.get(a["task_id"], str(a["task_id"])))
                              for a in task["awaited_by"]]
    groups: Dict[Tuple[Any, ...], List[Dict[str, Any]]] = defaultdict(list)
    for task in tasks:
        key = (tuple(tuple(f) for f in task["stack"]),
               tuple(sorted({tuple(tuple(f) for f in a["stack"]) for a in task["awaited_by"]})))
        groups[key].append(task)
    out_groups = []
    for (stack, _), members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        out_groups.append({
            "count": len(members),
            "state": "pending",
            # innermost first, as CPython reports it
            "chain": [{"function": f[0], "filename": f[1], "lineno": f[2]} for f in stack],
            "tasks": [m["name"] for m in members[:20]],
            "awaited_by": sorted({a["task_name"] for m in members for a in m["awaited_by"]})[:20],
            "created_at": None,
        })
    return {"kind": "remote", "pid": t.pid, "python": doc.get("python"), "source": "remote-debugging",
            "limitations": LIMITATIONS, "task_count": len(tasks), "groups": out_groups, "tasks": tasks}


def format_tasks(doc: Dict[str, Any]) -> str:
    n = doc["task_count"]
    lines = [f"taskleak: process {doc['pid']} (Python {doc['python']}), {n} task{'s' if n != 1 else ''} "
             f"in {len(doc['groups'])} groups",
             f"  note: {doc['limitations']}"]
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


def remote_debug_disabled(t: Target) -> Optional[str]:
    """Why ``sys.remote_exec`` is off in `t`, or None if it is not."""
    if t.environ is not None and "PYTHON_DISABLE_REMOTE_DEBUG" in t.environ:
        return "PYTHON_DISABLE_REMOTE_DEBUG is set in its environment"
    args = t.cmdline or []
    for i, a in enumerate(args[1:], 1):
        if a == "-X" and i + 1 < len(args) and args[i + 1] == "disable-remote-debug":
            return "it was started with -X disable-remote-debug"
        if a == "-Xdisable-remote-debug":
            return "it was started with -X disable-remote-debug"
        if not a.startswith("-"):
            break   # the script's own arguments follow
    return None


def inject_agent(t: Target, wait: float = 10.0) -> Agent:
    """Start the agent inside `t` with ``sys.remote_exec``; return it once it
    answers. The target runs the script at its next bytecode boundary: an
    idle event loop (blocked in epoll) delays it until something wakes it."""
    why_off = remote_debug_disabled(t)
    if why_off is not None:
        raise AttachError(f"remote debugging is turned off in process {t.pid} ({why_off}): --inject cannot start "
                          "the agent; start it in code with taskleak.serve(unix=True), or TASKLEAK_MONITOR=1",
                          "disabled")
    ver = t.python_version
    if ver is not None and ver < (3, 14):
        raise AttachError(f"--inject needs CPython 3.14+ in the target; process {t.pid} runs Python "
                          f"{ver[0]}.{ver[1]}", "version")
    fd, script = tempfile.mkstemp(prefix="taskleak-inject-", suffix=".py")
    keep = False
    err = script[:-3] + ".err"
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_AGENT_SCRIPT.format(err=err, script=script))
        # The target must read it (and may be another user, when we are root).
        os.chmod(script, 0o644)
        if os.geteuid() == 0 and t.uid != 0:
            os.chown(script, t.uid, -1)
        doc = _run_in_target_python(t, _INJECTOR, str(t.pid), script)
        if doc.get("error") == "inject" and "remote debugging" in str(doc.get("detail", "")).lower():
            raise AttachError(f"remote debugging is turned off in process {t.pid}: {doc.get('detail')}", "disabled")
        _raise_for(t, doc)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            agent = find_agent(t)
            if agent is not None:
                return agent
            if os.path.exists(err):
                with open(err) as f:
                    raise AttachError(f"the agent could not start in process {t.pid}: {f.read()[:500]} "
                                      "(is taskleak installed in the process's environment?)", "inject")
            if not os.path.exists(f"/proc/{t.pid}"):
                raise AttachError(f"process {t.pid} has exited", "gone")
            time.sleep(0.05)
        keep = True   # the process may still run it: the file must stay (PEP 768)
        raise AttachError(f"the agent did not start in process {t.pid} within {wait:.0f}s: sys.remote_exec runs "
                          "at the process's next bytecode boundary, and an idle event loop waiting in epoll does "
                          "not reach one until something wakes it; the request stays queued (the agent starts "
                          f"when the loop wakes, script {script}): try again later", "timeout")
    finally:
        for p in (() if keep else (script, err)):
            try:
                os.unlink(p)
            except OSError:
                pass
