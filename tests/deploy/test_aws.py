"""The deploy's AWS calls against moto: what each one leaves in ECS, Secrets Manager,
CloudWatch, ECR and STS, and the error an operator sees when a step cannot go on."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from tests.deploy.conftest import CLUSTER, REGION, Ecs, task_definition
from tonrail.deploy import aws
from tonrail.deploy.aws import Aws, DeployError

IMAGE_V2 = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/tonrail:2222222"


def ecs_backend() -> object:
    return get_backend("ecs")[DEFAULT_ACCOUNT_ID][REGION]


def test_identity(aws_env: None) -> None:
    who = aws.identity(Aws(region=REGION))
    assert who["Account"] == DEFAULT_ACCOUNT_ID
    assert who["Arn"].startswith("arn:aws:")


def test_missing_secrets_names_each_and_why(aws_env: None) -> None:
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name="tonrail/production/jwt_secret", SecretString="x" * 40)
    sm.create_secret(Name="tonrail/production/ton_api_key")  # no value yet
    sm.create_secret(Name="tonrail/production/api_keys", SecretString="a:b")
    sm.delete_secret(SecretId="tonrail/production/api_keys", RecoveryWindowInDays=7)
    missing = aws.missing_secrets(
        Aws(region=REGION),
        [
            "tonrail/production/jwt_secret",
            "tonrail/production/ton_api_key",
            "tonrail/production/api_keys",
            "tonrail/production/ton_master_key",
        ],
    )
    assert missing == {
        "tonrail/production/ton_api_key": "has no current value",
        "tonrail/production/api_keys": "is scheduled for deletion",
        "tonrail/production/ton_master_key": "does not exist",
    }


def test_register_with_image_keeps_everything_but_the_image(ecs: Ecs) -> None:
    new = aws.register_with_image(ecs.aws, ecs.api_td, IMAGE_V2)
    assert new.endswith("task-definition/tonrail-api:2")
    before = ecs.client.describe_task_definition(taskDefinition=ecs.api_td)["taskDefinition"]
    after = ecs.client.describe_task_definition(taskDefinition=new, include=["TAGS"])
    td = after["taskDefinition"]
    assert td["containerDefinitions"][0]["image"] == IMAGE_V2
    for key in ("cpu", "memory", "taskRoleArn", "executionRoleArn", "networkMode"):
        assert td[key] == before[key]
    for key in ("secrets", "environment", "command"):
        assert td["containerDefinitions"][0][key] == before["containerDefinitions"][0][key]
    assert after["tags"] == [{"key": "app", "value": "tonrail"}]
    with pytest.raises(DeployError, match="no container"):
        aws.register_with_image(ecs.aws, ecs.api_td, IMAGE_V2, ["sidecar"])


def test_previous_task_definition_is_the_older_revision_of_the_same_family(ecs: Ecs) -> None:
    # tonrail-api-canary shares the prefix "tonrail-api" but is another family.
    task_definition(ecs.client, "tonrail-api-canary", IMAGE_V2, ["tonrail", "serve"])
    v2 = aws.register_with_image(ecs.aws, ecs.api_td, IMAGE_V2)
    v3 = aws.register_with_image(ecs.aws, v2, IMAGE_V2 + "b")
    assert aws.previous_task_definition(ecs.aws, v3) == v2
    assert aws.previous_task_definition(ecs.aws, v2) == ecs.api_td
    ecs.client.deregister_task_definition(taskDefinition=v2)  # inactive: not a target
    assert aws.previous_task_definition(ecs.aws, v3) == ecs.api_td
    with pytest.raises(DeployError, match="no active revision of tonrail-api older than 1"):
        aws.previous_task_definition(ecs.aws, ecs.api_td)


def test_update_service_and_wait_stable(ecs: Ecs) -> None:
    v2 = aws.register_with_image(ecs.aws, ecs.api_td, IMAGE_V2)
    aws.update_service(ecs.aws, CLUSTER, "tonrail-api", v2)
    assert aws.service_task_definition(ecs.aws, CLUSTER, "tonrail-api") == v2
    aws.wait_stable(ecs.aws, CLUSTER, ["tonrail-api", "tonrail-worker"], timeout=5)
    with pytest.raises(DeployError, match="update-service tonrail-nope: ServiceNotFound"):
        aws.update_service(ecs.aws, CLUSTER, "tonrail-nope", v2)
    with pytest.raises(DeployError, match="no active ECS service tonrail-nope"):
        aws.service_task_definition(ecs.aws, CLUSTER, "tonrail-nope")


def test_wait_stable_times_out_while_tasks_are_missing(ecs: Ecs) -> None:
    svc = ecs_backend().services[f"{CLUSTER}:tonrail-worker"]  # type: ignore[attr-defined]
    svc.running_count = 1  # one of two desired tasks keeps failing to start
    clock = [0.0]
    ecs.aws.monotonic = lambda: clock[0]
    ecs.aws.sleep = lambda s: clock.__setitem__(0, clock[0] + 10)
    ecs.aws.poll_seconds = 10
    with pytest.raises(DeployError, match="timed out after 60 s waiting for services"):
        aws.wait_stable(ecs.aws, CLUSTER, ["tonrail-api", "tonrail-worker"], timeout=60)


def test_wait_stable_reports_a_failed_deployment(ecs: Ecs) -> None:
    svc = ecs_backend().services[f"{CLUSTER}:tonrail-api"]  # type: ignore[attr-defined]
    svc.deployments[0]["rolloutState"] = "FAILED"  # ECS's circuit breaker gave up
    svc.deployments[0]["rolloutStateReason"] = "tasks failed to start"
    with pytest.raises(DeployError, match="deployment of tonrail-api failed: tasks failed"):
        aws.wait_stable(ecs.aws, CLUSTER, ["tonrail-api"], timeout=5)


def test_run_one_off_runs_the_command_on_the_service_network(ecs: Ecs) -> None:
    task_arn, code = aws.run_one_off(
        ecs.aws, CLUSTER, ecs.api_td, ["tonrail", "migrate"], "tonrail-api", timeout=5
    )
    assert code == 0
    [task] = ecs.client.describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"]
    assert task["lastStatus"] == "STOPPED"
    assert task["taskDefinitionArn"] == ecs.api_td
    assert task["overrides"]["containerOverrides"] == [
        {"name": "tonrail", "command": ["tonrail", "migrate"]}
    ]
    assert task["startedBy"] == "tonrail-deploy"
    eni = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    assert eni["subnetId"] == ecs.subnet


def test_run_one_off_returns_the_containers_exit_code(ecs: Ecs) -> None:
    backend = ecs_backend()
    real_run_task = backend.run_task  # type: ignore[attr-defined]

    def run_task_that_fails(*args: object, **kwargs: object) -> object:
        tasks = real_run_task(*args, **kwargs)
        tasks[0].containers[0].exitCode = 3  # the migration failed
        return tasks

    backend.run_task = run_task_that_fails  # type: ignore[attr-defined]
    try:
        _, code = aws.run_one_off(
            ecs.aws, CLUSTER, ecs.api_td, ["tonrail", "migrate"], "tonrail-api", timeout=5
        )
    finally:
        backend.run_task = real_run_task  # type: ignore[attr-defined]
    assert code == 3


def test_metrics_arrive_only_in_their_namespace(aws_env: None) -> None:
    cw = boto3.client("cloudwatch", region_name=REGION)
    a = Aws(region=REGION, poll_seconds=0.0)
    since = datetime.now(UTC) - timedelta(minutes=5)
    assert aws.metric_datapoints(a, "Deligate/Payments", since) == {
        "TransactionCount": 0,
        "PendingTransactions": 0,
        "TotalVolume": 0,
    }
    cw.put_metric_data(
        Namespace="Other/App", MetricData=[{"MetricName": "TransactionCount", "Value": 1.0}]
    )
    with pytest.raises(DeployError, match="no datapoints of PendingTransactions, "):
        aws.wait_metrics(a, "Deligate/Payments", since, 0, aws.PUBLISHED_METRICS)
    cw.put_metric_data(
        Namespace="Deligate/Payments",
        MetricData=[
            {"MetricName": name, "Value": 3.0, "Unit": "Count"}
            for name in ("TransactionCount", "PendingTransactions", "TotalVolume")
        ],
    )
    counts = aws.wait_metrics(a, "Deligate/Payments", since, 0, aws.PUBLISHED_METRICS)
    assert counts == {"TransactionCount": 1, "PendingTransactions": 1, "TotalVolume": 1}


def test_ecr_login(aws_env: None) -> None:
    endpoint, password = aws.ecr_login(Aws(region=REGION))
    assert endpoint.startswith("https://") and password
    token = boto3.client("ecr", region_name=REGION).get_authorization_token()
    raw = base64.b64decode(token["authorizationData"][0]["authorizationToken"]).decode()
    assert raw.startswith("AWS:")


def test_aws_errors_become_deploy_errors(aws_env: None) -> None:
    a = Aws(region=REGION)
    with pytest.raises(DeployError, match="ecs describe-services tonrail-api: ClusterNotFound"):
        aws.service_task_definition(a, "no-such-cluster", "tonrail-api")
