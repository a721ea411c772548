#!/usr/bin/env bash
# Move the mainnet services back to their previous task definitions (or the ones given),
# wait until they are stable, and run the health checks. docs/DEPLOY.md, "Rollback".
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/deploy-common.sh
source "$HERE/lib/deploy-common.sh"

CONFIRM_PHRASE="ROLLBACK MAINNET"
API_TD="" WORKER_TD=""

usage() {
  cat <<USAGE
Usage: scripts/rollback-mainnet.sh [--dry-run] [--api-task-definition ARN]
                                   [--worker-task-definition ARN] [--help]

Moves the api and worker services back to the previous revision of their task
definitions (the newest active one older than what they run), or to the ones given,
after you type "$CONFIRM_PHRASE"; waits for stable; runs the health checks (/readyz, the
hot wallet balance, metrics in CloudWatch). No down-migration is ever needed: every
migration keeps the previous release working (docs/DEPLOY.md).

Options:
  --api-task-definition ARN     roll the api back to this one
  --worker-task-definition ARN  roll the worker back to this one
  --dry-run                     print every command instead of running it
  --help                        this text

Required variables: AWS_REGION, AWS_ACCOUNT_ID, TONRAIL_PUBLIC_URL.
Optional (default): METRICS_TOKEN, STACK ($STACK),
  ECS_CLUSTER ($ECS_CLUSTER), ECS_API_SERVICE ($ECS_API_SERVICE),
  ECS_WORKER_SERVICE ($ECS_WORKER_SERVICE), STABLE_TIMEOUT ($STABLE_TIMEOUT),
  HEALTH_WAIT ($HEALTH_WAIT), METRICS_WAIT ($METRICS_WAIT), TONRAIL ($TONRAIL).
USAGE
}

while (($#)); do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --api-task-definition)
      [[ $# -ge 2 && -n $2 ]] || die "--api-task-definition needs an ARN"
      API_TD=$2
      shift
      ;;
    --worker-task-definition)
      [[ $# -ge 2 && -n $2 ]] || die "--worker-task-definition needs an ARN"
      WORKER_TD=$2
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

say "checking prerequisites"
require_tools "$TONRAIL"
require_vars AWS_REGION AWS_ACCOUNT_ID TONRAIL_PUBLIC_URL
run "$TONRAIL" deploy identity --expect-account "$AWS_ACCOUNT_ID"
if [[ -z $API_TD ]]; then
  capture API_TD "<previous api task definition>" "$TONRAIL" deploy previous-task-definition \
    --cluster "$ECS_CLUSTER" --service "$ECS_API_SERVICE"
fi
if [[ -z $WORKER_TD ]]; then
  capture WORKER_TD "<previous worker task definition>" "$TONRAIL" deploy \
    previous-task-definition --cluster "$ECS_CLUSTER" --service "$ECS_WORKER_SERVICE"
fi

say "about to move $ECS_API_SERVICE to $API_TD and $ECS_WORKER_SERVICE to $WORKER_TD"
confirm "$CONFIRM_PHRASE"
move_services "$API_TD" "$WORKER_TD" || die "the services did not become stable on $API_TD and $WORKER_TD"
health_checks || die "rolled back to $API_TD and $WORKER_TD, but the health checks fail (docs/DEPLOY.md, Emergency)"
((DRY_RUN)) || say "rolled back: $ECS_API_SERVICE on $API_TD, $ECS_WORKER_SERVICE on $WORKER_TD"
