#!/usr/bin/env bash
# Debian's chromium package, for the browser test (tests/test_browser.py). Needs root (or sudo).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "error: chromium is missing and installing it needs root: apt-get install chromium" >&2; exit 1; }
  SUDO="sudo"
fi
echo "installing Debian's chromium for the browser test"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
chromium --version
