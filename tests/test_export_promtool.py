"""deploy/prometheus/taskleak.rules.yml, unit-tested with the real promtool
(Debian package ``prometheus``; this test installs it with apt-get when it
is missing and it can, and fails with instructions when it cannot)."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "deploy", "prometheus")


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


def test_unit_tests_would_catch_a_broken_trend_rule(promtool, tmp_path):
    # The unit tests mean something: with the trend rule's threshold made
    # impossible, they fail.
    rules = open(os.path.join(RULES, "taskleak.rules.yml")).read()
    broken = rules.replace(
        "clamp_min(0.05 * taskleak:pending_tasks:low_water_1h offset 2h, 5)",
        "clamp_min(0.05 * taskleak:pending_tasks:low_water_1h offset 2h, 5000)",
    )
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
    assert p.returncode != 0


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
