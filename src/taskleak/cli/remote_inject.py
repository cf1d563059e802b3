"""Starting the agent inside a CPython 3.14+ process: ``--inject``.

``sys.remote_exec`` (PEP 768) runs a script inside a process at its next
bytecode boundary; taskleak asks it, through the target's own interpreter
(see ``target_interpreter``), to run ``taskleak.serve(unix=True)``, then
waits for the agent's socket. ``PYTHON_DISABLE_REMOTE_DEBUG`` and
``-X disable-remote-debug`` turn remote execution off (reading from
outside still works).
"""

from __future__ import annotations

import os
import tempfile
import time

from .attach import Agent, AttachError, Target, find_agent
from .target_interpreter import check_reply, run_in_target

__all__ = ["inject_agent", "remote_debug_disabled"]

# Runs in the target's interpreter, as a process of its own: queues the agent
# script (argv[2]) for the target (argv[1]); prints one JSON document.
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


def remote_debug_disabled(t: Target) -> str | None:
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
            break  # the script's own arguments follow
    return None


def inject_agent(t: Target, wait: float = 10.0) -> Agent:
    """Start the agent inside `t` with ``sys.remote_exec``; return it once it
    answers. The target runs the script at its next bytecode boundary: an
    idle event loop (blocked in epoll) delays it until something wakes it."""
    why_off = remote_debug_disabled(t)
    if why_off is not None:
        raise AttachError(
            f"remote debugging is turned off in process {t.pid} ({why_off}): --inject cannot start "
            "the agent; start it in code with taskleak.serve(unix=True), or TASKLEAK_MONITOR=1",
            "disabled",
        )
    ver = t.python_version
    if ver is not None and ver < (3, 14):
        raise AttachError(
            f"--inject needs CPython 3.14+ in the target; process {t.pid} runs Python {ver[0]}.{ver[1]}", "version"
        )
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
        doc = run_in_target(t, _INJECTOR, str(t.pid), script)
        if doc.get("error") == "inject" and "remote debugging" in str(doc.get("detail", "")).lower():
            raise AttachError(f"remote debugging is turned off in process {t.pid}: {doc.get('detail')}", "disabled")
        check_reply(t, doc)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            agent = find_agent(t)
            if agent is not None:
                return agent
            if os.path.exists(err):
                with open(err) as f:
                    raise AttachError(
                        f"the agent could not start in process {t.pid}: {f.read()[:500]} "
                        "(is taskleak installed in the process's environment?)",
                        "inject",
                    )
            if not os.path.exists(f"/proc/{t.pid}"):
                raise AttachError(f"process {t.pid} has exited", "gone")
            time.sleep(0.05)
        keep = True  # the process may still run it: the file must stay (PEP 768)
        raise AttachError(
            f"the agent did not start in process {t.pid} within {wait:.0f}s: sys.remote_exec runs "
            "at the process's next bytecode boundary, and an idle event loop waiting in epoll does "
            "not reach one until something wakes it; the request stays queued (the agent starts "
            f"when the loop wakes, script {script}): try again later",
            "timeout",
        )
    finally:
        for p in () if keep else (script, err):
            try:
                os.unlink(p)
            except OSError:
                pass
