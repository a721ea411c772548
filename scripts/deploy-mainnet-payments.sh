#!/usr/bin/env bash
# Deploy tonrail to mainnet on AWS: prerequisites, typed confirmation, image, Terraform,
# migrations, new task definitions, health checks, and a rollback by itself when they fail.
# docs/DEPLOY.md walks through it; --help lists the variables.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/deploy-common.sh
source "$HERE/lib/deploy-common.sh"

CONFIRM_PHRASE="DEPLOY MAINNET"
FIRST_DEPLOY=0

usage() {
  cat <<USAGE
Usage: scripts/deploy-mainnet-payments.sh [--dry-run] [--first-deploy] [--help]

Deploys the checked-out commit (clean tree) to the mainnet production stack:
  1. prerequisites: tools, variables, a passing testnet verification record for this
     commit (make verify-testnet-payments), the AWS identity, the secrets present
  2. asks you to type "$CONFIRM_PHRASE"
  3. builds the image and pushes it to ECR tagged with the git SHA
  4. terraform init, plan and apply (-var image_tag=<git SHA>)
  5. runs "tonrail migrate" as a one-off ECS task with the new task definition
  6. moves the api and worker services to the new task definitions, waits for stable
  7. health checks: /readyz, the hot wallet balance (/metrics), metrics in CloudWatch
  If 6 or 7 fails the services go back to the task definitions they ran before, and the
  script exits 1. Migrations are backward compatible for one release (docs/DEPLOY.md).

Options:
  --dry-run       print every command instead of running it (only the local read-only
                  checks run: variables, tools, git commit, the testnet record)
  --first-deploy  the services do not exist yet: nothing to roll back to
  --help          this text

Required variables:
  AWS_REGION           region of the stack (also the AWS CLI/SDK region)
  AWS_ACCOUNT_ID       the account the stack lives in; any other identity is refused
  SSL_CERTIFICATE_ARN  ACM certificate of the HTTPS listener
  ECR_REPOSITORY_URL   terraform output ecr_repository_url
  TONRAIL_PUBLIC_URL   https://... the service's public URL, for the health checks
Optional variables (default):
  METRICS_TOKEN        bearer token of /metrics, if the stack sets one
  STACK ($STACK): Terraform's name prefix, <name>-<environment>
  ECS_CLUSTER ($ECS_CLUSTER), ECS_API_SERVICE ($ECS_API_SERVICE),
  ECS_WORKER_SERVICE ($ECS_WORKER_SERVICE)
  REQUIRED_SECRETS ($REQUIRED_SECRETS_DEFAULT; without TON_KEY_PASSPHRASE when the tfvars
  set hot_wallet_kek = "aws-kms"), under SECRETS_PREFIX (STACK/)
  TF_DIR (deploy/terraform), with variables.tfvars and variables-payments.tfvars
  CONTAINER_CLI (docker; podman works), DOCKERFILE (deploy/docker/Dockerfile)
  REHEARSAL_RECORD_DIR (var/rehearsal), REHEARSAL_MAX_AGE_HOURS (24)
  STABLE_TIMEOUT (900), HEALTH_WAIT (300), METRICS_WAIT (600) in seconds
  TONRAIL (tonrail): the tonrail command, from this checkout's venv
USAGE
}

REQUIRED_SECRETS_DEFAULT="JWT_SECRET TON_API_KEY TON_MASTER_KEY TON_KEY_PASSPHRASE"

while (($#)); do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --first-deploy) FIRST_DEPLOY=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

REPO_ROOT=$(cd "$HERE/.." && pwd)
cd "$REPO_ROOT"
TF_DIR=${TF_DIR:-deploy/terraform}
CONTAINER_CLI=${CONTAINER_CLI:-docker}
DOCKERFILE=${DOCKERFILE:-deploy/docker/Dockerfile}
SECRETS_PREFIX=${SECRETS_PREFIX:-$STACK/}
# An aws-kms hot-wallet envelope (hot_wallet_kek = "aws-kms" in the tfvars) has no passphrase
# secret: Terraform creates none, so none is checked.
if grep -Eqs '^[[:space:]]*hot_wallet_kek[[:space:]]*=[[:space:]]*"aws-kms"' \
  "$TF_DIR/variables.tfvars" "$TF_DIR/variables-payments.tfvars"; then
  REQUIRED_SECRETS_DEFAULT=${REQUIRED_SECRETS_DEFAULT/ TON_KEY_PASSPHRASE/}
fi
read -r -a SECRETS <<<"${REQUIRED_SECRETS:-$REQUIRED_SECRETS_DEFAULT}"
REHEARSAL_MAX_AGE_HOURS=${REHEARSAL_MAX_AGE_HOURS:-24}

# --- 1. prerequisites ---------------------------------------------------------------------
say "checking prerequisites"
require_tools git "$CONTAINER_CLI" terraform "$TONRAIL"
require_vars AWS_REGION AWS_ACCOUNT_ID SSL_CERTIFICATE_ARN ECR_REPOSITORY_URL TONRAIL_PUBLIC_URL
for f in variables.tfvars variables-payments.tfvars; do
  [[ -f $TF_DIR/$f ]] || die "$TF_DIR/$f is missing (copy $f.example and fill it in)"
done
[[ -z $(git status --porcelain --untracked-files=no) ]] ||
  die "the work tree has uncommitted changes: deploy a commit, not a work tree"
GIT_SHA=$(git rev-parse HEAD)
IMAGE="$ECR_REPOSITORY_URL:$GIT_SHA"
REGISTRY=${ECR_REPOSITORY_URL%%/*}
"$TONRAIL" deploy check-record --sha "$GIT_SHA" --max-age-hours "$REHEARSAL_MAX_AGE_HOURS" >&2 ||
  die "no passing testnet verification for $GIT_SHA: nothing was changed"
run "$TONRAIL" deploy identity --expect-account "$AWS_ACCOUNT_ID"
secret_ids=()
for s in "${SECRETS[@]}"; do secret_ids+=("$SECRETS_PREFIX$s"); done
run "$TONRAIL" deploy check-secrets "${secret_ids[@]}"

# --- 2. confirmation ----------------------------------------------------------------------
say "about to deploy $GIT_SHA to $ECS_CLUSTER in $AWS_REGION (account $AWS_ACCOUNT_ID)"
confirm "$CONFIRM_PHRASE"

# --- 3. image -----------------------------------------------------------------------------
say "building and pushing $IMAGE"
run "$CONTAINER_CLI" build --file "$DOCKERFILE" --tag "$IMAGE" .
if ((DRY_RUN)); then
  printf '+ %s deploy ecr-password | %s login --username AWS --password-stdin %s\n' \
    "$TONRAIL" "$CONTAINER_CLI" "$REGISTRY"
else
  show "$TONRAIL" deploy ecr-password "|" "$CONTAINER_CLI" login --username AWS \
    --password-stdin "$REGISTRY" >&2
  "$TONRAIL" deploy ecr-password | "$CONTAINER_CLI" login --username AWS --password-stdin "$REGISTRY"
fi
run "$CONTAINER_CLI" push "$IMAGE"

# --- what runs now, to roll back to ------------------------------------------------------
PREV_API="" PREV_WORKER=""
if ((!FIRST_DEPLOY)); then
  capture PREV_API "<api task definition now>" "$TONRAIL" deploy current-task-definition \
    --cluster "$ECS_CLUSTER" --service "$ECS_API_SERVICE"
  capture PREV_WORKER "<worker task definition now>" "$TONRAIL" deploy current-task-definition \
    --cluster "$ECS_CLUSTER" --service "$ECS_WORKER_SERVICE"
fi

# --- 4. infrastructure --------------------------------------------------------------------
say "terraform plan and apply"
PLAN="tfplan-$GIT_SHA"
run terraform -chdir="$TF_DIR" init -input=false
run terraform -chdir="$TF_DIR" plan -input=false -var-file=variables.tfvars \
  -var-file=variables-payments.tfvars -var "image_tag=$GIT_SHA" \
  -var "aws_region=$AWS_REGION" -var "ssl_certificate_arn=$SSL_CERTIFICATE_ARN" -out="$PLAN"
run terraform -chdir="$TF_DIR" apply -input=false "$PLAN"
capture NEW_API "<new api task definition>" terraform -chdir="$TF_DIR" output -raw \
  api_task_definition_arn
capture NEW_WORKER "<new worker task definition>" terraform -chdir="$TF_DIR" output -raw \
  worker_task_definition_arn

# --- 5. migrations ------------------------------------------------------------------------
say "running tonrail migrate as a one-off task"
run "$TONRAIL" deploy migrate --cluster "$ECS_CLUSTER" --task-definition "$NEW_API" \
  --like-service "$ECS_API_SERVICE" --timeout "$STABLE_TIMEOUT" ||
  die "the migration failed; the services still run ${PREV_API:-what they ran} (backward compatible schema)"

# --- 6 and 7. deploy, health, or roll back -------------------------------------------------
deploy_and_check() {
  say "moving the services to the new task definitions"
  move_services "$NEW_API" "$NEW_WORKER" || return 1
  say "health checks"
  health_checks || return 1
}

if ((DRY_RUN)); then
  deploy_and_check
  printf '# if a step above fails: the services go back to %s and %s, wait for stable, health checks\n' \
    "$PREV_API" "$PREV_WORKER"
  exit 0
fi
if deploy_and_check; then
  say "deployed $GIT_SHA: $NEW_API, $NEW_WORKER"
  exit 0
fi
if ((FIRST_DEPLOY)); then
  die "the first deployment failed its checks; there is nothing to roll back to"
fi
say "deployment failed its checks: rolling back to $PREV_API and $PREV_WORKER"
if move_services "$PREV_API" "$PREV_WORKER" && health_checks; then
  die "deployment of $GIT_SHA failed; rolled back to $PREV_API and $PREV_WORKER, which pass the checks"
fi
die "deployment of $GIT_SHA failed AND the rollback did not pass its checks: act now (docs/DEPLOY.md, Emergency)"
