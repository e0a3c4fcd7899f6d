#!/usr/bin/env bash
# Debian's libjpeg-turbo for the native JPEG tile renderer: the headers the addon in
# native/jpegtiles compiles against (libjpeg62-turbo-dev) and the compiler node-gyp needs. Then
# builds the addon if it is not built yet and checks that Node can load it (the tests compare its
# responses with libtiff's pixels and with the sharp path's: test/http/foreign-pyramids.system.test.ts,
# test/image/tiles/jpeg-native.system.test.ts).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
addon="$root/native/jpegtiles/build/Release/jpegtiles.node"
packages=()
[ -f /usr/include/jpeglib.h ] || packages+=(libjpeg62-turbo-dev)
for tool in python3 make g++; do command -v "$tool" >/dev/null || packages+=("$tool"); done
if [ "${#packages[@]}" -gt 0 ]; then
  echo "installing ${packages[*]} for the native JPEG tile renderer"
  apt-get update -qq -o DPkg::Lock::Timeout=300
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${packages[@]}" >/dev/null
fi
if [ ! -f "$addon" ]; then
  (cd "$root" && npm run --silent build:native -- jpegtiles)
fi
if ! node -e 'require(process.argv[1])' "$addon"; then
  echo "libjpeg-turbo.sh: the native JPEG tile renderer ($addon) does not load" >&2
  exit 1
fi
