#!/usr/bin/env bash
# The benchmark's external peers: wrk (load generator) and nginx (the reference reverse proxy),
# installed from Debian's packages when missing. nginx's package would start a system-wide
# service on port 80; a temporary policy-rc.d stops that (the benchmark runs its own nginx).
set -euo pipefail
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "bench-deps.sh: installing ${missing[*]} from Debian's packages" >&2
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
