#!/usr/bin/env bash
# The Debian packages that tests need as real components, installed once up
# front (the tests would install them themselves, but parallel pytest workers
# must not race for apt's lock): headless Chromium + its WebDriver for the
# dashboard tests, and promtool (package `prometheus`) for the alerting rules.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/ensure_chromium.sh >/dev/null
# Alertmanager for the fleet test (tests/test_fleet_alerts.py: the shipped
# rules in a real Prometheus, from package `prometheus` below, notifying a
# real Alertmanager). Without systemd Debian starts neither service; the test
# starts its own on loopback.
if ! command -v prometheus-alertmanager >/dev/null; then
    if [[ "$(id -u)" != 0 ]]; then
        echo "ensure_ci_packages: prometheus-alertmanager missing and not root: apt-get install prometheus-alertmanager" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
fi
if ! command -v promtool >/dev/null; then
    if [[ "$(id -u)" != 0 ]]; then
        echo "ensure_ci_packages: promtool missing and not root: apt-get install prometheus" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
echo "ensure_ci_packages: $(command -v chromium) $(command -v chromedriver) $(command -v promtool)"
