#!/usr/bin/env bash
# Debian's AWS CLI, used offline by the deploy tests: its own parameter validation checks the
# generated ECS task and service definitions (requests go to a closed loopback port, never to AWS).
# We call /usr/bin/aws by path, so another `aws` earlier on PATH (pyenv, pip) does not matter.
set -euo pipefail
if /usr/bin/aws --version >/dev/null 2>&1; then
  exit 0
fi
apt-get update -o DPkg::Lock::Timeout=300
DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=300 awscli
/usr/bin/aws --version >/dev/null 2>&1 || { echo "awscli: /usr/bin/aws is not usable after install" >&2; exit 1; }
