#!/usr/bin/env bash
# libjpeg-turbo's command-line tools: jpegtran writes the many-scan progressive JPEGs that the
# hardening tests and the hostile-load script serve as crafted files (bench/crafted.ts).
set -euo pipefail
if command -v jpegtran >/dev/null; then
  exit 0
fi
echo "installing Debian's libjpeg-turbo-progs (jpegtran) for the crafted-file tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends libjpeg-turbo-progs >/dev/null
if ! command -v jpegtran >/dev/null; then
  echo "jpeg-tools.sh: jpegtran is not on PATH after installing libjpeg-turbo-progs" >&2
  exit 1
fi
