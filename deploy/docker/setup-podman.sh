#!/usr/bin/env bash
# Install and configure podman for this kind of machine (docs/CONTAINERS.md): Debian's
# podman, buildah, runc, mmdebstrap and uidmap; runc with cgroupfs; ulimits within the host's.
set -euo pipefail

CONF=/etc/containers/containers.conf
missing=()
for tool in podman buildah runc mmdebstrap newuidmap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing podman, buildah, runc, mmdebstrap, uidmap (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq podman buildah runc mmdebstrap uidmap >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq podman buildah runc mmdebstrap uidmap >/dev/null
  }
fi

# The host's hard limits bound what a container may ask for; nproc also by kernel.pid_max.
NOFILE=$(ulimit -Hn)
[ "$NOFILE" = unlimited ] && NOFILE=65536
NPROC=$(ulimit -Hu)
if [ "$NPROC" = unlimited ] || [ "$NPROC" -gt 32768 ]; then NPROC=32768; fi
want=$(cat <<CONF
# Written by tonrail's make podman (docs/CONTAINERS.md): crun refuses hybrid cgroups here,
# and podman's default ulimits exceed this host's hard limits.
[containers]
default_ulimits = ["nofile=${NOFILE}:${NOFILE}", "nproc=${NPROC}:${NPROC}"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
)
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$want" ]; then
  mkdir -p "$(dirname "$CONF")"
  printf '%s\n' "$want" > "$CONF"
  echo "wrote $CONF"
fi
