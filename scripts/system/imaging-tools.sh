#!/usr/bin/env bash
# Other programs' TIFF pyramid writers and libtiff's own decoder, for the tests that check
# stored-tile pass-through on pyramids this project did not make (test/image/tiles/jpeg-tile.system.test.ts, test/http/foreign-pyramids.system.test.ts)
# and the benchmark's foreign workloads: Debian's vips (libvips 8.14), ImageMagick's ptif:
# writer, tiffcp/tiffinfo (libtiff) and cjpeg/jpegtran (restart markers, 4:2:2 sampling).
set -euo pipefail
tools=(/usr/bin/vips /usr/bin/convert /usr/bin/tiffcp /usr/bin/tiffinfo /usr/bin/cjpeg /usr/bin/jpegtran)
present() {
  for tool in "${tools[@]}"; do [ -x "$tool" ] || return 1; done
  # Some images put a stand-in called convert on the PATH; this must be ImageMagick's own.
  /usr/bin/convert -version 2>/dev/null | grep -q ImageMagick
}
if present; then
  exit 0
fi
echo "installing Debian's libvips-tools, imagemagick, libtiff-tools and libjpeg-turbo-progs for the foreign-pyramid tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq -o DPkg::Lock::Timeout=300
apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends libvips-tools imagemagick libtiff-tools libjpeg-turbo-progs >/dev/null
if ! present; then
  echo "imaging-tools.sh: ${tools[*]} are not all runnable after installing them" >&2
  exit 1
fi
