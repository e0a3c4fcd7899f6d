#!/usr/bin/env bash
# Debian's OpenJPEG for native JPEG 2000: the library and headers the addon in native/openjp2
# links (libopenjp2-7-dev), the compiler node-gyp needs, and the reference tools the tests
# compare against (opj_compress, opj_decompress, opj_dump from libopenjp2-tools). Then builds
# the addon if it is missing or stale and checks that Node can load it.
set -euo pipefail
source "$(dirname "$0")/lib/native-addon.sh"
packages=()
[ -f /usr/include/openjpeg-2.5/openjpeg.h ] || packages+=(libopenjp2-7-dev)
command -v opj_compress >/dev/null && command -v opj_decompress >/dev/null && command -v opj_dump >/dev/null || packages+=(libopenjp2-tools)
ensure_native_addon openjp2 "native JPEG 2000 decoder" "${packages[@]}"
