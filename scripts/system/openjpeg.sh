#!/usr/bin/env bash
# Debian's OpenJPEG for native JPEG 2000: the library and headers the addon in native/openjp2
# links (libopenjp2-7-dev), the compiler node-gyp needs, and the reference tools the tests
# compare against (opj_compress, opj_decompress, opj_dump from libopenjp2-tools). Then builds
# the addon if it is not built yet and checks that Node can load it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
addon="$root/native/openjp2/build/Release/openjp2.node"
packages=()
[ -f /usr/include/openjpeg-2.5/openjpeg.h ] || packages+=(libopenjp2-7-dev)
command -v opj_compress >/dev/null && command -v opj_decompress >/dev/null && command -v opj_dump >/dev/null || packages+=(libopenjp2-tools)
for tool in python3 make g++; do command -v "$tool" >/dev/null || packages+=("$tool"); done
if [ "${#packages[@]}" -gt 0 ]; then
  echo "installing ${packages[*]} for JPEG 2000"
  apt-get update -qq -o DPkg::Lock::Timeout=300
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${packages[@]}" >/dev/null
fi
if [ ! -f "$addon" ]; then
  (cd "$root" && npm run --silent build:native -- openjp2)
fi
if ! node -e 'require(process.argv[1])' "$addon"; then
  echo "openjpeg.sh: the native JPEG 2000 decoder ($addon) does not load" >&2
  exit 1
fi
