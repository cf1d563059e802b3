"""deploy/prometheus/taskleak.rules.yml, unit-tested with the real promtool
(Debian package ``prometheus``; this test installs it with apt-get when it
is missing and it can, and fails with instructions when it cannot).

once_per_ci (tests/conftest.py): promtool checks the shipped rule and
dashboard files, which are the same whatever CPython runs the suite, so
.ci/run runs this module on 3.11 and 3.15 only."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "deploy", "prometheus")

pytestmark = pytest.mark.once_per_ci


@pytest.fixture(scope="module")
def promtool():
    path = shutil.which("promtool")
    if path is None and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"],
            env=env,
            capture_output=True,
            timeout=900,
        )
        path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's 'prometheus' package (apt-get install prometheus) "
            "or put promtool on PATH"
        )
    return path


def test_rules_are_valid(promtool):
    p = subprocess.run(
        [promtool, "check", "rules", "taskleak.rules.yml"], cwd=RULES, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


def test_rules_unit_tests_pass(promtool):
    p = subprocess.run(
        [promtool, "test", "rules", "taskleak.rules.test.yml"], cwd=RULES, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stdout + p.stderr


# Each mutation breaks one promise of the rules; the unit tests must notice.
MUTATIONS = {
    # the trend rule's threshold made impossible
    "trend": (
        "clamp_min(0.05 * taskleak:pending_tasks:low_water_1h offset 2h, 5)",
        "clamp_min(0.05 * taskleak:pending_tasks:low_water_1h offset 2h, 5000)",
    ),
    # the verdict without the creation line: Alertmanager would not say where
    "site": (
        "max by (job, instance, signal, group, detector, site) (taskleak_leak_suspected)",
        "max by (job, instance, signal, group, detector) (taskleak_leak_suspected)",
    ),
    # the spike rule judging a fresh instance against its first minutes
    "young-spike": ("          and\n          taskleak:pending_tasks:sum offset 1h\n", ""),
    # a loss at loop shutdown paged like a live one
    "shutdown-loss": ('kind=~"gc-pending|never-retrieved"', 'kind=~"gc-pending|never-retrieved|pending-at-shutdown"'),
    # stale tasks judged on one rising window: a step of connections pages
    "stale-step": (
        """          and
          min_over_time(taskleak_asyncio_stale_tasks{allowlisted="false", group!="other"}[5m] offset 5m)
            > min_over_time(taskleak_asyncio_stale_tasks{allowlisted="false", group!="other"}[5m] offset 10m)
""",
        "",
    ),
    # stale tasks of allow-listed groups paged
    "stale-allowed": (
        'taskleak_asyncio_stale_tasks{allowlisted="false", group!="other"}',
        'taskleak_asyncio_stale_tasks{group!="other"}',
    ),
    # a blocked loop never alerting
    "blocked": (
        "(rate(taskleak_event_loop_blocked_seconds_total[5m])) > 0.05",
        "(rate(taskleak_event_loop_blocked_seconds_total[5m])) > 0.5",
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_unit_tests_would_catch_a_broken_rule(promtool, tmp_path, name):
    old, new = MUTATIONS[name]
    rules = open(os.path.join(RULES, "taskleak.rules.yml")).read()
    broken = rules.replace(old, new)
    assert broken != rules
    (tmp_path / "taskleak.rules.yml").write_text(broken)
    shutil.copy(os.path.join(RULES, "taskleak.rules.test.yml"), tmp_path)
    p = subprocess.run(
        [promtool, "test", "rules", "taskleak.rules.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode != 0, f"the unit tests pass with the {name} rule broken"


def test_grafana_dashboard_queries_are_valid_promql(promtool, tmp_path):
    import json

    dash = json.load(open(os.path.join(ROOT, "deploy", "grafana", "taskleak-dashboard.json")))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    # Each query as a recording rule: promtool parses them all (dashboard
    # variables replaced by what Grafana would put there).
    rules = "groups:\n  - name: dashboard\n    rules:\n"
    for i, e in enumerate(exprs):
        e = e.replace("$job", ".*").replace("$instance", ".*")
        rules += f"      - record: dashboard:query_{i}\n        expr: {json.dumps(e)}\n"
    (tmp_path / "dash.rules.yml").write_text(rules)
    p = subprocess.run(
        [promtool, "check", "rules", "dash.rules.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stdout + p.stderr
