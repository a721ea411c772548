#!/usr/bin/env bash
# The production-like stack on this machine, from the image (docs/CONTAINERS.md):
# localnet, migrate (once), 2 x worker, 2 x serve behind one port (balancer.py), against the
# machine's PostgreSQL (a database of its own) and Redis, all with podman on the host network,
# every container non-root with a read-only root filesystem. compose.yaml is the same stack
# for a machine that can pull postgres and redis images.
#
#   stack.sh up     (re)create it from scratch: fresh database and chain, then var/stack.env
#   stack.sh down   remove its containers (STACK_PURGE=1: also its database and volumes)
#
# Settings (environment): STACK_NAME (container prefix, default tonrail-stack), STACK_DB,
# STACK_PORT (the API's one port, default 8100; serve uses +1 and +2), STACK_LOCALNET_PORT
# (default 8181), STACK_ENV_FILE (default var/stack.env), IMAGE (a full reference, default
# $IMAGE_REPO:latest; IMAGE_REPO defaults to localhost/tonrail, as in build-image.sh),
# PG_ADMIN_URL, STACK_REDIS_URL, STACK_LEASE_SECONDS (the workers' lease, default 120).
set -euo pipefail
cd "$(dirname "$0")/../.."

NAME=${STACK_NAME:-tonrail-stack}
DB=${STACK_DB:-tonrail_stack}
PORT=${STACK_PORT:-8100}
LOCALNET_PORT=${STACK_LOCALNET_PORT:-8181}
ENV_OUT=${STACK_ENV_FILE:-var/stack.env}
IMAGE_REPO=${IMAGE_REPO:-localhost/tonrail}
IMAGE=${IMAGE:-$IMAGE_REPO:latest}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
REDIS=${STACK_REDIS_URL:-redis://127.0.0.1:6379/0}
LEASE=${STACK_LEASE_SECONDS:-120}
STATE=var/stacks/$NAME  # the app's environment file (secrets: mode 0600)
CONTAINERS=(serve-1 serve-2 worker-1 worker-2 balancer localnet)
PG_URL=${PG_ADMIN_URL%/*}/$DB

log() { printf 'stack %s: %s\n' "$NAME" "$*" >&2; }

# Every container: host network, read-only root, writes only to /tmp (tmpfs) and /data.
run() {
  local role=$1
  shift
  podman run --detach --name "$NAME-$role" --hostname "$NAME-$role" --network host \
    --read-only --tmpfs /tmp:rw,size=64m --label "tonrail.stack=$NAME" "$@" >/dev/null
}

once() {  # a one-off tonrail command against the stack's database (like an ECS run-task)
  podman run --rm --network host --read-only --tmpfs /tmp:rw,size=64m --no-healthcheck \
    --env-file "$STATE/app.env" -v "$NAME-keys:/keys" "$IMAGE" "$@"
}

wait_http() {
  local url=$1 what=$2
  for _ in $(seq 1 120); do
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    sleep 0.5
  done
  log "$what did not answer at $url"
  podman logs --tail 40 "$NAME-${3:-serve-1}" >&2 || true
  return 1
}

down() {
  for c in "${CONTAINERS[@]}"; do
    podman rm --force --volumes --time 20 "$NAME-$c" >/dev/null 2>&1 || true
  done
  if [ "${STACK_PURGE:-0}" = 1 ]; then
    podman volume rm --force "$NAME-localnet" "$NAME-keys" >/dev/null 2>&1 || true
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null
    rm -rf "$STATE"
  fi
}

up() {
  podman image exists "$IMAGE" || { log "no image $IMAGE: run make image"; exit 2; }
  STACK_PURGE=1 down
  mkdir -p "$STATE" "$(dirname "$ENV_OUT")"
  log "database $DB"
  psql "$PG_ADMIN_URL" -qc "CREATE DATABASE \"$DB\"" >/dev/null

  log "localnet on :$LOCALNET_PORT"
  run localnet --no-healthcheck -v "$NAME-localnet:/data" "$IMAGE" \
    localnet --host 127.0.0.1 --port "$LOCALNET_PORT" --state /data/localnet.sqlite3
  local chain="http://127.0.0.1:$LOCALNET_PORT"
  wait_http "$chain/localnet/status" localnet localnet
  # The app's configuration, as the task definition gives it in production.
  umask 077
  cat >"$STATE/app.env" <<ENV
ENVIRONMENT=production
LOG_JSON=true
LOG_LEVEL=INFO
DATABASE_URL=${PG_URL/postgresql:/postgresql+asyncpg:}
REDIS_URL=$REDIS
TON_NETWORK=localnet
TON_API_URL=$chain/api/v2
TON_API_V3_URL=$chain/api/v3
TON_MASTER_KEY_FILE=/keys/hot_wallet.key
TON_KEY_PASSPHRASE=$(head -c 24 /dev/urandom | base64)
JWT_SECRET=$(head -c 36 /dev/urandom | base64)
WORKER_LEASE_SECONDS=$LEASE
BOOTSTRAP_DEMO=false
ENV
  umask 022

  log "migrate"
  podman volume create "$NAME-keys" >/dev/null
  once migrate >&2
  log "hot wallet key and opening balance (localnet_bootstrap.py)"
  local chain_env
  chain_env=$(podman run --rm --network host --read-only --no-healthcheck \
    --env-file "$STATE/app.env" -v "$NAME-keys:/keys" \
    -v "$PWD/deploy/docker/localnet_bootstrap.py:/localnet_bootstrap.py:ro" \
    --entrypoint /opt/tonrail/bin/python "$IMAGE" /localnet_bootstrap.py --localnet "$chain")
  grep -E '^(USDT_JETTON_MASTER|PAYMENT_PROCESSOR_ADDRESS)=' <<<"$chain_env" >>"$STATE/app.env"
  local usdt_master hot_address payer_address payer_key
  usdt_master=$(sed -n 's/^USDT_JETTON_MASTER=//p' <<<"$chain_env")
  hot_address=$(sed -n 's/^PAYMENT_PROCESSOR_ADDRESS=//p' <<<"$chain_env")
  payer_address=$(sed -n 's/^PAYER_ADDRESS=//p' <<<"$chain_env")
  payer_key=$(sed -n 's/^PAYER_PRIVATE_KEY=//p' <<<"$chain_env")
  local api_key
  api_key=$(once keys create --account acct_stack --name stack | sed -n 's/^secret: //p')
  [ -n "$api_key" ] || { log "no API key created"; exit 1; }

  log "2 x worker, 2 x serve, balancer on :$PORT"
  for i in 1 2; do
    run "worker-$i" --env-file "$STATE/app.env" -v "$NAME-keys:/keys:ro" --no-healthcheck \
      --stop-timeout 30 "$IMAGE" worker
    run "serve-$i" --env-file "$STATE/app.env" -e HOST=127.0.0.1 -e PORT=$((PORT + i)) \
      --stop-timeout 30 "$IMAGE" serve
  done
  run balancer --no-healthcheck -v "$PWD/deploy/docker/balancer.py:/balancer.py:ro" \
    --entrypoint /opt/tonrail/bin/python "$IMAGE" /balancer.py --listen "127.0.0.1:$PORT" \
    --backend "127.0.0.1:$((PORT + 1))" --backend "127.0.0.1:$((PORT + 2))"
  for i in 1 2; do
    wait_http "http://127.0.0.1:$((PORT + i))/readyz" "serve-$i" "serve-$i"
  done
  wait_http "http://127.0.0.1:$PORT/readyz" "the balancer" balancer

  cat >"$ENV_OUT" <<ENV
# Written by make stack-up (deploy/docker/stack.sh): how to reach and pay this deployment.
# Format: docs/CONTAINERS.md, "var/stack.env". Secrets inside: do not commit or share.
TONRAIL_NETWORK=localnet
TONRAIL_API_URL=http://127.0.0.1:$PORT
TONRAIL_API_KEY=$api_key
TONRAIL_TONCENTER_URL=$chain
TONRAIL_TONCENTER_V2_URL=$chain/api/v2
TONRAIL_TONCENTER_V3_URL=$chain/api/v3
TONRAIL_TONCENTER_API_KEY=
TONRAIL_LOCALNET_URL=$chain
TONRAIL_USDT_MASTER=$usdt_master
TONRAIL_HOT_WALLET_ADDRESS=$hot_address
TONRAIL_PAYER_WALLET=v5r1
TONRAIL_PAYER_ADDRESS=$payer_address
TONRAIL_PAYER_PRIVATE_KEY=$payer_key
TONRAIL_DATABASE_URL=${PG_URL/postgresql:/postgresql+asyncpg:}
TONRAIL_IMAGE=$IMAGE
TONRAIL_STACK_NAME=$NAME
ENV
  chmod 600 "$ENV_OUT"
  log "up: API http://127.0.0.1:$PORT (dashboard /dashboard), chain $chain; wrote $ENV_OUT"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
