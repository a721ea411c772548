"""An ECS cluster with the api and worker services, in moto (the AWS API, offline)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tonrail.deploy.aws import Aws
from tonrail.settings import get_settings

REGION = "eu-central-1"
CLUSTER = "tonrail-production"
IMAGE_V1 = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/tonrail:1111111"


@dataclass
class Ecs:
    aws: Aws
    client: Any
    cluster: str
    api_td: str
    worker_td: str
    subnet: str
    security_group: str


def task_definition(client: Any, family: str, image: str, command: list[str]) -> str:
    out = client.register_task_definition(
        family=family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="512",
        memory="1024",
        executionRoleArn="arn:aws:iam::123456789012:role/tonrail-execution",
        taskRoleArn="arn:aws:iam::123456789012:role/tonrail-task",
        containerDefinitions=[
            {
                "name": "tonrail",
                "image": image,
                "memory": 1024,
                "command": command,
                "essential": True,
                "secrets": [
                    {
                        "name": "JWT_SECRET",
                        "valueFrom": "arn:aws:secretsmanager:eu-central-1:123456789012"
                        ":secret:tonrail-production/JWT_SECRET",
                    }
                ],
                "environment": [{"name": "TON_NETWORK", "value": "mainnet"}],
            }
        ],
        tags=[{"key": "app", "value": "tonrail"}],
    )
    return str(out["taskDefinition"]["taskDefinitionArn"])


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "MOTO_ECS_SERVICE_RUNNING": "2",  # services come up with every desired task running
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with mock_aws():
        yield
    get_settings.cache_clear()


@pytest.fixture
def ecs(aws_env: None) -> Ecs:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as deploy/terraform
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="tonrail", Description="tasks", VpcId=vpc)["GroupId"]
    client = boto3.client("ecs", region_name=REGION)
    client.create_cluster(clusterName=CLUSTER)
    api_td = task_definition(client, "tonrail-api", IMAGE_V1, ["tonrail", "serve"])
    worker_td = task_definition(client, "tonrail-worker", IMAGE_V1, ["tonrail", "worker"])
    network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [sg]}}
    for name, td in (("tonrail-api", api_td), ("tonrail-worker", worker_td)):
        client.create_service(
            cluster=CLUSTER,
            serviceName=name,
            taskDefinition=td,
            desiredCount=2,
            launchType="FARGATE",
            networkConfiguration=network,
        )
    aws = Aws(region=REGION, poll_seconds=0.0)
    return Ecs(aws, client, CLUSTER, api_td, worker_td, subnet, sg)
