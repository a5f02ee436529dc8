#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian, for tests/test_explorer_browser.py.
# Installs only what is missing; selenium drives these binaries and never downloads a browser.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver
