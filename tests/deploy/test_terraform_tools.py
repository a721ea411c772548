"""deploy/terraform passes checkov with zero failed checks (every skip carries its reason in
the code), is `terraform fmt` clean, and its variable validations accept the examples and
refuse bad values. checkov lives in its own venv (`make checkov-install`, which `make test`
runs first). Terraform itself is not installed by the project (no provider can be downloaded
here either): its tests skip without it. variables.tf alone needs no provider, so Terraform
plans it for real and runs every validation."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tonrail.settings import REPO_ROOT

TF_DIR = REPO_ROOT / "deploy" / "terraform"
CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
SKIP_COMMENT = re.compile(r"#\s*checkov:skip=(\S+?):(.*)$", re.MULTILINE)


def run_checkov(path: Path) -> dict[str, Any]:
    if not CHECKOV.exists():
        if os.environ.get("CI"):
            pytest.fail("checkov is not installed: `make checkov-install` must run before pytest")
        pytest.skip("checkov is not installed: run `make checkov-install`")
    proc = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(path),
            "--framework",
            "terraform",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def _tf_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*.tf") if ".terraform" not in p.parts)


@pytest.mark.slow
def test_checkov_finds_nothing_to_fix() -> None:
    report = run_checkov(TF_DIR)
    summary, results = report["summary"], report["results"]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in results["failed_checks"]]
    assert failed == [], failed
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 200, summary  # it really read the code (and the module)
    for check in results["skipped_checks"]:
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) > 20, (
            f"{check['check_id']} on {check['resource']}: skipped without reason"
        )


def test_every_skip_names_a_check_and_a_reason() -> None:
    skips = [m.groups() for p in _tf_files(TF_DIR) for m in SKIP_COMMENT.finditer(p.read_text())]
    assert skips, "the skips are expected in the code, as comments"
    for check_id, reason in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", check_id), check_id
        assert len(reason.strip()) > 20, f"{check_id}: give the reason"


@pytest.mark.slow
def test_checkov_fails_on_an_unencrypted_database(tmp_path: Path) -> None:
    copy = tmp_path / "terraform"
    shutil.copytree(TF_DIR, copy, ignore=shutil.ignore_patterns(".terraform*"))
    db = copy / "database.tf"
    db.write_text(
        db.read_text().replace("storage_encrypted     = true", "storage_encrypted = false")
    )
    failed = {c["check_id"] for c in run_checkov(copy)["results"]["failed_checks"]}
    assert "CKV_AWS_16" in failed, failed


TERRAFORM = shutil.which("terraform")
needs_terraform = pytest.mark.skipif(TERRAFORM is None, reason="terraform is not installed")


def terraform_fmt_problems(path: Path) -> list[str]:
    """Files `terraform fmt` would change: the .tf files and the tfvars/hcl examples."""
    assert TERRAFORM is not None
    problems: list[str] = []
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"}
    proc = subprocess.run(
        [TERRAFORM, "fmt", "-check", "-recursive", "-list=true", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert proc.returncode in (0, 3), proc.stderr
    problems += proc.stdout.split()
    for example in sorted(path.glob("*.example")):
        proc = subprocess.run(
            [TERRAFORM, "fmt", "-check", "-"],
            input=example.read_text(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
        if proc.returncode != 0:
            problems.append(example.name)
    return problems


@needs_terraform
def test_terraform_fmt_is_clean() -> None:
    assert terraform_fmt_problems(TF_DIR) == []


@needs_terraform
def test_terraform_fmt_sees_a_misformatted_file(tmp_path: Path) -> None:
    copy = tmp_path / "terraform"
    shutil.copytree(TF_DIR, copy, ignore=shutil.ignore_patterns(".terraform*"))
    ecr = copy / "ecr.tf"
    ecr.write_text(
        ecr.read_text().replace("  scan_on_push = true", "      scan_on_push   =   true")
    )
    example = copy / "variables.tfvars.example"
    example.write_text(example.read_text().replace('name        = "tonrail"', 'name = "tonrail"'))
    problems = terraform_fmt_problems(copy)
    assert any(p.endswith("ecr.tf") for p in problems), problems
    assert "variables.tfvars.example" in problems, problems


TF_ENV = {
    **os.environ,
    "TF_CLI_CONFIG_FILE": os.devnull,
    "CHECKPOINT_DISABLE": "1",
    "TF_IN_AUTOMATION": "1",
}


@pytest.fixture(scope="module")
def variables_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """variables.tf and the two examples in a directory of their own, initialised."""
    assert TERRAFORM is not None
    path = tmp_path_factory.mktemp("variables")
    for name in ("variables.tf", "variables.tfvars.example", "variables-payments.tfvars.example"):
        shutil.copy(TF_DIR / name, path / name)
    proc = subprocess.run(
        [TERRAFORM, "init", "-backend=false", "-input=false", "-no-color"],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=TF_ENV,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path


def plan_variables(path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM is not None
    args = [TERRAFORM, "plan", "-input=false", "-no-color", "-lock=false", "-refresh=false"]
    args += ["-var-file=variables.tfvars.example", "-var-file=variables-payments.tfvars.example"]
    args += [f"-var={o}" for o in overrides]
    return subprocess.run(
        args, cwd=path, capture_output=True, text=True, timeout=120, check=False, env=TF_ENV
    )


@needs_terraform
def test_the_examples_satisfy_every_variable(variables_only: Path) -> None:
    proc = plan_variables(variables_only)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_terraform
@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "ssl_certificate_arn=arn:aws:iam::123456789012:role/x",
            "ssl_certificate_arn must be an ACM",
        ),
        ("image_tag=latest", "image_tag must be a valid image tag"),
        ("name=a-name-far-too-long", "name must be 2-16"),
        ("vpc_cidr=nope", "vpc_cidr must be an IPv4 CIDR"),
        ("vpc_cidr=10.0.0.0/24", "vpc_cidr must be an IPv4 CIDR"),
        ('availability_zones=["us-east-1a"]', "availability_zones must name exactly two"),
        (
            'availability_zones=["us-east-1a","us-east-1a"]',
            "availability_zones must name exactly two",
        ),
        ('optional_secrets=["JWT_SECRET"]', "optional_secrets may name only"),
        ('extra_environment={JWT_SECRET="x"}', "extra_environment must not carry secrets"),
        ('extra_environment={TON_MASTER_KEY="x"}', "extra_environment must not carry secrets"),
        ("ton_network=localnet", "ton_network must be testnet or mainnet"),
        ("db_engine_version=13", "db_engine_version must be PostgreSQL 14"),
        ("db_engine_version=latest", "db_engine_version must be PostgreSQL 14"),
        ("redis_engine_version=5.0", "redis_engine_version must be 6.x"),
        ("db_backup_retention_days=1", "db_backup_retention_days must be between 7 and 35"),
        ("log_retention_days=30", "log_retention_days must be a CloudWatch retention"),
        ("api_cpu=300", "api_cpu must be"),
        ("alarm_success_rate_min_pct=0", "alarm_success_rate_min_pct must be"),
        ("stripe_publishable_key=sk_live_x", "stripe_publishable_key must start with pk_"),
        ("payment_alert_email=not-an-address", "payment_alert_email must be an e-mail"),
        ('alarm_https_endpoints=["http://x"]', "alarm_https_endpoints must be https"),
        ("cloudwatch_namespace=AWS/ECS", "cloudwatch_namespace must be a custom namespace"),
    ],
)
def test_a_bad_value_is_refused_with_its_message(
    variables_only: Path, override: str, message: str
) -> None:
    proc = plan_variables(variables_only, override)
    assert proc.returncode != 0, f"{override} was accepted"
    out = " ".join((proc.stdout + proc.stderr).split())
    assert message in out, out[-1500:]


@pytest.fixture(scope="module")
def secret_names_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """variables.tf, the examples and secrets.tf's first `locals` block (the secret names, which
    depend on variables only) in a directory of their own, initialised: Terraform evaluates
    the names without a provider."""
    assert TERRAFORM is not None
    path = tmp_path_factory.mktemp("secret-names")
    for name in ("variables.tf", "variables.tfvars.example", "variables-payments.tfvars.example"):
        shutil.copy(TF_DIR / name, path / name)
    text = (TF_DIR / "secrets.tf").read_text()
    start = text.index("\nlocals {\n")
    block = text[start : text.index("\n}\n", start) + 3]
    assert "aws_" not in block, "the names block must not reference resources"
    (path / "names.tf").write_text(block)
    proc = subprocess.run(
        [TERRAFORM, "init", "-backend=false", "-input=false", "-no-color"],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=TF_ENV,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path


def evaluate(path: Path, expression: str, *overrides: str) -> Any:
    assert TERRAFORM is not None
    args = [TERRAFORM, "console", "-no-color"]
    args += ["-var-file=variables.tfvars.example", "-var-file=variables-payments.tfvars.example"]
    args += [f"-var={o}" for o in overrides]
    proc = subprocess.run(
        args,
        cwd=path,
        input=f"jsonencode({expression})\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=TF_ENV,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(json.loads(proc.stdout.strip()))


@needs_terraform
@pytest.mark.parametrize(
    ("kek", "passphrase"), [("aws-kms", False), ("scrypt", True)], ids=["aws-kms", "scrypt"]
)
def test_only_a_scrypt_envelope_needs_the_passphrase_secret(
    secret_names_only: Path, kek: str, passphrase: bool
) -> None:
    """hot_wallet_kek = "aws-kms": no TON_KEY_PASSPHRASE secret is created nor handed to a task;
    the envelope and everything else still are."""
    override = f"hot_wallet_kek={kek}"
    created = evaluate(secret_names_only, "local.secret_names", override)
    tasks = evaluate(secret_names_only, "local.task_secret_names", override)
    for names in (created, tasks):
        assert ("TON_KEY_PASSPHRASE" in names) is passphrase, names
        assert {"TON_MASTER_KEY", "JWT_SECRET", "TON_API_KEY", "DATABASE_URL"} <= set(names)


@needs_terraform
def test_an_unknown_key_kind_is_refused(secret_names_only: Path) -> None:
    proc = plan_variables(secret_names_only, "hot_wallet_kek=hsm")
    assert proc.returncode != 0
    assert "hot_wallet_kek must be aws-kms or scrypt" in " ".join(proc.stderr.split())
