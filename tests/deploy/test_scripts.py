"""scripts/deploy-mainnet-payments.sh and scripts/rollback-mainnet.sh, run as an operator
would, in a clean git checkout with stand-ins for the outside world on PATH: `docker` and
`terraform` that only log their arguments, and a `tonrail` that logs its `deploy` steps and
answers them, except `deploy check-record`, which is the real command on real record files.
So the tests see the exact commands, in order, and that a refusal ran none of them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tonrail import __version__
from tonrail.deploy.record import new_record, write

ROOT = Path(__file__).resolve().parents[2]
TONRAIL = Path(sys.executable).with_name("tonrail")
SHELLCHECK = Path(sys.executable).with_name("shellcheck")
PLAN_VARS = "-var-file=variables.tfvars -var-file=variables-payments.tfvars"
TD = "arn:aws:ecs:eu-central-1:123456789012:task-definition"

# The stand-in `tonrail`: the real one for check-record, a logged answer for AWS steps.
FAKE_TONRAIL = f"""#!/usr/bin/env bash
set -euo pipefail
if [[ "$1 $2" == "deploy check-record" ]]; then exec {TONRAIL} "$@"; fi
echo "tonrail $*" >>"$CALLS"
if [[ "$2" == "${{FAIL_STEP:-}}" ]]; then echo "error: $2 failed" >&2; exit 1; fi
case "$2" in
  current-task-definition) echo "{TD}/${{6}}:7" ;;
  previous-task-definition) echo "{TD}/${{6}}:6" ;;
  update-service) echo "$8" >"$CALLS.td" ;;
  health) if [[ -n "${{FAIL_HEALTH_ON:-}}" && "$(cat "$CALLS.td")" == *"$FAIL_HEALTH_ON"* ]]; then
      exit 1; fi ;;
  ecr-password) echo secret-password ;;
esac
"""
FAKE_TERRAFORM = f"""#!/usr/bin/env bash
echo "terraform $*" >>"$CALLS"
if [[ "$2" == output ]]; then echo "{TD}/tonrail-production-${{4%%_*}}:8"; fi
"""
FAKE_DOCKER = """#!/usr/bin/env bash
echo "docker $*" >>"$CALLS"
if [[ "$1" == login ]]; then echo "docker stdin: $(cat)" >>"$CALLS"; fi
"""


@dataclass
class Checkout:
    root: Path
    env: dict[str, str]
    sha: str
    calls: Path
    records: Path

    def run(
        self, script: str, *args: str, stdin: str = "", **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.root / "scripts" / script), *args],
            cwd=self.root,
            env={**self.env, **env},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def logged(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def record(
        self,
        *,
        sha: str | None = None,
        age_hours: float = 1,
        ok: bool = True,
        network: str = "testnet",
    ) -> Path:
        checks = [{"name": "ton_payout", "ok": True}, {"name": "books_balance", "ok": ok}]
        rec = new_record(network, sha or self.sha, datetime.now(UTC), checks)
        rec["finished_at"] = (datetime.now(UTC) - timedelta(hours=age_hours)).isoformat()
        return write(self.records, rec)


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    """A committed copy of the scripts and the Terraform variable files, in its own repo."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "scripts", root / "scripts", ignore=shutil.ignore_patterns("*.py"))
    tf = root / "deploy" / "terraform"
    tf.mkdir(parents=True)
    for name in ("variables.tfvars", "variables-payments.tfvars"):
        (tf / name).write_text("# filled in by the operator\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", str(root)], check=True)
    subprocess.run([*git, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(root), "commit", "-qm", "release"], check=True)
    sha = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (
        ("tonrail", FAKE_TONRAIL),
        ("terraform", FAKE_TERRAFORM),
        ("docker", FAKE_DOCKER),
    ):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    records = tmp_path / "records"
    calls = tmp_path / "calls.log"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CALLS": str(calls),
        "REHEARSAL_RECORD_DIR": str(records),
        "AWS_REGION": "eu-central-1",
        "AWS_ACCOUNT_ID": "123456789012",
        "SSL_CERTIFICATE_ARN": "arn:aws:acm:eu-central-1:123456789012:certificate/abc",
        "ECR_REPOSITORY_URL": "123456789012.dkr.ecr.eu-central-1.amazonaws.com/tonrail-production",
        "TONRAIL_PUBLIC_URL": "https://pay.example.com",
    }
    return Checkout(root, env, sha, calls, records)


def deploy_commands(sha: str, prev: tuple[str, str], new: tuple[str, str]) -> list[str]:
    image = f"123456789012.dkr.ecr.eu-central-1.amazonaws.com/tonrail-production:{sha}"
    return [
        "+ tonrail deploy identity --expect-account 123456789012",
        "+ tonrail deploy check-secrets tonrail-production/JWT_SECRET"
        " tonrail-production/TON_API_KEY tonrail-production/TON_MASTER_KEY"
        " tonrail-production/TON_KEY_PASSPHRASE",
        f"+ docker build --file deploy/docker/Dockerfile --tag {image} .",
        "+ tonrail deploy ecr-password | docker login --username AWS --password-stdin"
        " 123456789012.dkr.ecr.eu-central-1.amazonaws.com",
        f"+ docker push {image}",
        "+ tonrail deploy current-task-definition --cluster tonrail-production"
        " --service tonrail-production-api",
        "+ tonrail deploy current-task-definition --cluster tonrail-production"
        " --service tonrail-production-worker",
        "+ terraform -chdir=deploy/terraform init -input=false",
        f"+ terraform -chdir=deploy/terraform plan -input=false {PLAN_VARS} -var image_tag={sha}"
        " -var aws_region=eu-central-1 -var"
        " ssl_certificate_arn=arn:aws:acm:eu-central-1:123456789012:certificate/abc"
        f" -out=tfplan-{sha}",
        f"+ terraform -chdir=deploy/terraform apply -input=false tfplan-{sha}",
        "+ terraform -chdir=deploy/terraform output -raw api_task_definition_arn",
        "+ terraform -chdir=deploy/terraform output -raw worker_task_definition_arn",
        f"+ tonrail deploy migrate --cluster tonrail-production --task-definition {new[0]}"
        " --like-service tonrail-production-api --timeout 900",
        *move_commands(*new),
        *health_commands(),
    ]


def move_commands(api: str, worker: str) -> list[str]:
    return [
        "+ tonrail deploy update-service --cluster tonrail-production"
        f" --service tonrail-production-api --task-definition {api}",
        "+ tonrail deploy update-service --cluster tonrail-production"
        f" --service tonrail-production-worker --task-definition {worker}",
        "+ tonrail deploy wait-stable --cluster tonrail-production"
        " --service tonrail-production-api --service tonrail-production-worker --timeout 900",
    ]


def health_commands() -> list[str]:
    return [
        "+ tonrail deploy health --url https://pay.example.com --wait 300",
        "+ tonrail deploy check-metrics --since-minutes 10 --wait 600",
    ]


def quoted(line: str) -> str:
    """The dry run shell-quotes `<placeholders>`."""
    return line.replace("<", "\\<").replace(">", "\\>").replace(" ", "\\ ")


def test_shellcheck_is_clean() -> None:
    scripts = sorted(str(p) for p in (ROOT / "scripts").rglob("*.sh"))
    assert len(scripts) >= 3
    result = subprocess.run(
        [str(SHELLCHECK), "-x", *scripts], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", ["deploy-mainnet-payments.sh", "rollback-mainnet.sh"])
def test_help(checkout: Checkout, script: str) -> None:
    result = checkout.run(script, "--help")
    assert result.returncode == 0
    assert "--dry-run" in result.stdout and "AWS_REGION" in result.stdout
    assert checkout.logged() == []
    bad = checkout.run(script, "--bogus")
    assert bad.returncode == 1 and "unknown argument: --bogus" in bad.stderr


def test_deploy_dry_run_prints_every_command_and_runs_none(checkout: Checkout) -> None:
    checkout.record()
    result = checkout.run("deploy-mainnet-payments.sh", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    prev = ("<api task definition now>", "<worker task definition now>")
    new = ("<new api task definition>", "<new worker task definition>")
    expected = deploy_commands(checkout.sha, prev, tuple(quoted(n) for n in new))  # type: ignore[arg-type]
    expected.insert(2, "# confirmation: the operator types DEPLOY MAINNET")
    expected.append(
        "# if a step above fails: the services go back to <api task definition now>"
        " and <worker task definition now>, wait for stable, health checks"
    )
    assert lines == expected
    assert checkout.logged() == []  # not one AWS, registry or Terraform command ran
    assert "checks passed on testnet" in result.stderr  # the record was really checked


def test_deploy_checks_no_passphrase_secret_for_an_aws_kms_envelope(checkout: Checkout) -> None:
    """hot_wallet_kek = "aws-kms": Terraform creates no TON_KEY_PASSPHRASE, so the script does
    not demand one (it still demands the envelope itself)."""
    tfvars = checkout.root / "deploy" / "terraform" / "variables-payments.tfvars"
    tfvars.write_text('hot_wallet_kek = "aws-kms"\n')
    git = ["git", "-C", str(checkout.root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "commit", "-qam", "aws-kms"], check=True)
    checkout.sha = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    checkout.record()
    result = checkout.run("deploy-mainnet-payments.sh", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert (
        "+ tonrail deploy check-secrets tonrail-production/JWT_SECRET"
        " tonrail-production/TON_API_KEY tonrail-production/TON_MASTER_KEY"
    ) in result.stdout.splitlines()
    assert "TON_KEY_PASSPHRASE" not in result.stdout


def test_deploy_runs_the_sequence_after_the_typed_confirmation(checkout: Checkout) -> None:
    checkout.record()
    result = checkout.run("deploy-mainnet-payments.sh", stdin="DEPLOY MAINNET\n")
    assert result.returncode == 0, result.stderr
    image = f"123456789012.dkr.ecr.eu-central-1.amazonaws.com/tonrail-production:{checkout.sha}"
    logged = checkout.logged()
    new_api, new_worker = f"{TD}/tonrail-production-api:8", f"{TD}/tonrail-production-worker:8"
    # the two sides of the login pipe run at once: their log lines come in either order
    logged[3:5] = sorted(logged[3:5], reverse=True)
    assert logged == [
        "tonrail deploy identity --expect-account 123456789012",
        "tonrail deploy check-secrets tonrail-production/JWT_SECRET"
        " tonrail-production/TON_API_KEY tonrail-production/TON_MASTER_KEY"
        " tonrail-production/TON_KEY_PASSPHRASE",
        f"docker build --file deploy/docker/Dockerfile --tag {image} .",
        "tonrail deploy ecr-password",
        "docker login --username AWS --password-stdin"
        " 123456789012.dkr.ecr.eu-central-1.amazonaws.com",
        "docker stdin: secret-password",
        f"docker push {image}",
        "tonrail deploy current-task-definition --cluster tonrail-production"
        " --service tonrail-production-api",
        "tonrail deploy current-task-definition --cluster tonrail-production"
        " --service tonrail-production-worker",
        "terraform -chdir=deploy/terraform init -input=false",
        f"terraform -chdir=deploy/terraform plan -input=false {PLAN_VARS}"
        f" -var image_tag={checkout.sha} -var aws_region=eu-central-1"
        " -var ssl_certificate_arn=arn:aws:acm:eu-central-1:123456789012:certificate/abc"
        f" -out=tfplan-{checkout.sha}",
        f"terraform -chdir=deploy/terraform apply -input=false tfplan-{checkout.sha}",
        "terraform -chdir=deploy/terraform output -raw api_task_definition_arn",
        "terraform -chdir=deploy/terraform output -raw worker_task_definition_arn",
        f"tonrail deploy migrate --cluster tonrail-production --task-definition {new_api}"
        " --like-service tonrail-production-api --timeout 900",
        *(c[2:] for c in move_commands(new_api, new_worker)),
        *(c[2:] for c in health_commands()),
    ]
    assert "secret-password" not in result.stderr + result.stdout


def test_deploy_rolls_back_when_the_health_checks_fail(checkout: Checkout) -> None:
    checkout.record()
    # the new revisions (:8) fail the health checks, the ones before (:7) pass
    result = checkout.run(
        "deploy-mainnet-payments.sh", stdin="DEPLOY MAINNET\n", FAIL_HEALTH_ON=":8"
    )
    assert result.returncode == 1
    assert (
        f"deployment of {checkout.sha} failed; rolled back to {TD}/tonrail-production-api:7"
        in result.stderr
    )
    logged = checkout.logged()
    new = (f"{TD}/tonrail-production-api:8", f"{TD}/tonrail-production-worker:8")
    prev = (f"{TD}/tonrail-production-api:7", f"{TD}/tonrail-production-worker:7")
    first_health = logged.index(health_commands()[0][2:])
    assert logged[first_health - 3 : first_health] == [c[2:] for c in move_commands(*new)]
    # the failed check, then back to what ran before, stable, and checked again
    assert logged[first_health + 1 :] == [
        *(c[2:] for c in move_commands(*prev)),
        *(c[2:] for c in health_commands()),
    ]


def test_a_failed_migration_stops_before_the_services_move(checkout: Checkout) -> None:
    checkout.record()
    result = checkout.run(
        "deploy-mainnet-payments.sh", stdin="DEPLOY MAINNET\n", FAIL_STEP="migrate"
    )
    assert result.returncode == 1
    assert "the migration failed; the services still run" in result.stderr
    assert f"{TD}/tonrail-production-api:7" in result.stderr
    steps = [c.split()[2] for c in checkout.logged() if c.startswith("tonrail")]
    assert steps[-1] == "migrate"
    assert "update-service" not in steps


def test_a_deployment_that_never_gets_stable_is_rolled_back(checkout: Checkout) -> None:
    checkout.record()
    result = checkout.run(
        "deploy-mainnet-payments.sh", stdin="DEPLOY MAINNET\n", FAIL_STEP="wait-stable"
    )
    assert result.returncode == 1
    logged = [c for c in checkout.logged() if c.startswith("tonrail deploy update-service")]
    assert [c.split()[-1] for c in logged] == [
        f"{TD}/tonrail-production-api:8",
        f"{TD}/tonrail-production-worker:8",
        f"{TD}/tonrail-production-api:7",
        f"{TD}/tonrail-production-worker:7",
    ]
    assert "AND the rollback did not pass its checks" in result.stderr  # still not stable


def test_deploy_says_so_when_the_rollback_fails_too(checkout: Checkout) -> None:
    checkout.record()
    result = checkout.run(
        "deploy-mainnet-payments.sh", stdin="DEPLOY MAINNET\n", FAIL_HEALTH_ON="tonrail"
    )
    assert result.returncode == 1
    assert "AND the rollback did not pass its checks" in result.stderr


@pytest.mark.parametrize(
    ("unset", "message"),
    [
        ("SSL_CERTIFICATE_ARN", "required variables not set: SSL_CERTIFICATE_ARN"),
        ("AWS_ACCOUNT_ID", "required variables not set: AWS_ACCOUNT_ID"),
        ("TONRAIL_PUBLIC_URL", "required variables not set: TONRAIL_PUBLIC_URL"),
    ],
)
def test_deploy_refuses_a_missing_variable(checkout: Checkout, unset: str, message: str) -> None:
    checkout.record()
    checkout.env.pop(unset)
    for args in ((), ("--dry-run",)):
        result = checkout.run("deploy-mainnet-payments.sh", *args, stdin="DEPLOY MAINNET\n")
        assert result.returncode == 1
        assert message in result.stderr
        assert result.stdout == ""
    assert checkout.logged() == []


def test_deploy_refuses_a_missing_tfvars_file(checkout: Checkout) -> None:
    checkout.record()
    (checkout.root / "deploy/terraform/variables-payments.tfvars").unlink()
    subprocess.run(
        [
            "git",
            "-C",
            str(checkout.root),
            "rm",
            "-q",
            "--cached",
            "deploy/terraform/variables-payments.tfvars",
        ],
        check=True,
    )
    subprocess.run(
        [
            "git",
            "-C",
            str(checkout.root),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "no tfvars",
        ],
        check=True,
    )
    result = checkout.run("deploy-mainnet-payments.sh", stdin="DEPLOY MAINNET\n")
    assert result.returncode == 1
    assert "deploy/terraform/variables-payments.tfvars is missing" in result.stderr
    assert checkout.logged() == []


def test_deploy_refuses_uncommitted_changes(checkout: Checkout) -> None:
    checkout.record()
    (checkout.root / "deploy/terraform/variables.tfvars").write_text("changed\n")
    result = checkout.run("deploy-mainnet-payments.sh", stdin="DEPLOY MAINNET\n")
    assert result.returncode == 1 and "uncommitted changes" in result.stderr
    assert checkout.logged() == []


@pytest.mark.parametrize(
    ("make_record", "message"),
    [
        ("none", "no testnet verification record in"),
        ("stale", "h old; the limit is 24 h"),
        ("other_sha", "no testnet verification record for commit"),
        ("failed", "verification of this commit failed"),
        ("localnet", "no verification record on testnet (only on localnet)"),
    ],
)
def test_deploy_refuses_without_a_passing_recent_testnet_record(
    checkout: Checkout, make_record: str, message: str
) -> None:
    if make_record == "stale":
        checkout.record(age_hours=30)
    elif make_record == "other_sha":
        checkout.record(sha="0" * 40)
    elif make_record == "failed":
        checkout.record(ok=False)
    elif make_record == "localnet":
        checkout.record(network="localnet")
    for args in ((), ("--dry-run",)):
        result = checkout.run("deploy-mainnet-payments.sh", *args, stdin="DEPLOY MAINNET\n")
        assert result.returncode == 1, result.stdout
        assert message in result.stderr
        assert "nothing was changed" in result.stderr
    assert checkout.logged() == []


def test_a_record_of_the_same_release_is_accepted_when_asked(checkout: Checkout) -> None:
    checkout.record(sha="0" * 40)
    accepted = subprocess.run(
        [str(TONRAIL), "deploy", "check-record", "--sha", checkout.sha, "--release", __version__,
         "--dir", str(checkout.records)],
        env=checkout.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    other = subprocess.run(
        [str(TONRAIL), "deploy", "check-record", "--sha", checkout.sha, "--release", "0.0.0-other",
         "--dir", str(checkout.records)],
        env=checkout.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert other.returncode == 1
    assert f"for commit {checkout.sha} or release 0.0.0-other" in other.stderr


def test_the_record_age_limit_is_configurable(checkout: Checkout) -> None:
    checkout.record(age_hours=30)
    result = checkout.run("deploy-mainnet-payments.sh", "--dry-run", REHEARSAL_MAX_AGE_HOURS="48")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("answer", ["", "yes\n", "deploy mainnet\n", "DEPLOY MAINNET now\n"])
def test_deploy_refuses_without_the_typed_confirmation(checkout: Checkout, answer: str) -> None:
    checkout.record()
    result = checkout.run("deploy-mainnet-payments.sh", stdin=answer)
    assert result.returncode == 1
    assert 'confirmation not given (expected "DEPLOY MAINNET")' in result.stderr
    # only the read-only prerequisite checks ran
    assert [c.split()[2] for c in checkout.logged()] == ["identity", "check-secrets"]


def test_rollback_dry_run(checkout: Checkout) -> None:
    result = checkout.run("rollback-mainnet.sh", "--dry-run")
    assert result.returncode == 0, result.stderr
    prev = (quoted("<previous api task definition>"), quoted("<previous worker task definition>"))
    assert result.stdout.splitlines() == [
        "+ tonrail deploy identity --expect-account 123456789012",
        "+ tonrail deploy previous-task-definition --cluster tonrail-production"
        " --service tonrail-production-api",
        "+ tonrail deploy previous-task-definition --cluster tonrail-production"
        " --service tonrail-production-worker",
        "# confirmation: the operator types ROLLBACK MAINNET",
        *move_commands(*prev),
        *health_commands(),
    ]
    assert checkout.logged() == []


def test_rollback_to_the_previous_revisions(checkout: Checkout) -> None:
    result = checkout.run("rollback-mainnet.sh", stdin="ROLLBACK MAINNET\n")
    assert result.returncode == 0, result.stderr
    prev = (f"{TD}/tonrail-production-api:6", f"{TD}/tonrail-production-worker:6")
    assert checkout.logged() == [
        "tonrail deploy identity --expect-account 123456789012",
        "tonrail deploy previous-task-definition --cluster tonrail-production"
        " --service tonrail-production-api",
        "tonrail deploy previous-task-definition --cluster tonrail-production"
        " --service tonrail-production-worker",
        *(c[2:] for c in move_commands(*prev)),
        *(c[2:] for c in health_commands()),
    ]


def test_rollback_to_given_task_definitions(checkout: Checkout) -> None:
    api, worker = f"{TD}/tonrail-production-api:3", f"{TD}/tonrail-production-worker:3"
    result = checkout.run(
        "rollback-mainnet.sh",
        "--api-task-definition",
        api,
        "--worker-task-definition",
        worker,
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        "# confirmation: the operator types ROLLBACK MAINNET",
        *move_commands(api, worker),
        *health_commands(),
    ]


def test_rollback_refusals(checkout: Checkout) -> None:
    no = checkout.run("rollback-mainnet.sh", stdin="rollback\n")
    assert no.returncode == 1 and 'expected "ROLLBACK MAINNET"' in no.stderr
    assert [c.split()[2] for c in checkout.logged()] == [
        "identity",
        "previous-task-definition",
        "previous-task-definition",
    ]
    checkout.calls.unlink()
    checkout.env.pop("AWS_REGION")
    missing = checkout.run("rollback-mainnet.sh", "--dry-run")
    assert missing.returncode == 1 and "required variables not set: AWS_REGION" in missing.stderr
    assert checkout.logged() == []
    flag = checkout.run("rollback-mainnet.sh", "--api-task-definition")
    assert flag.returncode == 1 and "needs an ARN" in flag.stderr
