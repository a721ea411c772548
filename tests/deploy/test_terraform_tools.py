"""deploy/terraform passes checkov with zero failed checks (every skip carries its reason in
the code) and is `terraform fmt` clean. checkov lives in its own venv (`make checkov-install`,
which `make test` runs first); terraform cannot be installed here, so that test skips without it."""

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
