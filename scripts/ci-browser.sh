#!/usr/bin/env bash
# Installs what the browser test (tests/examples/test_flask_browser.py) needs: Chromium
# from Debian's packages and Playwright for Python, which drives that Chromium through
# executable_path. Idempotent. Never runs `playwright install`: no browser is downloaded.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ci-browser: Chromium is missing and installing it needs root" >&2
    exit 1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
/usr/bin/chromium --version

python="${PYTHON:-python3}"
if ! "$python" -c "import playwright.sync_api" 2>/dev/null; then
  "$python" -m pip install -q 'playwright>=1.45' \
    || "$python" -m pip install -q --break-system-packages 'playwright>=1.45'
fi
"$python" -c "from importlib.metadata import version; print('playwright', version('playwright'))"
