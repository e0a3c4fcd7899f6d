#!/usr/bin/env bash
# Debian's Chromium, driven by playwright-core in the real-browser viewer test
# (test/http/viewer-browser.system.test.ts expects it at /usr/bin/chromium).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "installing Debian's chromium for the browser test"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends chromium fonts-dejavu-core >/dev/null
if ! /usr/bin/chromium --version; then
  echo "chromium.sh: /usr/bin/chromium is not runnable after installing it" >&2
  exit 1
fi
