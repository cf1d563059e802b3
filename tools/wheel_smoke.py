"""Smoke test of an installed taskleak wheel (run by tools/smoke_wheel.sh).

Checks, in a venv where no compiler is reachable: the import and the direct
(non-reduced) core, install() + a snapshot naming the creation line,
`taskleak run` on a leaky script, and the pytest plugin on a one-test suite.
Exits non-zero with a message on the first failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap


def fail(msg: str) -> None:
    print(f"smoke: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


# Under emulation (tools/smoke_wheel_qemu.sh) every subprocess is much slower.
TIMEOUT = float(os.environ.get("TASKLEAK_SMOKE_TIMEOUT", "120"))


def run(args: list, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, **kw)  # type: ignore[call-overload]


for cc in ("gcc", "g++", "cc", "c++", "clang", "cmake"):
    if shutil.which(cc):
        fail(f"{cc} is reachable on PATH; the smoke test must run without a compiler")

import taskleak  # noqa: E402

if "site-packages" not in taskleak.__file__:
    fail(f"taskleak imported from {taskleak.__file__}, not from the installed wheel")
taskleak.install()
status = taskleak.status()
if status["reduced_mode"]:
    fail(f"the core runs in reduced mode: {status}")


async def forgotten() -> None:
    await asyncio.sleep(3600)


async def main() -> str:
    task = asyncio.create_task(forgotten(), name="forgotten")  # SMOKE-LINE
    await asyncio.sleep(0)
    text = taskleak.snapshot().pending().format()
    task.cancel()
    return text


report = asyncio.run(main())
line = next(i for i, s in enumerate(open(__file__), 1) if "# SMOKE-LINE" in s and "next(" not in s)
if "forgotten" not in report or f"wheel_smoke.py:{line}" not in report:
    fail(f"snapshot does not name the creation line {line}:\n{report}")

with open("leaky.py", "w") as f:
    f.write(
        textwrap.dedent("""\
        import asyncio

        async def main():
            asyncio.create_task(asyncio.sleep(60), name="leaked-sleeper")
            await asyncio.sleep(0)

        asyncio.run(main())
        """)
    )
cli = os.path.join(os.path.dirname(sys.executable), "taskleak")
r = run([cli, "run", "--fail-on-leak", "leaky.py"])
if r.returncode == 0 or "leaked-sleeper" not in r.stderr + r.stdout or "leaky.py:4" not in r.stderr + r.stdout:
    fail(f"taskleak run did not report the leak (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")

with open("test_one.py", "w") as f:
    f.write(
        textwrap.dedent("""\
        import asyncio

        def test_leaks():
            async def body():
                asyncio.get_running_loop().create_task(asyncio.sleep(60))
                await asyncio.sleep(0)
            asyncio.run(body())

        def test_clean():
            asyncio.run(asyncio.sleep(0))
        """)
    )
r = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--taskleak", "test_one.py"])
out = r.stdout + r.stderr
# The leak is judged once the test's fixtures are finalised: an error at
# teardown of test_leaks, both calls passing.
if r.returncode != 1 or "2 passed, 1 error" not in out or "test_one.py:5" not in out:
    fail(f"the pytest plugin did not fail exactly the leaking test (exit {r.returncode}):\n{out}")

print(
    f"smoke: ok (taskleak {taskleak.__version__}, Python {sys.version.split()[0]}, "
    f"mechanism {status['mechanism']}, frame walk {status['frame_walk']})"
)
