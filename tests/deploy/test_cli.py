"""`tonrail deploy ...` as the scripts call it: exit codes, what goes to stdout (values the
scripts capture) and to stderr (errors), on moto's AWS and on the real app."""

from __future__ import annotations

from typing import Any

import boto3
import httpx
import pytest
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID
from typer.testing import CliRunner

from tests.deploy.conftest import CLUSTER, REGION, Ecs
from tonrail.cli import app
from tonrail.db import Database
from tonrail.deploy.health import check
from tonrail.monitoring import signals
from tonrail.settings import Settings, get_settings

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, ["deploy", *args])


def test_every_deploy_command_has_help() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    commands = [
        "identity", "check-secrets", "current-task-definition", "previous-task-definition",
        "register-task-definition", "migrate", "update-service", "wait-stable",
        "check-metrics", "ecr-password", "health", "check-record", "restart", "run",
    ]  # fmt: skip
    for command in commands:
        assert command in result.output
        sub = invoke(command, "--help")
        assert sub.exit_code == 0, (command, sub.output)


def test_identity_refuses_another_account(aws_env: None) -> None:
    ok = invoke("identity", "--expect-account", DEFAULT_ACCOUNT_ID)
    assert ok.exit_code == 0 and ok.stdout.startswith(DEFAULT_ACCOUNT_ID)
    other = invoke("identity", "--expect-account", "999999999999")
    assert other.exit_code == 1
    assert f"AWS account is {DEFAULT_ACCOUNT_ID}, expected 999999999999" in other.stderr


def test_check_secrets(aws_env: None) -> None:
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name="tonrail-production/JWT_SECRET", SecretString="s" * 40)
    ok = invoke("check-secrets", "tonrail-production/JWT_SECRET")
    assert ok.exit_code == 0 and "1 secrets present" in ok.stdout
    bad = invoke("check-secrets", "tonrail-production/JWT_SECRET", "tonrail-production/TON_API_KEY")
    assert bad.exit_code == 1
    assert "secret tonrail-production/TON_API_KEY does not exist" in bad.stderr


def test_the_deploy_steps_through_the_cli(ecs: Ecs) -> None:
    current = invoke("current-task-definition", "--cluster", CLUSTER, "--service", "tonrail-api")
    assert current.exit_code == 0 and current.stdout.strip() == ecs.api_td
    new = invoke("register-task-definition", "--from", ecs.api_td, "--image", "repo:abc")
    assert new.exit_code == 0, new.output
    new_td = new.stdout.strip()
    assert new_td.endswith("tonrail-api:2")
    migrated = invoke(
        "migrate", "--cluster", CLUSTER, "--task-definition", new_td,
        "--like-service", "tonrail-api", "--timeout", "5", "--poll", "0",
    )  # fmt: skip
    assert migrated.exit_code == 0, migrated.output
    assert "exited 0" in migrated.stdout
    moved = invoke(
        "update-service", "--cluster", CLUSTER, "--service", "tonrail-api",
        "--task-definition", new_td,
    )  # fmt: skip
    assert moved.exit_code == 0
    stable = invoke(
        "wait-stable", "--cluster", CLUSTER, "--service", "tonrail-api",
        "--service", "tonrail-worker", "--timeout", "5", "--poll", "0",
    )  # fmt: skip
    assert stable.exit_code == 0 and "stable: tonrail-api, tonrail-worker" in stable.stdout
    prev = invoke("previous-task-definition", "--cluster", CLUSTER, "--service", "tonrail-api")
    assert prev.exit_code == 0 and prev.stdout.strip() == ecs.api_td


def test_restart_starts_a_new_deployment_of_the_same_task_definition(ecs: Ecs) -> None:
    def deployment_id() -> str:
        [svc] = ecs.client.describe_services(cluster=CLUSTER, services=["tonrail-worker"])[
            "services"
        ]
        assert svc["taskDefinition"] == ecs.worker_td
        return str(svc["deployments"][0]["id"])

    before = deployment_id()
    result = invoke("restart", "--cluster", CLUSTER, "--service", "tonrail-worker")
    assert result.exit_code == 0, result.output
    assert deployment_id() != before


def test_run_a_one_off_command(ecs: Ecs) -> None:
    result = invoke(
        "run", "--cluster", CLUSTER, "--like-service", "tonrail-worker", "--poll", "0",
        "--", "tonrail", "ops", "pause", "--reason", "incident 42",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    task_arn = result.stdout.split()[1]
    [task] = ecs.client.describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"]
    assert task["taskDefinitionArn"] == ecs.worker_td
    # the image's ENTRYPOINT is `tonrail`: the override carries only its arguments
    assert task["overrides"]["containerOverrides"][0]["command"] == [
        "ops", "pause", "--reason", "incident 42",
    ]  # fmt: skip


def test_a_failed_migration_fails_the_step(ecs: Ecs) -> None:
    backend = get_backend("ecs")[DEFAULT_ACCOUNT_ID][REGION]
    real_run_task = backend.run_task

    def failing(*args: object, **kwargs: object) -> object:
        tasks = real_run_task(*args, **kwargs)
        tasks[0].containers[0].exitCode = 1
        return tasks

    backend.run_task = failing  # type: ignore[method-assign]
    try:
        result = invoke(
            "migrate", "--cluster", CLUSTER, "--task-definition", ecs.api_td,
            "--like-service", "tonrail-api", "--timeout", "5", "--poll", "0",
        )  # fmt: skip
    finally:
        backend.run_task = real_run_task  # type: ignore[method-assign]
    assert result.exit_code == 1
    assert "tonrail migrate exited 1" in result.stderr


def test_check_metrics(aws_env: None) -> None:
    missing = invoke("check-metrics", "--wait", "0", "--poll", "0")
    assert missing.exit_code == 1
    assert "no datapoints of PendingTransactions, TotalVolume, TransactionCount" in missing.stderr
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(
        Namespace="Deligate/Payments",
        MetricData=[
            {"MetricName": m, "Value": 0.0}
            for m in ("TransactionCount", "PendingTransactions", "TotalVolume")
        ],
    )
    ok = invoke("check-metrics", "--wait", "0")
    assert ok.exit_code == 0, ok.output
    assert "Deligate/Payments/PendingTransactions: 1 datapoints" in ok.stdout


def test_aws_errors_are_one_line_for_the_operator(aws_env: None) -> None:
    result = invoke("current-task-definition", "--cluster", "nope", "--service", "tonrail-api")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ecs describe-services tonrail-api: ClusterNotFound")
    assert "Traceback" not in result.output


async def test_health_reads_readyz_and_the_hot_wallet_balance(
    app: Any, db: Database, settings: Settings
) -> None:
    signals.take_buffer()  # the signal buffer is per process: drop what other tests left
    transport = httpx.ASGITransport(app=app)
    early = await check("http://tonrail", "", wait=0, transport=transport)
    assert not early.ok
    assert early.lines == ["no hot wallet balance for TON in /metrics yet"]
    signals.set_hot_wallet_balance("TON", 12_500_000_000)
    signals.set_hot_wallet_balance("USDT", 10_000_000_000_000)
    await signals.persist_signals(db)
    report = await check("http://tonrail", "", wait=0, transport=transport)
    assert report.ok, report.lines
    assert report.lines == ["/readyz: ok", "hot wallet TON: 12.5", "hot wallet USDT: 10000000"]


async def test_health_wants_the_metrics_token(
    app: Any, db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.state.settings = settings.model_copy(
        update={"metrics_token": settings.metrics_token.__class__("tok")}
    )
    signals.set_hot_wallet_balance("TON", 1)
    await signals.persist_signals(db)
    transport = httpx.ASGITransport(app=app)
    wrong = await check("http://tonrail", "nope", wait=0, transport=transport)
    assert not wrong.ok and "/metrics answered 401" in wrong.lines[0]
    right = await check("http://tonrail", "tok", wait=0, transport=transport)
    assert right.ok, right.lines


def test_health_reports_an_unreachable_service() -> None:
    get_settings.cache_clear()
    result = invoke("health", "--url", "http://127.0.0.1:9", "--wait", "0")
    assert result.exit_code == 1
    assert "ConnectError" in result.stderr
