# shellcheck shell=bash
# Shared by scripts/deploy-mainnet-payments.sh and scripts/rollback-mainnet.sh (docs/DEPLOY.md).
# Every command that changes or reads AWS, the registry, Terraform or the service goes
# through `run` or `capture`: with --dry-run they print it (`+ cmd args`, shell-quoted)
# instead of running it. Only local read-only checks run in a dry run: the variables, the
# tools on PATH, the git commit and the testnet verification record.

DRY_RUN=0
TONRAIL=${TONRAIL:-tonrail}
# Terraform's name prefix: "<name>-<environment>" (deploy/terraform/variables.tf).
STACK=${STACK:-tonrail-production}
ECS_CLUSTER=${ECS_CLUSTER:-$STACK}
ECS_API_SERVICE=${ECS_API_SERVICE:-$STACK-api}
ECS_WORKER_SERVICE=${ECS_WORKER_SERVICE:-$STACK-worker}
STABLE_TIMEOUT=${STABLE_TIMEOUT:-900}
HEALTH_WAIT=${HEALTH_WAIT:-300}
METRICS_WAIT=${METRICS_WAIT:-600}

say() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# The command, shell-quoted, after "+ ".
show() {
  local out="+" arg
  for arg in "$@"; do out+=" $(printf '%q' "$arg")"; done
  printf '%s\n' "$out"
}

# run CMD...: print it in a dry run; otherwise log it on stderr and run it.
run() {
  if ((DRY_RUN)); then
    show "$@"
    return 0
  fi
  show "$@" >&2
  "$@"
}

# capture VAR PLACEHOLDER CMD...: VAR=$(CMD); in a dry run print CMD and set VAR=PLACEHOLDER.
capture() {
  local __var=$1 __placeholder=$2 __out
  shift 2
  if ((DRY_RUN)); then
    show "$@"
    printf -v "$__var" '%s' "$__placeholder"
    return 0
  fi
  show "$@" >&2
  __out=$("$@") || return 1
  printf -v "$__var" '%s' "$__out"
}

require_vars() {
  local missing=() v
  for v in "$@"; do
    [[ -n ${!v:-} ]] || missing+=("$v")
  done
  ((${#missing[@]} == 0)) || die "required variables not set: ${missing[*]} (docs/DEPLOY.md)"
}

require_tools() {
  local missing=() t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  ((${#missing[@]} == 0)) || die "required tools not on PATH: ${missing[*]}"
}

# confirm PHRASE: the operator types PHRASE exactly, or nothing happens.
confirm() {
  local phrase=$1 answer=""
  if ((DRY_RUN)); then
    printf '# confirmation: the operator types %s\n' "$phrase"
    return 0
  fi
  printf 'Type %s to continue: ' "$phrase" >&2
  IFS= read -r answer || true
  [[ $answer == "$phrase" ]] || die "confirmation not given (expected \"$phrase\"); nothing was changed"
}

# The services' health after a deployment or a rollback: /readyz and the hot wallet's
# balance through the public URL, then metrics arriving in CloudWatch.
health_checks() {
  run "$TONRAIL" deploy health --url "$TONRAIL_PUBLIC_URL" --wait "$HEALTH_WAIT" || return 1
  run "$TONRAIL" deploy check-metrics --since-minutes 10 --wait "$METRICS_WAIT" || return 1
}

# move_services API_TD WORKER_TD: both services to these task definitions, then stable.
move_services() {
  run "$TONRAIL" deploy update-service --cluster "$ECS_CLUSTER" \
    --service "$ECS_API_SERVICE" --task-definition "$1" || return 1
  run "$TONRAIL" deploy update-service --cluster "$ECS_CLUSTER" \
    --service "$ECS_WORKER_SERVICE" --task-definition "$2" || return 1
  run "$TONRAIL" deploy wait-stable --cluster "$ECS_CLUSTER" \
    --service "$ECS_API_SERVICE" --service "$ECS_WORKER_SERVICE" \
    --timeout "$STABLE_TIMEOUT" || return 1
}
