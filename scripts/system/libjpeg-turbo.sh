#!/usr/bin/env bash
# Debian's libjpeg-turbo for the native JPEG tile renderer: the headers the addon in
# native/jpegtiles compiles against (libjpeg62-turbo-dev) and the compiler node-gyp needs. Then
# builds the addon if it is missing or stale and checks that Node can load it (the tests compare
# its responses with libtiff's pixels and with the sharp path's:
# test/http/foreign-pyramids.system.test.ts, test/image/tiles/jpeg-native.system.test.ts).
set -euo pipefail
source "$(dirname "$0")/lib/native-addon.sh"
packages=()
[ -f /usr/include/jpeglib.h ] || packages+=(libjpeg62-turbo-dev)
ensure_native_addon jpegtiles "native JPEG tile renderer" "${packages[@]}"
