#!/usr/bin/env bash
# Make sure Debian's headless Chromium and its WebDriver are installed: the
# dashboard tests (tests/test_dashboard.py) drive them through selenium.
# Idempotent; installs only when missing, and only as root (CI runs as root).
# Prints the chromium and chromedriver paths on success.
set -euo pipefail

find_bin() { command -v "$1" 2>/dev/null || { [ -x "$2" ] && echo "$2"; } || true; }

browser="$(find_bin chromium /usr/bin/chromium)"
driver="$(find_bin chromedriver /usr/bin/chromedriver)"
if [ -z "$browser" ] || [ -z "$driver" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "ensure_chromium: chromium/chromedriver missing and not root: apt-get install chromium chromium-driver" >&2
        exit 1
    fi
    echo "ensure_chromium: installing chromium chromium-driver (Debian)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
    browser="$(find_bin chromium /usr/bin/chromium)"
    driver="$(find_bin chromedriver /usr/bin/chromedriver)"
fi
[ -n "$browser" ] && [ -n "$driver" ] || { echo "ensure_chromium: install failed" >&2; exit 1; }
echo "$browser"
echo "$driver"
