#!/usr/bin/env bash
# The Debian packages that tests need as real components, installed once up
# front (the tests would install them themselves, but parallel pytest workers
# must not race for apt's lock): headless Chromium + its WebDriver for the
# dashboard tests, and promtool (package `prometheus`) for the alerting rules.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/ensure_chromium.sh >/dev/null
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
