"""Every AWS call the deploy and rollback scripts make, through boto3.

The scripts stay thin: they call `tonrail deploy ...` (deploy/cli.py), which calls these
functions. Each one does one thing an operator could do in the console, waits where AWS is
asynchronous (a one-off task, a service deployment, metrics), and says what went wrong in
a `DeployError` instead of a traceback. Credentials come from boto3's usual chain (the
operator's profile, SSO or environment); the region is AWS_REGION (settings.py).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

# What register_task_definition accepts of what describe_task_definition returns.
_REGISTER_FIELDS = (
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
)


class DeployError(Exception):
    """A deploy step that cannot go on; `message` is for the operator."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class Aws:
    """boto3 clients for one region, with the clock the waits use (tests pass their own)."""

    region: str
    poll_seconds: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def client(self, name: str) -> Any:
        if name not in self._clients:
            self._clients[name] = boto3.client(name, region_name=self.region)
        return self._clients[name]

    def _wait(
        self, what: str, timeout: float, done: Callable[[], Any]
    ) -> Any:  # returns done()'s first truthy value
        deadline = self.monotonic() + timeout
        while True:
            result = done()
            if result:
                return result
            if self.monotonic() >= deadline:
                raise DeployError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.sleep(self.poll_seconds)


def _call(what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """One AWS API call; its error becomes a DeployError naming the step."""
    try:
        return fn(**kwargs)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise DeployError(f"{what}: {err.get('Code', 'error')}: {err.get('Message', exc)}") from exc
    except BotoCoreError as exc:
        raise DeployError(f"{what}: {exc}") from exc


# -- identity and secrets ---------------------------------------------------------------------


def identity(aws: Aws) -> dict[str, str]:
    """Who the calls run as: Account, Arn, UserId (STS GetCallerIdentity)."""
    out = _call("sts get-caller-identity", aws.client("sts").get_caller_identity)
    return {k: str(out[k]) for k in ("Account", "Arn", "UserId")}


def missing_secrets(aws: Aws, secret_ids: Iterable[str]) -> dict[str, str]:
    """The secrets that are not usable, with why: absent, scheduled for deletion, or without
    a current value. Only DescribeSecret is called: the deployer never reads secret values."""
    sm = aws.client("secretsmanager")
    missing: dict[str, str] = {}
    for secret_id in secret_ids:
        try:
            desc = sm.describe_secret(SecretId=secret_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                missing[secret_id] = "does not exist"
                continue
            raise DeployError(f"secretsmanager describe-secret {secret_id}: {code}") from exc
        if desc.get("DeletedDate"):
            missing[secret_id] = "is scheduled for deletion"
        elif not any("AWSCURRENT" in s for s in desc.get("VersionIdsToStages", {}).values()):
            missing[secret_id] = "has no current value"
    return missing


# -- task definitions -------------------------------------------------------------------------


def describe_service(aws: Aws, cluster: str, service: str) -> dict[str, Any]:
    out = _call(
        f"ecs describe-services {service}",
        aws.client("ecs").describe_services,
        cluster=cluster,
        services=[service],
    )
    found = [s for s in out.get("services", []) if s.get("status") == "ACTIVE"]
    if not found:
        raise DeployError(f"no active ECS service {service} in cluster {cluster}")
    service_desc: dict[str, Any] = found[0]
    return service_desc


def service_task_definition(aws: Aws, cluster: str, service: str) -> str:
    """The task definition ARN the service runs now."""
    return str(describe_service(aws, cluster, service)["taskDefinition"])


def _family_revision(arn: str) -> tuple[str, int]:
    name = arn.rsplit("/", 1)[-1]
    family, _, revision = name.rpartition(":")
    if not family or not revision.isdigit():
        raise DeployError(f"not a task definition ARN with a revision: {arn}")
    return family, int(revision)


def register_with_image(
    aws: Aws, from_task_definition: str, image: str, containers: Sequence[str] = ()
) -> str:
    """Register a new revision of `from_task_definition` with `image` in its containers
    (all of them, or those named); everything else (secrets, roles, sizes, logs) is kept."""
    ecs = aws.client("ecs")
    out = _call(
        f"ecs describe-task-definition {from_task_definition}",
        ecs.describe_task_definition,
        taskDefinition=from_task_definition,
        include=["TAGS"],
    )
    current = out["taskDefinition"]
    spec = {k: current[k] for k in _REGISTER_FIELDS if current.get(k) not in (None, [], {})}
    names = {c["name"] for c in spec["containerDefinitions"]}
    unknown = set(containers) - names
    if unknown:
        raise DeployError(f"no container {sorted(unknown)} in {from_task_definition}")
    spec["containerDefinitions"] = [
        {**c, "image": image} if not containers or c["name"] in containers else c
        for c in spec["containerDefinitions"]
    ]
    if out.get("tags"):
        spec["tags"] = out["tags"]
    registered = _call(
        f"ecs register-task-definition {spec['family']}", ecs.register_task_definition, **spec
    )
    return str(registered["taskDefinition"]["taskDefinitionArn"])


def previous_task_definition(aws: Aws, current: str) -> str:
    """The newest active revision of the same family older than `current`."""
    family, revision = _family_revision(current)
    ecs = aws.client("ecs")
    older: list[tuple[int, str]] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"familyPrefix": family, "status": "ACTIVE", "sort": "DESC"}
        if token:
            kwargs["nextToken"] = token
        out = _call(f"ecs list-task-definitions {family}", ecs.list_task_definitions, **kwargs)
        for arn in out.get("taskDefinitionArns", []):
            fam, rev = _family_revision(arn)
            if fam == family and rev < revision:
                older.append((rev, str(arn)))
        token = out.get("nextToken")
        if not token:
            break
    if not older:
        raise DeployError(f"no active revision of {family} older than {revision}")
    return max(older)[1]


# -- one-off tasks and services ---------------------------------------------------------------


def run_one_off(
    aws: Aws,
    cluster: str,
    task_definition: str,
    command: Sequence[str],
    like_service: str,
    *,
    container: str | None = None,
    timeout: float = 900.0,
) -> tuple[str, int]:
    """Run `command` once in `task_definition` on the network of `like_service`, wait for
    the task to stop, and return (task ARN, the container's exit code)."""
    ecs = aws.client("ecs")
    svc = describe_service(aws, cluster, like_service)
    if container is None:
        td = _call(
            f"ecs describe-task-definition {task_definition}",
            ecs.describe_task_definition,
            taskDefinition=task_definition,
        )["taskDefinition"]
        container = str(td["containerDefinitions"][0]["name"])
    kwargs: dict[str, Any] = {
        "cluster": cluster,
        "taskDefinition": task_definition,
        "count": 1,
        "startedBy": "tonrail-deploy",
        "overrides": {"containerOverrides": [{"name": container, "command": list(command)}]},
    }
    if svc.get("networkConfiguration"):
        kwargs["networkConfiguration"] = svc["networkConfiguration"]
    if svc.get("capacityProviderStrategy"):
        kwargs["capacityProviderStrategy"] = svc["capacityProviderStrategy"]
    else:
        kwargs["launchType"] = svc.get("launchType") or "FARGATE"
    out = _call("ecs run-task", ecs.run_task, **kwargs)
    if out.get("failures") or not out.get("tasks"):
        reasons = "; ".join(
            f"{f.get('arn', '')} {f.get('reason', '')}".strip() for f in out.get("failures", [])
        )
        raise DeployError(f"ecs run-task started nothing: {reasons or 'no reason given'}")
    task_arn = str(out["tasks"][0]["taskArn"])

    def stopped() -> dict[str, Any] | None:
        tasks = _call(
            "ecs describe-tasks", ecs.describe_tasks, cluster=cluster, tasks=[task_arn]
        ).get("tasks", [])
        if tasks and tasks[0].get("lastStatus") == "STOPPED":
            task: dict[str, Any] = tasks[0]
            return task
        return None

    task = aws._wait(f"task {task_arn} to stop", timeout, stopped)
    for c in task.get("containers", []):
        if c.get("name") == container:
            if c.get("exitCode") is None:
                reason = c.get("reason") or task.get("stoppedReason") or "no exit code"
                raise DeployError(f"task {task_arn} stopped without an exit code: {reason}")
            return task_arn, int(c["exitCode"])
    raise DeployError(f"task {task_arn} has no container {container}")


def update_service(aws: Aws, cluster: str, service: str, task_definition: str) -> None:
    """Point the service at `task_definition`; ECS rolls the tasks over."""
    _call(
        f"ecs update-service {service}",
        aws.client("ecs").update_service,
        cluster=cluster,
        service=service,
        taskDefinition=task_definition,
    )


def force_new_deployment(aws: Aws, cluster: str, service: str) -> None:
    """Replace the service's tasks with new ones of the same task definition: they read
    their secrets again when they start (how a rotated secret reaches the service)."""
    # update_service again, forcing new tasks: alike update_service in shape only.
    _call(
        f"ecs update-service --force-new-deployment {service}",
        aws.client("ecs").update_service,
        cluster=cluster,
        service=service,
        forceNewDeployment=True,
    )


def _stable(svc: dict[str, Any]) -> bool:
    deployments = svc.get("deployments", [])
    if any(d.get("rolloutState") == "FAILED" for d in deployments):
        reason = next(d.get("rolloutStateReason", "") for d in deployments)
        raise DeployError(f"deployment of {svc['serviceName']} failed: {reason}")
    # What `aws ecs wait services-stable` checks: right after update-service ECS lists the
    # new deployment beside the old one until the old tasks are drained.
    return len(deployments) == 1 and svc.get("runningCount") == svc.get("desiredCount")


def wait_stable(aws: Aws, cluster: str, services: Sequence[str], timeout: float = 900.0) -> None:
    """Wait until every service has one deployment with all its desired tasks running (what
    `aws ecs wait services-stable` checks, with a timeout of our choosing and a clear error
    when ECS's deployment circuit breaker failed a deployment)."""
    ecs = aws.client("ecs")

    def all_stable() -> bool:
        out = _call(
            "ecs describe-services", ecs.describe_services, cluster=cluster, services=list(services)
        )
        if out.get("failures"):
            raise DeployError(f"ecs describe-services: {out['failures']}")
        return all(_stable(s) for s in out["services"])

    aws._wait(f"services {', '.join(services)} to be stable", timeout, all_stable)


# -- metrics and the registry -----------------------------------------------------------------

PUBLISHED_METRICS = ("TransactionCount", "PendingTransactions", "TotalVolume")


def metric_datapoints(
    aws: Aws,
    namespace: str,
    since: datetime,
    until: datetime | None = None,
    metrics: Sequence[str] = PUBLISHED_METRICS,
) -> dict[str, int]:
    """How many one-minute datapoints each metric has in `namespace` since `since`.
    The service publishes these every PUBLISH interval whether or not money moves."""
    # The end is exclusive and rounded by CloudWatch: one minute ahead covers the current one.
    until = until or datetime.now(UTC) + timedelta(minutes=1)
    queries = [
        {
            "Id": f"m{i}",
            "MetricStat": {
                "Metric": {"Namespace": namespace, "MetricName": name},
                "Period": 60,
                "Stat": "SampleCount",
            },
            "ReturnData": True,
        }
        for i, name in enumerate(metrics)
    ]
    out = _call(
        "cloudwatch get-metric-data",
        aws.client("cloudwatch").get_metric_data,
        MetricDataQueries=queries,
        StartTime=since,
        EndTime=until,
    )
    counts = {name: 0 for name in metrics}
    for result in out.get("MetricDataResults", []):
        counts[metrics[int(result["Id"][1:])]] += len(result.get("Values", []))
    return counts


def wait_metrics(
    aws: Aws, namespace: str, since: datetime, timeout: float, metrics: Sequence[str]
) -> dict[str, int]:
    """Wait until every metric has at least one datapoint since `since`."""
    last: dict[str, int] = {}

    def arrived() -> dict[str, int] | None:
        nonlocal last
        last = metric_datapoints(aws, namespace, since, metrics=metrics)
        return last if all(last.values()) else None

    try:
        result: dict[str, int] = aws._wait(f"metrics in {namespace}", timeout, arrived)
    except DeployError:
        absent = sorted(k for k, v in last.items() if not v)
        raise DeployError(
            f"no datapoints of {', '.join(absent)} in {namespace} since "
            f"{since.isoformat(timespec='seconds')} (waited {timeout:.0f} s)"
        ) from None
    return result


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


def ecr_login(aws: Aws) -> tuple[str, str]:
    """(registry endpoint, password) for `docker login --username AWS --password-stdin`."""
    out = _call("ecr get-authorization-token", aws.client("ecr").get_authorization_token)
    data = out["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    if user != "AWS" or not password:
        raise DeployError("ecr get-authorization-token returned an unexpected token")
    return str(data["proxyEndpoint"]), password
