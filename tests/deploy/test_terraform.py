"""Static proof of deploy/terraform (no cloud here): every .tf parsed with python-hcl2 and the
numbers and properties the deployment guide and issue #12 fix asserted on the parsed code.

Each check is a function of the parsed configuration; the mutation tests at the end apply one
small edit to a copy of the directory and show the check then fails."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions
from pydantic import SecretStr

from tests.deploy.conftest import Ecs
from tonrail.monitoring.cloudwatch import metric_data
from tonrail.monitoring.snapshot import SignalValue, Snapshot
from tonrail.rails.ton.wallet_key_error import PURPOSE
from tonrail.settings import REPO_ROOT, Settings

TF_DIR = REPO_ROOT / "deploy" / "terraform"
SERVICE_MODULE = "modules/ecs_service"
OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
TFVARS_EXAMPLES = ("variables.tfvars.example", "variables-payments.tfvars.example")

# The deployment guide: "Scaling" and "Monitoring Configuration".
GUIDE_SCALING = {"min_tasks": 2, "max_tasks": 10, "cpu_target_pct": 70, "memory_target_pct": 80}
GUIDE_PENDING_SCALE_OUT = 50
GUIDE_SUCCESS_RATE_MIN = 95
GUIDE_PENDING_MAX = 100


@lru_cache(maxsize=256)
def _parse(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = hcl2.loads(text, serialization_options=OPTIONS)
    return parsed


@dataclass
class Module:
    """The blocks of every .tf file of one Terraform module (one directory)."""

    path: Path
    text: str
    resources: dict[str, dict[str, dict[str, Any]]]
    data: dict[str, dict[str, dict[str, Any]]]
    variables: dict[str, dict[str, Any]]
    locals: dict[str, Any]
    modules: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    terraform: list[dict[str, Any]]

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        assert name in self.resources.get(kind, {}), f"{kind}.{name} is missing in {self.path}"
        return self.resources[kind][name]

    def resolve(self, value: Any) -> Any:
        """A plain `${var.x}` / `${local.a.b}` reference replaced by its default / value."""
        if not isinstance(value, str):
            return value
        m = re.fullmatch(r"\$\{(var|local)\.([\w.]+)\}", value)
        if m is None:
            return value
        kind, path = m.group(1), m.group(2).split(".")
        if kind == "var":
            var = self.variables.get(path[0])
            assert var is not None, f"var.{path[0]} is not declared"
            assert "default" in var, f"var.{path[0]} has no default to resolve"
            current: Any = var["default"]
        else:
            assert path[0] in self.locals, f"local.{path[0]} is not declared"
            current = self.locals[path[0]]
        for key in path[1:]:
            current = self.resolve(current)
            assert isinstance(current, dict) and key in current, f"{value}: no {key}"
            current = current[key]
        return self.resolve(current)


def load_module(path: Path) -> Module:
    mod = Module(path, "", {}, {}, {}, {}, {}, {}, [])
    for file in sorted(path.glob("*.tf")):
        text = file.read_text()
        mod.text += text + "\n"
        tree = _parse(text)
        for block in tree.get("resource", []):
            for kind, named in block.items():
                mod.resources.setdefault(kind, {}).update(named)
        for block in tree.get("data", []):
            for kind, named in block.items():
                mod.data.setdefault(kind, {}).update(named)
        for block in tree.get("variable", []):
            mod.variables.update(block)
        for block in tree.get("locals", []):
            for key in block:
                assert key not in mod.locals, f"local.{key} declared twice"
            mod.locals.update(block)
        for block in tree.get("module", []):
            mod.modules.update(block)
        for block in tree.get("output", []):
            mod.outputs.update(block)
        mod.terraform.extend(tree.get("terraform", []))
    return mod


@dataclass
class Deployment:
    root: Module
    service: Module
    tfvars: dict[str, dict[str, Any]]
    backend_example: dict[str, Any]


def load(path: Path = TF_DIR) -> Deployment:
    tfvars = {name: _parse((path / name).read_text()) for name in TFVARS_EXAMPLES}
    backend = _parse((path / "backend.hcl.example").read_text())
    return Deployment(load_module(path), load_module(path / SERVICE_MODULE), tfvars, backend)


def statements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["statement"])


def secret_settings() -> set[str]:
    """The environment names of every secret the service reads (settings.py) + the URLs with
    credentials in them."""
    secret = {n.upper() for n, f in Settings.model_fields.items() if f.annotation is SecretStr}
    return secret | {"DATABASE_URL", "REDIS_URL"}


def image_entrypoint() -> list[str]:
    """The ENTRYPOINT of the image (deploy/docker/Dockerfile, exec form)."""
    dockerfile = (REPO_ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    found = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile, re.MULTILINE)
    assert len(found) == 1, "one ENTRYPOINT in exec form"
    entrypoint: list[str] = json.loads(found[-1])
    return entrypoint


def image_volumes() -> list[str]:
    """The VOLUMEs the image declares (exec form)."""
    dockerfile = (REPO_ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    found = re.findall(r"^VOLUME\s+(\[.*\])\s*$", dockerfile, re.MULTILINE)
    return [v for line in found for v in json.loads(line)]


def published_metric_names() -> set[str]:
    """What the service's CloudWatch publisher sends when everything is known."""
    at = datetime(2026, 12, 4, tzinfo=UTC)
    snap = Snapshot(at=at, window_seconds=300, finished={"succeeded": 9, "failed": 1})
    snap.signals = [SignalValue("gas_price", {}, "gauge", 400, at)]
    data = metric_data(snap)
    assert all("Dimensions" not in d for d in data)  # the dashboard relies on it
    return {d["MetricName"] for d in data}


# --- the checks ---------------------------------------------------------------------------


def check_autoscaling(d: Deployment) -> None:
    calls = {n: b for n, b in d.root.modules.items() if b["source"] == f"./{SERVICE_MODULE}"}
    assert set(calls) == {"api", "worker"}, "api and worker come from the one service module"
    for name, call in calls.items():
        for key, want in GUIDE_SCALING.items():
            got = d.root.resolve(call.get(key))
            assert got == want, f"{name}: {key} is {got}, the guide says {want}"
    pending = {
        k: d.root.resolve(v)
        for k, v in d.root.resolve(calls["worker"]["pending_scale_out"]).items()
    }
    assert pending == {
        "namespace": Settings.model_fields["cloudwatch_namespace"].default,
        "metric_name": "PendingTransactions",
        "threshold": GUIDE_PENDING_SCALE_OUT,
    }, f"worker: pending scale-out is {pending}"
    assert "PendingTransactions" in published_metric_names()

    svc = d.service
    target = svc.resource("aws_appautoscaling_target", "service")
    assert target["min_capacity"] == "${var.min_tasks}"
    assert target["max_capacity"] == "${var.max_tasks}"
    assert target["scalable_dimension"] == "ecs:service:DesiredCount"
    for policy, metric, var in (
        ("cpu", "ECSServiceAverageCPUUtilization", "cpu_target_pct"),
        ("memory", "ECSServiceAverageMemoryUtilization", "memory_target_pct"),
    ):
        body = svc.resource("aws_appautoscaling_policy", policy)
        assert body["policy_type"] == "TargetTrackingScaling"
        conf = body["target_tracking_scaling_policy_configuration"][0]
        assert conf["target_value"] == f"${{var.{var}}}", policy
        assert conf["predefined_metric_specification"][0]["predefined_metric_type"] == metric
        assert not conf.get("disable_scale_in", False)
    step = svc.resource("aws_appautoscaling_policy", "pending")
    conf = step["step_scaling_policy_configuration"][0]
    assert conf["adjustment_type"] == "ChangeInCapacity"
    adjustments = conf["step_adjustment"]
    assert adjustments[0]["metric_interval_lower_bound"] == 0
    assert all(a["scaling_adjustment"] >= 1 for a in adjustments), "the step only scales out"
    alarm = svc.resource("aws_cloudwatch_metric_alarm", "pending_scale_out")
    assert alarm["comparison_operator"] == "GreaterThanThreshold"
    assert alarm["threshold"] == "${var.pending_scale_out.threshold}"
    assert alarm["metric_name"] == "${var.pending_scale_out.metric_name}"
    assert alarm["namespace"] == "${var.pending_scale_out.namespace}"
    assert "dimensions" not in alarm, "the service publishes PendingTransactions without any"
    assert alarm["alarm_actions"] == ["${aws_appautoscaling_policy.pending[0].arn}"]


def check_services(d: Deployment) -> None:
    assert "aws_ecs_task_definition" not in d.root.resources, "task definitions: the module"
    assert "aws_ecs_service" not in d.root.resources, "services: the module"
    api, worker = d.root.modules["api"], d.root.modules["worker"]
    # the container runs ENTRYPOINT + command: `tonrail serve` and `tonrail worker`
    entrypoint = image_entrypoint()
    assert entrypoint + api["command"] == ["tonrail", "serve"], f"api runs {api['command']}"
    assert entrypoint + worker["command"] == ["tonrail", "worker"], (
        f"worker runs {worker['command']}"
    )
    assert api["target_group_arn"] == "${aws_lb_target_group.api.arn}"
    assert "target_group_arn" not in worker, "the worker takes no traffic"
    for name, call in (("api", api), ("worker", worker)):
        assert call["subnet_ids"] == "${aws_subnet.private[*].id}", "tasks in private subnets"
        own = f"{name} must run with its own roles"
        assert call["execution_role_arn"] == f'${{aws_iam_role.execution["{name}"].arn}}', own
        assert call["task_role_arn"] == f'${{aws_iam_role.task["{name}"].arn}}', own
    assert list(d.service.resources["aws_ecs_task_definition"]) == ["service"]
    task = d.service.resource("aws_ecs_task_definition", "service")
    assert task["requires_compatibilities"] == ["FARGATE"]
    assert "command = var.command" in task["container_definitions"]
    assert 'name = "tonrail"' in task["container_definitions"]
    # a read-only root: DATA_DIR is a task volume where the image declares one (its owner)
    data_dir = d.root.locals["service_settings"]["DATA_DIR"]
    assert data_dir in image_volumes(), f"DATA_DIR {data_dir} is not a VOLUME of the image"
    assert task["volume"] == [{"name": "data"}]
    mount = f'{{sourceVolume = "data", containerPath = "{data_dir}", readOnly = false}}'
    assert mount in task["container_definitions"], "DATA_DIR must be the mounted volume"
    assert "readonlyRootFilesystem = true" in task["container_definitions"]
    service = d.service.resource("aws_ecs_service", "service")
    assert service["launch_type"] == "FARGATE"
    lb = service["dynamic"][0]["load_balancer"]["content"][0]
    assert lb["container_name"] == "tonrail", "the load balancer targets the one container"
    assert service["network_configuration"][0]["assign_public_ip"] is False
    assert service["deployment_circuit_breaker"][0] == {"enable": True, "rollback": True}
    # autoscaling owns the count; the deploy script moves the revision after `tonrail migrate`
    ignored = service["lifecycle"][0]["ignore_changes"]
    assert sorted(ignored) == ["desired_count", "task_definition"], ignored


def check_https(d: Deployment) -> None:
    https = d.root.resource("aws_lb_listener", "https")
    assert (https["port"], https["protocol"]) == (443, "HTTPS")
    assert https["certificate_arn"] == "${var.ssl_certificate_arn}", (
        f"HTTPS certificate is {https['certificate_arn']}, not var.ssl_certificate_arn"
    )
    assert https["ssl_policy"].startswith("ELBSecurityPolicy-TLS13-"), https["ssl_policy"]
    action = https["default_action"][0]
    assert action["type"] == "forward"
    assert action["target_group_arn"] == "${aws_lb_target_group.api.arn}"
    http = d.root.resource("aws_lb_listener", "http")
    assert (http["port"], http["protocol"]) == (80, "HTTP")
    action = http["default_action"][0]
    assert action["type"] == "redirect", "HTTP only redirects"
    redirect = action["redirect"][0]
    assert (redirect["protocol"], str(redirect["port"]), redirect["status_code"]) == (
        "HTTPS",
        "443",
        "HTTP_301",
    ), f"HTTP must redirect to HTTPS 443 (301), not {redirect}"
    cert = d.root.variables["ssl_certificate_arn"]
    assert "default" not in cert, "the certificate is the operator's: no default"
    assert "SSL_CERTIFICATE_ARN" in cert["description"]
    lb = d.root.resource("aws_lb", "main")
    assert lb["subnets"] == "${aws_subnet.public[*].id}"
    assert lb["drop_invalid_header_fields"] is True


def check_secrets(d: Deployment) -> None:
    local = d.root.locals
    generated, required, optional = (
        local["generated_secrets"],
        local["required_secrets"],
        local["optional_secret_names"],
    )
    # the hot-wallet envelope's KEK decides which secret it needs: scrypt the passphrase,
    # aws-kms none (the envelope names its KMS key; the worker may kms:Decrypt)
    by_kek = local["kek_secret_names"]
    assert by_kek == {"aws-kms": [], "scrypt": ["TON_KEY_PASSPHRASE"]}, by_kek
    assert local["kek_secrets"] == "${local.kek_secret_names[var.hot_wallet_kek]}"
    kek_var = d.root.variables["hot_wallet_kek"]
    assert set(re.findall(r'"([a-z-]+)"', kek_var["validation"][0]["condition"])) == set(by_kek)
    kek_names = [n for kind in sorted(by_kek) for n in by_kek[kind]]
    names = [*generated, *required, *kek_names, *optional]
    assert len(names) == len(set(names)), "a secret listed twice"
    missing, extra = secret_settings() - set(names), set(names) - secret_settings()
    assert not missing, f"secrets the service reads with no Secrets Manager secret: {missing}"
    assert not extra, f"not secrets of the service: {extra}"
    assert "TON_KEY_PASSPHRASE" not in required, "an aws-kms envelope needs no passphrase"
    assert local["secret_names"] == (
        "${concat(local.generated_secrets, local.required_secrets, local.kek_secrets,"
        " local.optional_secret_names)}"
    )
    secret = d.root.resource("aws_secretsmanager_secret", "service")
    assert secret["for_each"] == "${toset(local.secret_names)}"
    assert secret["kms_key_id"] == "${aws_kms_key.main.arn}"
    task_names = local["task_secret_names"]
    for part in (
        "local.generated_secrets",
        "local.required_secrets",
        "local.kek_secrets",
        "var.optional_secrets",
    ):
        assert part in task_names, f"task_secret_names leaves out {part}"
    # the worker gets them all; the api all but the hot-wallet key and its passphrase
    signing = local["signing_secrets"]
    assert sorted(signing) == ["TON_KEY_PASSPHRASE", "TON_MASTER_KEY"], signing
    service_secrets = local["service_secrets"]
    assert set(service_secrets) == {"api", "worker"}
    each = (
        "for name in local.task_secret_names : name => aws_secretsmanager_secret.service[name].arn"
    )
    assert service_secrets["worker"] == f"${{{{{each}}}}}", service_secrets["worker"]
    assert service_secrets["api"] == (
        f"${{{{{each} if !contains(local.signing_secrets, name)}}}}"
    ), f"the api must not receive the hot-wallet key: {service_secrets['api']}"
    # optional_secrets accepts exactly the optional names; extra_environment refuses them all
    optional_var = d.root.variables["optional_secrets"]
    accepted = re.findall(r'"([A-Z_]+)"', optional_var["validation"][0]["condition"])
    assert set(accepted) == set(optional), (accepted, optional)
    refused = re.findall(
        r'"([A-Z_]+)"', d.root.variables["extra_environment"]["validation"][0]["condition"]
    )
    assert set(refused) == set(names), "extra_environment must refuse every secret name"
    # plain environment: only known, non-secret settings
    env = local["service_settings"]
    settings = {n.upper() for n in Settings.model_fields}
    assert not set(env) - settings, f"not settings of the service: {set(env) - settings}"
    leaked = set(env) & set(names)
    assert not leaked, f"secrets in plain environment: {leaked}"
    assert local["service_environment"] == (
        "${merge(var.extra_environment, local.service_settings)}"
    )
    for name in ("api", "worker"):
        call = d.root.modules[name]
        assert call["secrets"] == f'${{local.service_secrets["{name}"]}}', name
        assert call["environment"] == "${local.service_environment}", name
    containers = d.service.resource("aws_ecs_task_definition", "service")["container_definitions"]
    assert (
        "secrets = [for k in sort(keys(var.secrets)) : {name = k, valueFrom = var.secrets[k]}]"
        in (containers)
    ), "ECS secrets with valueFrom"
    assert containers.count("var.secrets") == 2, "var.secrets is used for `secrets` only"
    versions = d.root.resources["aws_secretsmanager_secret_version"]
    assert set(versions) == {"database_url", "redis_url"}, "only generated secrets get values"
    assert versions["database_url"]["secret_string"].endswith("?ssl=require")
    assert versions["redis_url"]["secret_string"].startswith("rediss://")


def check_database(d: Deployment) -> None:
    rds = d.root.resource("aws_db_instance", "main")
    expected = {
        "engine": "postgres",
        "multi_az": True,
        "storage_encrypted": True,
        "kms_key_id": "${aws_kms_key.main.arn}",
        "deletion_protection": True,
        "publicly_accessible": False,
        "skip_final_snapshot": False,
    }
    for key, want in expected.items():
        assert rds.get(key) == want, f"aws_db_instance.main.{key} is {rds.get(key)!r}"
    assert d.root.resolve(rds["backup_retention_period"]) >= 7, "automated backups"
    assert float(d.root.resolve(rds["engine_version"])) >= 14, "PostgreSQL 14+ (guide)"
    params = d.root.resource("aws_db_parameter_group", "main")["parameter"]
    assert {"name": "rds.force_ssl", "value": "1"} in params, "TLS to the database"

    redis = d.root.resource("aws_elasticache_replication_group", "main")
    expected = {
        "at_rest_encryption_enabled": True,
        "transit_encryption_enabled": True,
        "kms_key_id": "${aws_kms_key.main.arn}",
        "auth_token": "${random_password.redis.result}",
        "multi_az_enabled": True,
        "automatic_failover_enabled": True,
    }
    for key, want in expected.items():
        assert redis.get(key) == want, f"redis {key} is {redis.get(key)!r}"
    assert redis["num_cache_clusters"] >= 2
    assert float(d.root.resolve(redis["engine_version"])) >= 6, "Redis 6+ (guide)"
    assert d.root.resource("aws_kms_key", "main")["enable_key_rotation"] is True


def check_alarms(d: Deployment) -> None:
    alarms = d.root.resources["aws_cloudwatch_metric_alarm"]
    by_metric = {a["metric_name"]: a for a in alarms.values()}
    payments = "${var.cloudwatch_namespace}"
    expected: dict[str, tuple[str, str, Callable[[Any], bool]]] = {
        "SuccessRate": (payments, "LessThanThreshold", lambda t: t == GUIDE_SUCCESS_RATE_MIN),
        "PendingTransactions": (payments, "GreaterThanThreshold", lambda t: t == GUIDE_PENDING_MAX),
        "GasPrice": (payments, "GreaterThanThreshold", lambda t: t > 0),
        "HTTPCode_ELB_5XX_Count": ("AWS/ApplicationELB", "GreaterThanThreshold", lambda t: t >= 0),
        "HTTPCode_Target_5XX_Count": (
            "AWS/ApplicationELB",
            "GreaterThanThreshold",
            lambda t: t >= 0,
        ),
        "UnHealthyHostCount": ("AWS/ApplicationELB", "GreaterThanThreshold", lambda t: t == 0),
    }
    for metric, (namespace, operator, threshold_ok) in expected.items():
        assert metric in by_metric, f"no alarm on {metric}"
        alarm = by_metric[metric]
        assert alarm["namespace"] == namespace, metric
        assert alarm["comparison_operator"] == operator, (metric, alarm["comparison_operator"])
        threshold = d.root.resolve(alarm["threshold"])
        assert threshold_ok(threshold), f"{metric}: threshold {threshold}"
        actions = d.root.resolve(alarm["alarm_actions"])
        assert actions == ["${aws_sns_topic.alarms.arn}"], f"{metric} alarms go to {actions}"
    assert d.root.resource("aws_sns_topic", "alarms")["kms_master_key_id"] == (
        "${aws_kms_key.main.arn}"
    )
    # the examples keep the guide's thresholds, and the service alerts on the same ones
    for name, key, want in (
        ("variables-payments.tfvars.example", "alarm_success_rate_min_pct", GUIDE_SUCCESS_RATE_MIN),
        ("variables-payments.tfvars.example", "alarm_pending_max", GUIDE_PENDING_MAX),
    ):
        assert d.tfvars[name].get(key, want) == want, f"{name} changes {key}"
    assert Settings.model_fields["alert_success_rate_min_pct"].default == GUIDE_SUCCESS_RATE_MIN
    assert Settings.model_fields["alert_pending_max"].default == GUIDE_PENDING_MAX
    env = d.root.locals["service_settings"]
    assert env["ALERT_SUCCESS_RATE_MIN_PCT"] == "${tostring(var.alarm_success_rate_min_pct)}"
    assert env["ALERT_PENDING_MAX"] == "${tostring(var.alarm_pending_max)}"


def check_dashboard(d: Deployment) -> None:
    namespace = d.root.variables["cloudwatch_namespace"]["default"]
    published = Settings.model_fields["cloudwatch_namespace"].default
    assert namespace == published == "Deligate/Payments", (
        f"namespace {namespace}, the service publishes in {published}"
    )
    assert d.root.locals["service_settings"]["CLOUDWATCH_NAMESPACE"] == (
        "${var.cloudwatch_namespace}"
    )
    metrics = [
        m for w in d.root.locals["payment_metric_widgets"] for m in w["properties"]["metrics"]
    ]
    for m in metrics:
        assert m[0] == "${var.cloudwatch_namespace}", m
        assert len(m) == 2, f"{m}: the service publishes no dimensions"
    names = [m[1] for m in metrics]
    published_names = sorted(published_metric_names())
    assert sorted(names) == published_names, f"dashboard {names}, published {published_names}"
    body = d.root.resource("aws_cloudwatch_dashboard", "payments")["dashboard_body"]
    assert "local.payment_metric_widgets" in body


def _references(mod: Module, kind: str) -> set[str]:
    code = "\n".join(line for line in mod.text.splitlines() if not line.lstrip().startswith("#"))
    return set(re.findall(rf"\b{kind}\.([A-Za-z_][\w-]*)", code))


def check_variables(d: Deployment) -> None:
    for mod in (d.root, d.service):
        used, declared = _references(mod, "var"), set(mod.variables)
        assert not used - declared, f"{mod.path}: undeclared variables {used - declared}"
        assert not declared - used, f"{mod.path}: unused variables {declared - used}"
        for name, var in mod.variables.items():
            assert var.get("description", "").strip(), f"variable {name} has no description"
            assert var.get("type"), f"variable {name} has no type"
        used_locals = _references(mod, "local")
        assert not used_locals - set(mod.locals), (
            f"undeclared locals {used_locals - set(mod.locals)}"
        )
    in_examples = {key for tfvars in d.tfvars.values() for key in tfvars}
    unknown = in_examples - set(d.root.variables)
    assert not unknown, f"tfvars examples set undeclared variables {unknown}"
    for name, var in d.root.variables.items():
        assert "default" in var or name in in_examples, f"{name}: no default, not in the examples"
    # every module call gives the module's required variables and only known ones
    meta = {"source", "depends_on", "count", "for_each", "providers"}
    for name, call in d.root.modules.items():
        given = set(call) - meta
        required = {n for n, v in d.service.variables.items() if "default" not in v}
        assert not required - given, f"module {name} misses {required - given}"
        assert not given - set(d.service.variables), (
            f"module {name}: unknown {given - set(d.service.variables)}"
        )


def check_iam(d: Deployment) -> None:
    docs = d.root.data["aws_iam_policy_document"]
    task = statements(docs["task"])
    for kind in ("execution", "task"):
        # one role (and policy) per service: each covers that service's secrets only
        for block in (
            docs[kind],
            d.root.resource("aws_iam_role", kind),
            d.root.resource("aws_iam_role_policy", kind),
        ):
            assert block["for_each"] == "${local.service_secrets}", f"{kind}: one per service"
    metrics = [s for s in task if "cloudwatch:PutMetricData" in s["actions"]]
    assert len(metrics) == 1
    assert metrics[0]["condition"] == [
        {
            "test": "StringEquals",
            "variable": "cloudwatch:namespace",
            "values": ["${var.cloudwatch_namespace}"],
        }
    ], "the task may publish only in its namespace"
    for doc_name in ("task", "execution"):
        for s in statements(docs[doc_name]):
            for action in s["actions"]:
                assert "*" not in action, f"{doc_name}: wildcard action {action}"
            if s["resources"] == ["*"]:
                assert s["actions"] in (
                    ["cloudwatch:PutMetricData"],
                    ["ecr:GetAuthorizationToken"],
                ), f"{doc_name}: {s['actions']} on every resource"
            if "secretsmanager:GetSecretValue" in s["actions"]:
                assert s["resources"] == "${values(each.value)}", f"{doc_name} reads other secrets"
            if "kms:Decrypt" in s["actions"]:
                assert s["resources"] == ["${aws_kms_key.main.arn}"]
                assert s["condition"][0]["variable"] == "kms:ViaService"
    # the worker alone may unwrap the hot wallet's data key: kms:Decrypt on its own key, with
    # tonrail's encryption context; nothing may kms:Encrypt with it (the operator does)
    wallet = statements(docs["worker_wallet_key"])
    assert [s["actions"] for s in wallet] == [["kms:Decrypt"]], wallet
    assert wallet[0]["resources"] == ["${aws_kms_key.hot_wallet.arn}"], wallet
    assert wallet[0]["condition"] == [
        {
            "test": "StringEquals",
            "variable": "kms:EncryptionContext:tonrail:purpose",
            "values": [PURPOSE],
        }
    ], "the worker may decrypt only tonrail's wallet envelopes"
    grant = d.root.resource("aws_iam_role_policy", "worker_wallet_key")
    assert grant["role"] == '${aws_iam_role.task["worker"].id}', "only the worker's task role"
    assert grant["policy"] == "${data.aws_iam_policy_document.worker_wallet_key.json}"
    for name, doc in docs.items():
        if name.endswith("_assume") or name in ("kms", "hot_wallet_kms"):
            continue  # trust policies; key policies (the account's root administers the key)
        for s in statements(doc):
            if "${aws_kms_key.hot_wallet.arn}" in s.get("resources", []):
                assert name == "worker_wallet_key", f"{name} grants the hot-wallet key"
    assert "hot_wallet_kms_key_arn" in d.root.outputs, "the operator needs the key's ARN"
    # the execution role may write exactly the log groups the module creates
    log_arns = d.root.locals["service_log_group_arns"]
    assert "for svc in keys(local.service_secrets)" in log_arns, log_arns
    assert "log-group:/ecs/${local.prefix}-${svc}:*" in log_arns, log_arns
    assert d.service.resource("aws_cloudwatch_log_group", "service")["name"] == "/ecs/${var.name}"
    for svc in ("api", "worker"):
        assert d.root.modules[svc]["name"] == f"${{local.prefix}}-{svc}", "log group names"
    logs = [s for s in statements(docs["execution"]) if "logs:PutLogEvents" in s["actions"]]
    assert logs[0]["resources"] == ["${local.service_log_group_arns[each.key]}"], logs
    for kind in ("execution", "task"):
        policy = d.root.resource("aws_iam_role_policy", kind)
        assert policy["role"] == f"${{aws_iam_role.{kind}[each.key].id}}", policy
        assert policy["policy"] == f"${{data.aws_iam_policy_document.{kind}[each.key].json}}"


def check_network(d: Deployment) -> None:
    subnets = d.root.resources["aws_subnet"]
    assert set(subnets) == {"public", "private"}
    for tier, subnet in subnets.items():
        assert subnet["count"] == 2, f"{tier}: one subnet per availability zone"
        assert subnet["availability_zone"] == "${var.availability_zones[count.index]}", tier
        assert not subnet.get("map_public_ip_on_launch", False), f"{tier} hands out public IPs"
    zones = d.root.variables["availability_zones"]["validation"][0]["condition"]
    assert "length(var.availability_zones) == 2" in zones, "exactly two zones"
    private = d.root.resources["aws_route_table"]["private"]
    assert "nat_gateway_id" in private["route"][0], "private subnets leave through NAT"
    assert "gateway_id" not in private["route"][0], "no internet gateway route for private"
    public = d.root.resources["aws_route_table"]["public"]
    assert public["route"][0]["gateway_id"] == "${aws_internet_gateway.main.id}"
    for kind, name in (
        ("aws_db_subnet_group", "main"),
        ("aws_elasticache_subnet_group", "main"),
    ):
        assert d.root.resource(kind, name)["subnet_ids"] == "${aws_subnet.private[*].id}", kind
    assert d.root.resource("aws_db_instance", "main")["publicly_accessible"] is False
    assert d.root.resource("aws_flow_log", "main")["traffic_type"] == "ALL"


def check_ecr(d: Deployment) -> None:
    ecr = d.root.resource("aws_ecr_repository", "tonrail")
    assert ecr["image_tag_mutability"] == "IMMUTABLE", "image tags must be immutable"
    assert ecr["image_scanning_configuration"][0]["scan_on_push"] is True, "scan on push"
    assert ecr["encryption_configuration"][0]["kms_key"] == "${aws_kms_key.main.arn}"


def check_logs(d: Deployment) -> None:
    groups = [
        *d.root.resources["aws_cloudwatch_log_group"].values(),
        *d.service.resources["aws_cloudwatch_log_group"].values(),
    ]
    assert len(groups) >= 3
    for group in groups:
        assert group.get("retention_in_days"), f"{group['name']} keeps logs forever"
        assert group.get("kms_key_id"), f"{group['name']} is not encrypted with the key"
    assert d.root.variables["log_retention_days"]["default"] >= 365


def check_outputs(d: Deployment) -> None:
    for name in ("alb_dns_name", "dashboard_url"):
        assert name in d.root.outputs, f"no output {name}"
    assert d.root.outputs["alb_dns_name"]["value"] == "${aws_lb.main.dns_name}"
    assert (
        "aws_cloudwatch_dashboard.payments.dashboard_name"
        in d.root.outputs["dashboard_url"]["value"]
    )
    for name, output in d.root.outputs.items():
        assert output.get("description"), f"output {name} has no description"


def check_backend(d: Deployment) -> None:
    blocks = d.root.terraform
    assert any(b.get("backend") == [{"s3": {}}] for b in blocks), "partial S3 backend"
    versions = [b["required_version"] for b in blocks if "required_version" in b]
    assert versions == [">= 1.5.0"], versions
    for key in ("bucket", "key", "region", "dynamodb_table"):
        assert d.backend_example.get(key), f"backend.hcl.example lacks {key}"
    assert d.backend_example["encrypt"] is True


CHECKS = [
    check_autoscaling,
    check_services,
    check_https,
    check_secrets,
    check_database,
    check_alarms,
    check_dashboard,
    check_variables,
    check_iam,
    check_network,
    check_ecr,
    check_logs,
    check_outputs,
    check_backend,
]


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return load()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_terraform(deployment: Deployment, check: Callable[[Deployment], None]) -> None:
    check(deployment)


def test_every_tf_file_is_read() -> None:
    files = sorted(TF_DIR.rglob("*.tf"))
    read = {p.name for p in TF_DIR.glob("*.tf")} | {
        f"{SERVICE_MODULE}/{p.name}" for p in (TF_DIR / SERVICE_MODULE).glob("*.tf")
    }
    assert {str(p.relative_to(TF_DIR)) for p in files} == read, "a .tf file the tests skip"
    assert len(files) >= 10


# --- each check can fail: one edit to a copy, and the check catches it --------------------

MUTATIONS: list[tuple[str, str, str, str, Callable[[Deployment], None], str]] = [
    (
        "cpu 75",
        "main.tf",
        "cpu_target_pct    = 70",
        "cpu_target_pct    = 75",
        check_autoscaling,
        r"cpu_target_pct is 75",
    ),
    (
        "memory 85",
        "main.tf",
        "memory_target_pct = 80",
        "memory_target_pct = 85",
        check_autoscaling,
        r"memory_target_pct is 85",
    ),
    (
        "pending 60",
        "main.tf",
        "pending_scale_out = 50",
        "pending_scale_out = 60",
        check_autoscaling,
        r"pending scale-out",
    ),
    (
        "max 12",
        "main.tf",
        "max_tasks         = 10",
        "max_tasks         = 12",
        check_autoscaling,
        r"max_tasks is 12",
    ),
    (
        "min 1",
        "main.tf",
        "min_tasks         = 2",
        "min_tasks         = 1",
        check_autoscaling,
        r"min_tasks is 1",
    ),
    (
        "scale-in step",
        f"{SERVICE_MODULE}/main.tf",
        "scaling_adjustment          = 1",
        "scaling_adjustment          = -1",
        check_autoscaling,
        r"only scales out",
    ),
    (
        "worker serves",
        "main.tf",
        'command            = ["worker"]',
        'command            = ["serve"]',
        check_services,
        r"worker runs",
    ),
    (
        "fixed certificate",
        "alb.tf",
        "certificate_arn   = var.ssl_certificate_arn",
        'certificate_arn   = "arn:aws:acm:us-east-1:123456789012:certificate/x"',
        check_https,
        r"not var.ssl_certificate_arn",
    ),
    (
        "no redirect",
        "alb.tf",
        'protocol    = "HTTPS"',
        'protocol    = "HTTP"',
        check_https,
        r"must redirect to HTTPS",
    ),
    (
        "secret not in Secrets Manager",
        "secrets.tf",
        '"SMTP_PASSWORD", "METRICS_TOKEN",',
        '"SMTP_PASSWORD",',
        check_secrets,
        r"no Secrets Manager secret: {'METRICS_TOKEN'}",
    ),
    (
        "secret in plain environment",
        "main.tf",
        'LOG_JSON                   = "true"',
        'LOG_JSON                   = "true"\n    TON_API_KEY = "key"',
        check_secrets,
        r"secrets in plain environment: {'TON_API_KEY'}",
    ),
    (
        "secret as a value",
        f"{SERVICE_MODULE}/main.tf",
        "valueFrom = var.secrets[k]",
        "value = var.secrets[k]",
        check_secrets,
        r"ECS secrets with valueFrom",
    ),
    (
        "single AZ",
        "database.tf",
        "multi_az               = true",
        "multi_az               = false",
        check_database,
        r"multi_az is False",
    ),
    (
        "unencrypted RDS",
        "database.tf",
        "storage_encrypted     = true",
        "storage_encrypted     = false",
        check_database,
        r"storage_encrypted is False",
    ),
    (
        "no deletion protection",
        "database.tf",
        "deletion_protection       = true",
        "deletion_protection       = false",
        check_database,
        r"deletion_protection is False",
    ),
    (
        "Redis in clear",
        "database.tf",
        "transit_encryption_enabled = true",
        "transit_encryption_enabled = false",
        check_database,
        r"transit_encryption_enabled is False",
    ),
    (
        "Redis unencrypted at rest",
        "database.tf",
        "at_rest_encryption_enabled = true",
        "at_rest_encryption_enabled = false",
        check_database,
        r"at_rest_encryption_enabled is False",
    ),
    (
        "success rate 90",
        "variables.tf",
        "default     = 95",
        "default     = 90",
        check_alarms,
        r"SuccessRate: threshold 90",
    ),
    (
        "success alarm inverted",
        "monitoring.tf",
        'comparison_operator = "LessThanThreshold"',
        'comparison_operator = "GreaterThanThreshold"',
        check_alarms,
        r"GreaterThanThreshold",
    ),
    (
        "alarms to nowhere",
        "monitoring.tf",
        "alarm_actions = [aws_sns_topic.alarms.arn]",
        "alarm_actions = []",
        check_alarms,
        r"alarms go to \[\]",
    ),
    (
        "no 5xx alarm",
        "monitoring.tf",
        'metric_name         = "HTTPCode_ELB_5XX_Count"',
        'metric_name         = "HTTPCode_ELB_4XX_Count"',
        check_alarms,
        r"no alarm on HTTPCode_ELB_5XX_Count",
    ),
    (
        "metric renamed",
        "monitoring.tf",
        '"GasPrice"]]',
        '"GasPriceNanoton"]]',
        check_dashboard,
        r"GasPriceNanoton",
    ),
    (
        "metric with a dimension",
        "monitoring.tf",
        '[[var.cloudwatch_namespace, "TotalVolume"]]',
        '[[var.cloudwatch_namespace, "TotalVolume", "Asset", "USDT"]]',
        check_dashboard,
        r"publishes no dimensions",
    ),
    (
        "other namespace",
        "variables.tf",
        'default     = "Deligate/Payments"',
        'default     = "Tonrail/Payments"',
        check_dashboard,
        r"namespace Tonrail/Payments",
    ),
    (
        "undocumented variable",
        "variables.tf",
        'description = "Days of automated RDS backups (point-in-time recovery window)."',
        'description = ""',
        check_variables,
        r"db_backup_retention_days has no description",
    ),
    (
        "undeclared variable",
        "main.tf",
        'LOG_JSON                   = "true"',
        "LOG_JSON                   = var.log_json",
        check_variables,
        r"undeclared variables {'log_json'}",
    ),
    (
        "required variable missing from the examples",
        "variables.tfvars.example",
        'image_tag = "0123456789abcdef0123456789abcdef01234567"',
        "",
        check_variables,
        r"image_tag: no default",
    ),
    (
        "metrics in any namespace",
        "iam.tf",
        'variable = "cloudwatch:namespace"',
        'variable = "aws:RequestedRegion"',
        check_iam,
        r"only in its namespace",
    ),
    (
        "task reads every secret",
        "iam.tf",
        'sid       = "ReadOnlyItsSecrets"\n    actions   = ["secretsmanager:GetSecretValue"]\n'
        "    resources = values(each.value)",
        'sid       = "ReadOnlyItsSecrets"\n    actions   = ["secretsmanager:GetSecretValue"]\n'
        '    resources = ["*"]',
        check_iam,
        r"on every resource",
    ),
    (
        "the worker may decrypt any envelope with the wallet key",
        "iam.tf",
        'variable = "kms:EncryptionContext:tonrail:purpose"',
        'variable = "kms:CallerAccount"',
        check_iam,
        r"only tonrail's wallet envelopes",
    ),
    (
        "the api may unwrap the wallet key",
        "iam.tf",
        'role   = aws_iam_role.task["worker"].id\n'
        "  policy = data.aws_iam_policy_document.worker_wallet_key",
        'role   = aws_iam_role.task["api"].id\n'
        "  policy = data.aws_iam_policy_document.worker_wallet_key",
        check_iam,
        r"only the worker's task role",
    ),
    (
        "terraform moves the services",
        f"{SERVICE_MODULE}/main.tf",
        "ignore_changes = [desired_count, task_definition]",
        "ignore_changes = [desired_count]",
        check_services,
        r"desired_count",
    ),
    (
        "data where the image has no volume",
        "main.tf",
        'DATA_DIR                   = "/data"',
        'DATA_DIR                   = "/tmp/tonrail"',
        check_services,
        r"not a VOLUME of the image",
    ),
    (
        "passphrase required with an aws-kms envelope",
        "secrets.tf",
        '"aws-kms" = []',
        '"aws-kms" = ["TON_KEY_PASSPHRASE"]',
        check_secrets,
        r"aws-kms",
    ),
    (
        "api holds the hot-wallet key",
        "secrets.tf",
        " if !contains(local.signing_secrets, name)",
        "",
        check_secrets,
        r"must not receive the hot-wallet key",
    ),
    (
        "one role for both services",
        "main.tf",
        'execution_role_arn = aws_iam_role.execution["api"].arn',
        'execution_role_arn = aws_iam_role.execution["worker"].arn',
        check_services,
        r"api must run with its own roles",
    ),
    (
        "database in a public subnet",
        "database.tf",
        'subnet_ids = aws_subnet.private[*].id\n}\n\nresource "aws_db_parameter_group"',
        'subnet_ids = aws_subnet.public[*].id\n}\n\nresource "aws_db_parameter_group"',
        check_network,
        r"aws_db_subnet_group",
    ),
    (
        "private subnets routed to the internet gateway",
        "network.tf",
        "nat_gateway_id = aws_nat_gateway.main[var.single_nat_gateway ? 0 : count.index].id",
        "gateway_id = aws_internet_gateway.main.id",
        check_network,
        r"through NAT",
    ),
    ("mutable tags", "ecr.tf", '"IMMUTABLE"', '"MUTABLE"', check_ecr, r"immutable"),
    (
        "logs kept forever",
        f"{SERVICE_MODULE}/main.tf",
        "retention_in_days = var.log_retention_days",
        "",
        check_logs,
        r"keeps logs forever",
    ),
    (
        "no ALB output",
        "outputs.tf",
        'output "alb_dns_name"',
        'output "lb_dns"',
        check_outputs,
        r"no output alb_dns_name",
    ),
    (
        "local state",
        "backend.tf",
        'backend "s3" {}',
        'backend "local" {}',
        check_backend,
        r"partial S3 backend",
    ),
]


@pytest.mark.parametrize(
    ("file", "old", "new", "check", "match"),
    [pytest.param(*m[1:], id=m[0]) for m in MUTATIONS],
)
def test_check_catches(
    tmp_path: Path,
    file: str,
    old: str,
    new: str,
    check: Callable[[Deployment], None],
    match: str,
) -> None:
    copy = tmp_path / "terraform"
    shutil.copytree(TF_DIR, copy, ignore=shutil.ignore_patterns(".terraform*"))
    target = copy / file
    text = target.read_text()
    assert text.count(old) == 1, f"the mutation must hit exactly one place in {file}"
    target.write_text(text.replace(old, new))
    with pytest.raises(AssertionError, match=match):
        check(load(copy))


def test_every_check_has_a_mutation() -> None:
    assert {m[4] for m in MUTATIONS} == set(CHECKS)


# --- the deploy scripts and this code agree ----------------------------------------------

SCRIPTS = REPO_ROOT / "scripts"


def scripts_text() -> str:
    files = [*sorted(SCRIPTS.glob("*.sh")), *sorted((SCRIPTS / "lib").glob("*.sh"))]
    return "\n".join(p.read_text() for p in files)


def test_the_outputs_the_deploy_script_reads_exist(deployment: Deployment) -> None:
    text = scripts_text().replace("\\\n", " ")
    read = set(re.findall(r"terraform\b[^\n]*?\boutput(?: -raw| -json)?\s+([a-z_]+)", text))
    assert "api_task_definition_arn" in read, "the deploy script reads the outputs it deploys"
    assert not read - set(deployment.root.outputs), (
        f"no such output: {read - set(deployment.root.outputs)}"
    )


def test_the_deploy_script_names_what_terraform_creates(deployment: Deployment) -> None:
    text = scripts_text()
    variables = deployment.root.variables
    prefix = f"{variables['name']['default']}-{variables['environment']['default']}"
    stack = re.search(r"^STACK=\$\{STACK:-([^}]+)\}", text, re.MULTILINE)
    assert stack is not None and stack.group(1) == prefix, "the scripts' STACK is the prefix"
    assert deployment.root.locals["prefix"] == "${var.name}-${var.environment}"
    assert re.search(r"SECRETS_PREFIX=\$\{SECRETS_PREFIX:-\$STACK/\}", text), "secret names"
    assert deployment.root.resource("aws_secretsmanager_secret", "service")["name"] == (
        "${local.prefix}/${each.key}"
    )
    required = re.search(r'^REQUIRED_SECRETS_DEFAULT="([^"]*)"', text, re.MULTILINE)
    assert required is not None
    # the operator fills these; Terraform fills the generated ones itself
    # (with the default key kind; the script drops the passphrase for hot_wallet_kek aws-kms)
    kek = deployment.root.variables["hot_wallet_kek"]["default"]
    by_kind = deployment.root.locals["kek_secret_names"][kek]
    assert sorted(required.group(1).split()) == sorted(
        [*deployment.root.locals["required_secrets"], *by_kind]
    )
    assert '"aws-kms"' in text and "TON_KEY_PASSPHRASE/}" in text


def test_the_one_off_migration_runs_tonrail_migrate(ecs: Ecs) -> None:
    """`tonrail deploy migrate` overrides the command of the api's container (on moto's ECS):
    with the image's ENTRYPOINT that must make `tonrail migrate`."""
    from typer.testing import CliRunner

    from tonrail.cli import app

    result = CliRunner().invoke(
        app,
        ["deploy", "migrate", "--cluster", ecs.cluster, "--task-definition", ecs.api_td,
         "--like-service", "tonrail-api", "--timeout", "5", "--poll", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    arns = ecs.client.list_tasks(cluster=ecs.cluster, startedBy="tonrail-deploy")["taskArns"]
    [task] = ecs.client.describe_tasks(cluster=ecs.cluster, tasks=arns)["tasks"]
    [override] = task["overrides"]["containerOverrides"]
    assert image_entrypoint() + override["command"] == ["tonrail", "migrate"], override


@pytest.mark.parametrize("given", [["tonrail", "ledger", "check"], ["ledger", "check"]])
def test_an_operators_one_off_command_runs_as_typed(ecs: Ecs, given: list[str]) -> None:
    from typer.testing import CliRunner

    from tonrail.cli import app

    result = CliRunner().invoke(
        app,
        ["deploy", "run", "--cluster", ecs.cluster, "--like-service", "tonrail-worker",
         "--poll", "0", "--", *given],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [task] = ecs.client.describe_tasks(cluster=ecs.cluster, tasks=[result.stdout.split()[1]])[
        "tasks"
    ]
    [override] = task["overrides"]["containerOverrides"]
    assert image_entrypoint() + override["command"] == ["tonrail", "ledger", "check"], override
