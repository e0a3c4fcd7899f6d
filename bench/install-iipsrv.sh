#!/usr/bin/env bash
# Installs the comparison server (Debian's iipimage-server under lighttpd) when missing.
set -euo pipefail
if [ -x /usr/sbin/lighttpd ] && [ -x /usr/lib/iipimage-server/iipsrv.fcgi ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "bench:compare needs lighttpd and iipimage-server: run as root or apt-get install them" >&2; exit 1; fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends lighttpd iipimage-server
