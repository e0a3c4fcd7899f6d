#!/usr/bin/env bash
# The S3 cache test fills a small tmpfs (test/source/s3-full-disk.system.test.ts): mounting one
# needs root with CAP_SYS_ADMIN (a plain Debian machine as root has it; an unprivileged
# container does not). Nothing to install, only checked, loudly.
set -euo pipefail
probe="$(mktemp -d)"
trap 'umount "$probe" 2>/dev/null || true; rmdir "$probe"' EXIT
if ! mount -t tmpfs -o size=64k tmpfs "$probe" 2>/dev/null; then
  echo "tmpfs: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN); the full-disk cache test needs one" >&2
  exit 1
fi
echo "tmpfs: can mount"
