#!/usr/bin/env bash
# The Debian packages that tests need as real components, installed once up
# front (the tests would install them themselves, but parallel pytest workers
# must not race for apt's lock): headless Chromium + its WebDriver for the
# dashboard tests, promtool (package `prometheus`) for the alerting rules, and
# qemu-aarch64 (package `qemu-user`) for make dist's smoke test of the aarch64
# wheels, and Alertmanager (package `prometheus-alertmanager`; the `prometheus`
# package brings the server as well as promtool) for tests/test_fleet_alerts.py,
# which starts both on loopback (without systemd Debian starts neither).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/ensure_chromium.sh >/dev/null
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "$(id -u)" != 0 ]]; then
        echo "ensure_ci_packages: missing and not root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "ensure_ci_packages: $(command -v chromium) $(command -v chromedriver) $(command -v promtool) $(command -v qemu-aarch64) $(command -v prometheus-alertmanager)"
