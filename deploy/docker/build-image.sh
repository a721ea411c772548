#!/usr/bin/env bash
# Build the tonrail image with podman: IMAGE (default $IMAGE_REPO:<git sha>) and
# $IMAGE_REPO:latest. IMAGE_REPO (default localhost/tonrail) is a repository, IMAGE a full
# reference, as in stack.sh: `IMAGE=localhost/tonrail:v1 make deploy-testnet` builds and runs it.
# Without a registry the base comes from Debian's mirror: localhost/tonrail-base:bookworm is
# made with mmdebstrap only when it is missing (docs/CONTAINERS.md), so later builds reuse it.
# Elsewhere pass BASE_IMAGE=python:3.11-slim-bookworm (the Dockerfile's default) to skip it.
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE_IMAGE=${BASE_IMAGE:-localhost/tonrail-base:bookworm}
IMAGE_REPO=${IMAGE_REPO:-localhost/tonrail}
TAG=${TAG:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo dev)}
IMAGE=${IMAGE:-$IMAGE_REPO:$TAG}

make_base() {
  local sources=/etc/apt/sources.list tar found
  for found in /etc/apt/sources.list.d/*.sources; do
    [ -e "$found" ] && { sources=$found; break; }
  done
  tar=$(mktemp --suffix=.tar)
  trap 'rm -f "$tar"' RETURN
  local hooks=()
  # The machine's extra CAs (an HTTPS proxy's) so pip reaches the index during the build.
  for crt in /usr/local/share/ca-certificates/*.crt; do
    [ -e "$crt" ] && hooks+=(--customize-hook="copy-in $crt /usr/local/share/ca-certificates/")
  done
  echo "making $BASE_IMAGE with mmdebstrap from $sources"
  # shellcheck disable=SC2016 # "$1" is the hooks' own argument (the new root), not ours
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,python3,python3-venv \
    "${hooks[@]}" \
    --customize-hook='chroot "$1" update-ca-certificates' \
    --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$tar" "$sources"
  podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["/bin/bash"]' "$tar" "$BASE_IMAGE" >/dev/null
}

if [[ "$BASE_IMAGE" == localhost/* ]] && ! podman image exists "$BASE_IMAGE"; then
  make_base
fi

podman build --format docker --layers \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg VCS_REF="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -f deploy/docker/Dockerfile -t "$IMAGE" -t "$IMAGE_REPO:latest" .
echo "built $IMAGE"
