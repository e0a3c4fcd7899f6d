# Shared by the scripts/system/*.sh that provide one of the native addons (sourced, not run:
# scripts/ensure-system.sh runs only scripts/system/*.sh).
#
# ensure_native_addon NAME LABEL [PACKAGE...]
#   Installs PACKAGE... (the Debian packages the caller found missing) and the compiler
#   node-gyp needs; builds native/NAME when its addon is missing or older than its sources (a
#   checkout that changed native/ since the last build would otherwise test the old addon);
#   fails loudly unless Node can load it.
ensure_native_addon() {
  local name="$1" label="$2"
  shift 2
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
  local addon="$root/native/$name/build/Release/$name.node"
  local packages=("$@") tool
  for tool in python3 make g++; do command -v "$tool" >/dev/null || packages+=("$tool"); done
  if [ "${#packages[@]}" -gt 0 ]; then
    echo "installing ${packages[*]} for the $label"
    apt-get update -qq -o DPkg::Lock::Timeout=300
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${packages[@]}" >/dev/null
  fi
  if [ ! -f "$addon" ] || [ -n "$(find "$root/native/$name/src" "$root/native/$name/binding.gyp" "$root/native/common" -newer "$addon" -print -quit)" ]; then
    (cd "$root" && npm run --silent build:native -- "$name")
  fi
  if ! node -e 'require(process.argv[1])' "$addon"; then
    echo "$name: the $label ($addon) does not load" >&2
    exit 1
  fi
}
