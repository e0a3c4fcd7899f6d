#!/usr/bin/env bash
# Makes sure the system parts the tests need are installed and running, so `npm test` works on
# a bare machine exactly as `.ci/run` does. Each part has its own script in scripts/system/
# (idempotent: it returns at once when the part is already there). A part that cannot be
# provided fails loudly: tests never skip silently.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
shopt -s nullglob
for part in "$here"/system/*.sh; do
  echo "== system part: $(basename "$part" .sh)"
  bash "$part"
done
