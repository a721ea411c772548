"""`tonrail deploy ...`: the AWS steps of scripts/deploy-mainnet-payments.sh and
scripts/rollback-mainnet.sh, one command each, so an operator can also run any step alone.

Each command prints its result on stdout (an ARN, a line per check) and its errors on
stderr with exit code 1; the scripts capture stdout where they need a value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from tonrail.settings import get_settings

if TYPE_CHECKING:
    from tonrail.deploy.aws import Aws
    from tonrail.settings import RehearsalSettings

deploy_app = typer.Typer(
    help="AWS deployment steps (ECS, Secrets Manager, CloudWatch, ECR, STS); docs/DEPLOY.md.",
    no_args_is_help=True,
)

Cluster = Annotated[str, typer.Option(help="ECS cluster name or ARN")]
Service = Annotated[str, typer.Option(help="ECS service name")]
Timeout = Annotated[float, typer.Option(help="give up after this many seconds")]
T = TypeVar("T")


def _aws() -> Aws:
    from tonrail.deploy.aws import Aws

    return Aws(region=get_settings().aws_region)


def _step(fn: Callable[[], T]) -> T:
    """Run one step; a DeployError becomes `error: ...` on stderr and exit code 1."""
    from tonrail.deploy.aws import DeployError

    try:
        return fn()
    except DeployError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


@deploy_app.command("identity")
def identity(
    expect_account: Annotated[
        str | None, typer.Option(help="refuse unless the caller is in this AWS account")
    ] = None,
) -> None:
    """Who the AWS calls run as (STS GetCallerIdentity)."""
    from tonrail.deploy import aws

    who = _step(lambda: aws.identity(_aws()))
    if expect_account and who["Account"] != expect_account:
        typer.echo(
            f"error: AWS account is {who['Account']}, expected {expect_account} ({who['Arn']})",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"{who['Account']} {who['Arn']}")


@deploy_app.command("check-secrets")
def check_secrets(
    secret_ids: Annotated[list[str], typer.Argument(help="secret names or ARNs")],
) -> None:
    """Refuse unless every secret exists in Secrets Manager with a current value
    (DescribeSecret only: values are never read)."""
    from tonrail.deploy import aws

    missing = _step(lambda: aws.missing_secrets(_aws(), secret_ids))
    for secret_id, why in missing.items():
        typer.echo(f"error: secret {secret_id} {why}", err=True)
    if missing:
        raise typer.Exit(1)
    typer.echo(f"{len(secret_ids)} secrets present")


@deploy_app.command("current-task-definition")
def current_task_definition(cluster: Cluster, service: Service) -> None:
    """Print the task definition ARN the service runs now."""
    from tonrail.deploy import aws

    typer.echo(_step(lambda: aws.service_task_definition(_aws(), cluster, service)))


@deploy_app.command("previous-task-definition")
def previous_task_definition(
    cluster: Cluster,
    service: Service,
    before: Annotated[
        str | None, typer.Option(help="a task definition ARN; default: what the service runs")
    ] = None,
) -> None:
    """Print the newest active revision of the service's family older than the current one."""
    from tonrail.deploy import aws

    def find() -> str:
        a = _aws()
        return aws.previous_task_definition(
            a, before or aws.service_task_definition(a, cluster, service)
        )

    typer.echo(_step(find))


@deploy_app.command("register-task-definition")
def register_task_definition(
    from_: Annotated[str, typer.Option("--from", help="the task definition to copy")],
    image: Annotated[str, typer.Option(help="the new image, e.g. <ecr-url>:<git-sha>")],
    container: Annotated[
        list[str] | None, typer.Option(help="containers to change (repeat); default: all")
    ] = None,
) -> None:
    """Register a new revision with another image (all else kept); print its ARN."""
    from tonrail.deploy import aws

    typer.echo(_step(lambda: aws.register_with_image(_aws(), from_, image, container or ())))


@deploy_app.command("migrate")
def migrate(
    cluster: Cluster,
    task_definition: Annotated[str, typer.Option(help="the task definition to run it in")],
    like_service: Annotated[
        str, typer.Option(help="run on this service's subnets and security groups")
    ],
    timeout: Timeout = 900.0,
    poll: Annotated[float, typer.Option(help="seconds between reads")] = 10.0,
) -> None:
    """Run `tonrail migrate` once as an ECS task and wait for its exit code."""
    from tonrail.deploy import aws

    a = _aws()
    a.poll_seconds = poll
    task, code = _step(
        lambda: aws.run_one_off(
            a,
            cluster,
            task_definition,
            ["migrate"],  # the image's ENTRYPOINT is `tonrail`
            like_service,
            timeout=timeout,
        )
    )
    if code != 0:
        typer.echo(f"error: tonrail migrate exited {code} (task {task}; see its logs)", err=True)
        raise typer.Exit(1)
    typer.echo(f"migrated (task {task} exited 0)")


@deploy_app.command("update-service")
def update_service(
    cluster: Cluster,
    service: Service,
    task_definition: Annotated[str, typer.Option(help="the task definition ARN to run")],
) -> None:
    """Move the service to a task definition (ECS rolls its tasks over)."""
    from tonrail.deploy import aws

    _step(lambda: aws.update_service(_aws(), cluster, service, task_definition))
    typer.echo(f"{service} -> {task_definition}")


@deploy_app.command("restart")
def restart(
    cluster: Cluster,
    service: Annotated[list[str], typer.Option(help="ECS service name (repeat)")],
) -> None:
    """Start new tasks of the same task definition (after rotating a secret); then
    `tonrail deploy wait-stable`."""
    from tonrail.deploy import aws

    a = _aws()
    for name in service:
        _step(partial(aws.force_new_deployment, a, cluster, name))
        typer.echo(f"{name}: new deployment started")


@deploy_app.command(
    "run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def run(
    cluster: Cluster,
    like_service: Annotated[
        str, typer.Option(help="its task definition (unless given), subnets, security groups")
    ],
    command: Annotated[
        list[str], typer.Argument(help="after --, e.g. -- tonrail ops pause (`tonrail` optional)")
    ],
    task_definition: Annotated[
        str | None, typer.Option(help="default: the one the service runs now")
    ] = None,
    timeout: Timeout = 900.0,
    poll: Annotated[float, typer.Option(help="seconds between reads")] = 10.0,
) -> None:
    """Run one command as a one-off ECS task (the operator's `tonrail ...` against the
    production database: ops pause, ledger check, audit verify) and wait for its exit code."""
    from tonrail.deploy import aws

    a = _aws()
    a.poll_seconds = poll

    # The image's ENTRYPOINT is `tonrail`: the container gets only its arguments.
    args = command[1:] if command[:1] == ["tonrail"] else command

    def go() -> tuple[str, int]:
        td = task_definition or aws.service_task_definition(a, cluster, like_service)
        return aws.run_one_off(a, cluster, td, args, like_service, timeout=timeout)

    task, code = _step(go)
    typer.echo(f"task {task} exited {code} (its output is in the service's log group)")
    if code != 0:
        raise typer.Exit(1)


@deploy_app.command("wait-stable")
def wait_stable(
    cluster: Cluster,
    service: Annotated[list[str], typer.Option(help="ECS service name (repeat)")],
    timeout: Timeout = 900.0,
    poll: Annotated[float, typer.Option(help="seconds between reads")] = 10.0,
) -> None:
    """Wait until the services run their task definition with every desired task."""
    from tonrail.deploy import aws

    a = _aws()
    a.poll_seconds = poll
    _step(lambda: aws.wait_stable(a, cluster, service, timeout))
    typer.echo(f"stable: {', '.join(service)}")


@deploy_app.command("check-metrics")
def check_metrics(
    since_minutes: Annotated[float, typer.Option(help="look this far back")] = 10.0,
    wait: Annotated[float, typer.Option(help="keep looking this many seconds")] = 300.0,
    poll: Annotated[float, typer.Option(help="seconds between reads")] = 30.0,
    metric: Annotated[
        list[str] | None,
        typer.Option(help="metric name (repeat); default the ones always published"),
    ] = None,
) -> None:
    """Refuse unless the service's metrics arrive in CloudWatch (CLOUDWATCH_NAMESPACE)."""
    from tonrail.deploy import aws

    namespace = get_settings().cloudwatch_namespace
    a = _aws()
    a.poll_seconds = poll
    since = aws.minutes_ago(since_minutes)
    counts = _step(
        lambda: aws.wait_metrics(a, namespace, since, wait, tuple(metric or aws.PUBLISHED_METRICS))
    )
    for name, n in counts.items():
        typer.echo(f"{namespace}/{name}: {n} datapoints")


@deploy_app.command("ecr-password")
def ecr_password() -> None:
    """Print an ECR password for `docker login --username AWS --password-stdin`."""
    from tonrail.deploy import aws

    _, password = _step(lambda: aws.ecr_login(_aws()))
    typer.echo(password)


@deploy_app.command("health")
def health(
    url: Annotated[str, typer.Option(help="the service's public base URL")],
    wait: Annotated[float, typer.Option(help="keep trying this many seconds")] = 300.0,
    poll: Annotated[float, typer.Option(help="seconds between tries")] = 5.0,
) -> None:
    """/readyz answers and /metrics shows the hot wallet's TON balance (METRICS_TOKEN)."""
    from tonrail.deploy.health import check

    token = get_settings().metrics_token.get_secret_value()
    report = asyncio.run(check(url, token, wait=wait, poll=poll))
    for line in report.lines:
        typer.echo(line if report.ok else f"error: {line}", err=not report.ok)
    if not report.ok:
        raise typer.Exit(1)


@deploy_app.command("check-record")
def check_record(
    sha: Annotated[str, typer.Option(help="the git commit being deployed")],
    release: Annotated[
        str | None, typer.Option(help="also accept a record of this release")
    ] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="default REHEARSAL_RECORD_DIR")
    ] = None,
    max_age_hours: Annotated[float, typer.Option(help="the oldest record accepted")] = 24.0,
    network: Annotated[str, typer.Option(help="the network it must be from")] = "testnet",
) -> None:
    """Refuse unless a passing testnet verification record for this commit is on file."""
    from tonrail.deploy.record import RecordError, require

    try:
        accepted = require(
            directory or get_settings().rehearsal_record_dir,
            sha=sha,
            release=release,
            network=network,
            max_age=timedelta(hours=max_age_hours),
        )
    except RecordError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    checks = accepted.record.get("checks", [])
    typer.echo(
        f"{accepted.path.name}: {len(checks)} checks passed on {network}"
        f" at {accepted.record['finished_at']}"
    )


rehearsal_app = typer.Typer(
    help="The testnet rehearsal: real payments through a deployment's API, verified on chain.",
    no_args_is_help=True,
)
EnvFile = Annotated[
    Path,
    typer.Option(help="TONRAIL_* settings of the deployment (the environment wins)"),
]
RecordDir = Annotated[Path | None, typer.Option("--dir", help="default REHEARSAL_RECORD_DIR")]


def _rehearsal_settings(env_file: Path) -> RehearsalSettings:
    from tonrail.settings import RehearsalSettings

    return RehearsalSettings(_env_file=env_file if env_file.exists() else None)


@rehearsal_app.command("pay")
def rehearsal_pay(env_file: EnvFile = Path("var/stack.env"), directory: RecordDir = None) -> None:
    """TON and USDT payouts, an idempotent retry, a bounce and a paid invoice through the
    public API; waits for their final states (make test-payments)."""
    from tonrail.deploy.rehearsal import RehearsalError, pay

    cfg = _rehearsal_settings(env_file)
    try:
        state = asyncio.run(pay(cfg, directory or get_settings().rehearsal_record_dir))
    except RehearsalError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    bad = 0
    for item in state["items"]:
        mark = "ok  " if item["ok"] else "FAIL"
        bad += not item["ok"]
        extra = f" retry={item['retry']}" if "retry" in item else ""
        typer.echo(
            f"{mark} {item['check']:<17} {item['id']} {item['status']}"
            f" (expected {item['expected']}){extra}"
        )
    typer.echo(f"rehearsal {state['run_id']} on {state['network']}: {len(state['items'])} payments")
    if bad:
        raise typer.Exit(1)


@rehearsal_app.command("verify")
def rehearsal_verify(
    env_file: EnvFile = Path("var/stack.env"),
    directory: RecordDir = None,
    sha: Annotated[
        str | None, typer.Option(help="the commit deployed; default: this checkout's HEAD")
    ] = None,
) -> None:
    """Check the last rehearsal's payments on the chain through toncenter and the books;
    write the dated record the mainnet deploy requires (make verify-testnet-payments)."""
    from tonrail.deploy.rehearsal import RehearsalError, verify

    cfg = _rehearsal_settings(env_file)
    try:
        path, rec = asyncio.run(
            verify(cfg, directory or get_settings().rehearsal_record_dir, sha=sha)
        )
    except RehearsalError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    for check in rec["checks"]:
        typer.echo(f"{'ok  ' if check['ok'] else 'FAIL'} {check['name']:<17} {check['detail']}")
    typer.echo(f"record: {path} ({'passed' if rec['ok'] else 'FAILED'})")
    if not rec["ok"]:
        raise typer.Exit(1)
