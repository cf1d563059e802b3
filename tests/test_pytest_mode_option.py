"""`pytest --taskleak-mode=fail|warn`: the ini key taskleak_mode on the
command line (it overrides the ini), through pytester in subprocesses."""

import textwrap

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
"""

LEAKY = """
import asyncio
import pytest

async def heartbeat():
    while True:
        await asyncio.sleep(0.01)

@pytest.mark.asyncio
async def test_leaks_heartbeat():
    asyncio.create_task(heartbeat())
    await asyncio.sleep(0)
"""


def run(pytester, *args, ini=INI):
    pytester.makeini(ini)
    pytester.makepyfile(test_suite=textwrap.dedent(LEAKY))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_warn_mode_on_the_command_line_reports_without_failing(pytester):
    res = run(pytester, "--taskleak", "--taskleak-mode=warn")
    res.assert_outcomes(passed=1)
    assert res.ret == 0
    res.stdout.fnmatch_lines(
        [
            "*taskleak: reports of leaks that did not fail their test*",
            "taskleak: 1 leaked task in test_suite.py::test_leaks_heartbeat",
        ]
    )


def test_command_line_mode_overrides_the_ini(pytester):
    res = run(pytester, "--taskleak", "--taskleak-mode", "fail", ini=INI + "taskleak_mode = warn\n")
    res.assert_outcomes(passed=1, errors=1)  # the leak fails the test at teardown
    res = run(pytester, "--taskleak", "--taskleak-mode", "warn", ini=INI + "taskleak_mode = fail\n")
    res.assert_outcomes(passed=1)


def test_bad_mode_is_a_usage_error(pytester):
    res = run(pytester, "--taskleak", "--taskleak-mode=loud")
    assert res.ret == 4  # pytest's usage error
    res.stderr.fnmatch_lines(["*--taskleak-mode*invalid choice: 'loud'*"])


def test_option_is_listed_in_help(pytester):
    res = pytester.runpytest_subprocess("--help")
    res.stdout.fnmatch_lines(["*--taskleak-mode*"])
