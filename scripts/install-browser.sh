#!/usr/bin/env bash
# Debian's Chromium for the call list's browser test (lead_assets_tests/test_served_call_list.py).
# Playwright drives this system browser (its own browser downloads are not needed). Idempotent.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
[[ "$(id -u)" == 0 ]] || { echo "install-browser: Chromium is missing and this is not root: run 'sudo apt-get install -y chromium'" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq chromium >&2 || { apt-get update -qq >&2 && apt-get install -y -qq chromium >&2; }
command -v chromium >/dev/null 2>&1 || { echo "install-browser: apt-get ran but there is no chromium on PATH" >&2; exit 1; }
