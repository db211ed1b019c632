#!/usr/bin/env bash
# Make sure Debian's headless-capable `chromium` is installed: the shadow report's HTML test opens
# the page in it to check what a person would see. Installs from Debian's packages when missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
echo "chromium.sh: installing chromium from Debian's packages" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
