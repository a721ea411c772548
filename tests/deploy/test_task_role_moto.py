"""The IAM grants deploy/terraform gives the ECS task roles, enforced by moto's IAM-like access
control (moto.core.set_initial_no_auth_action_count / enable_iam_authentication): the worker's
role as Terraform writes it starts tonrail (reads its secrets, unwraps the hot wallet key); a
role without kms:Decrypt (the api's, or a worker's policy with the grant removed) or without
secretsmanager:GetSecretValue is refused at start with an error naming the permission, and
nothing is signed or sent.

What moto 5 checks, and what it does not (pinned by the last test, so that a moto that starts
checking more makes this file say so):
- the Action of each statement and its Effect, for the caller's role (STS-assumed, as ECS does);
- not the Resource for KMS and Secrets Manager: their handlers ask IAM about resource "*", so a
  statement scoped to a key or secret ARN (as every Terraform statement is) never matches, and
  one scoped to another key matches no less than one scoped to the right key;
- not the Condition: moto passes no request context to it (no kms:EncryptionContext:*, no
  kms:ViaService), so a condition naming another wallet is not refused.
So the role here gets Terraform's statements as moto can evaluate them: those whose Resource
covers an ARN the start uses (matched here, with IAM's wildcards), each with Resource "*" and no
Condition; moto then checks the actions. The conditions (kms:EncryptionContext:tonrail:purpose
on the wallet grant, kms:ViaService on the main key) are proven only statically, by check_iam
in test_terraform.py: no test here shows a condition for another wallet refused.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import enable_iam_authentication, set_initial_no_auth_action_count
from typer.testing import CliRunner

from tests.deploy.test_terraform import TF_DIR, load, statements
from tests.rails.ton.test_kms_kek import _Counting
from tonrail.aws_secrets import SecretsError
from tonrail.cli import app
from tonrail.db import Database
from tonrail.payments.service import PaymentService
from tonrail.processing.ton_runtime import open_ton_rail
from tonrail.rails.ton.keys import HotWalletSigner, WalletKeyError, load_signer, seal
from tonrail.rails.ton.kms_kek import KmsKek, kms_client
from tonrail.settings import Settings, get_settings

REGION = "eu-central-1"
SEED = bytes(range(32))
JWT = "jwt-from-secrets-manager-" + "q" * 24
TON_API_KEY = "toncenter-key-from-secrets-manager-7f3a"


@dataclass
class Aws:
    wallet_key: str  # ARN of the hot-wallet KMS key (aws_kms_key.hot_wallet)
    main_key: str  # ARN of the deployment's main key (aws_kms_key.main)
    envelope: str  # the hot wallet key, sealed under wallet_key
    secrets: dict[str, str]  # setting -> secret ARN (the worker's, as secrets.tf makes them)

    @property
    def touched(self) -> list[str]:
        """What the worker's start uses: the hot-wallet key and its secrets."""
        return [self.wallet_key, *self.secrets.values()]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Aws]:
    for name in ("JWT_SECRET", "TON_API_KEY", "TONRAIL_SECRETS_ARN", "TON_MASTER_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():  # no access control yet: this is the deployment Terraform makes
        kms = boto3.client("kms", region_name=REGION)
        sm = boto3.client("secretsmanager", region_name=REGION)
        wallet_key = kms.create_key(Description="hot wallet KEK")["KeyMetadata"]["Arn"]
        main_key = kms.create_key(Description="main")["KeyMetadata"]["Arn"]
        kek = KmsKek(kms_client(Settings(_env_file=None, aws_region=REGION)), wallet_key)  # type: ignore[call-arg]
        secrets = {
            "JWT_SECRET": sm.create_secret(Name="tonrail/JWT_SECRET", SecretString=JWT)["ARN"],
            "TON_API_KEY": sm.create_secret(Name="tonrail/TON_API_KEY", SecretString=TON_API_KEY)[
                "ARN"
            ],
        }
        yield Aws(wallet_key, main_key, seal(SEED, kek), secrets)


def _render(value: Any, refs: dict[str, Any]) -> Any:
    """A Terraform value with its `${...}` references replaced; an unknown one fails the test
    (nothing is silently widened)."""
    if isinstance(value, list):
        return [_render(v, refs) for v in value]
    if not isinstance(value, str):
        return value
    whole = re.fullmatch(r"\$\{([^}]+)\}", value)
    if whole:
        assert whole.group(1) in refs, f"no value for ${{{whole.group(1)}}}"
        return refs[whole.group(1)]

    def one(m: re.Match[str]) -> str:
        assert m.group(1) in refs, f"no value for ${{{m.group(1)}}}"
        return str(refs[m.group(1)])

    return re.sub(r"\$\{([^}]+)\}", one, value)


def terraform_policy(service: str, aws: Aws) -> list[dict[str, Any]]:
    """The IAM statements deploy/terraform gives `service`'s task role, rendered with this
    deployment's ARNs: aws_iam_policy_document.task (for_each service) and, for the worker,
    aws_iam_policy_document.worker_wallet_key (attached to aws_iam_role.task["worker"])."""
    d = load(TF_DIR)
    docs = d.root.data["aws_iam_policy_document"]
    refs = {
        "values(each.value)": list(aws.secrets.values()) if service == "worker" else [],
        "aws_kms_key.main.arn": aws.main_key,
        "aws_kms_key.hot_wallet.arn": aws.wallet_key,
        "var.aws_region": REGION,
        "var.cloudwatch_namespace": d.root.resolve("${var.cloudwatch_namespace}"),
    }
    found = list(statements(docs["task"]))
    for name, policy in d.root.resources["aws_iam_role_policy"].items():
        if policy["role"] == f'${{aws_iam_role.task["{service}"].id}}':
            doc = re.fullmatch(
                r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", policy["policy"]
            )
            assert doc, f"aws_iam_role_policy.{name}: {policy['policy']}"
            found += statements(docs[doc.group(1)])
    rendered = []
    for s in found:
        statement: dict[str, Any] = {
            "Sid": s.get("sid", ""),
            "Effect": s.get("effect", "Allow"),
            "Action": s["actions"],
            "Resource": _render(s["resources"], refs),
        }
        for c in s.get("condition", []):
            cond = statement.setdefault("Condition", {}).setdefault(c["test"], {})
            cond[_render(c["variable"], refs)] = _render(c["values"], refs)
        rendered.append(statement)
    return rendered


def as_moto_checks_it(policy: list[dict[str, Any]], touched: list[str]) -> list[dict[str, Any]]:
    """The statements that apply to the ARNs tonrail's start touches (`touched`), with Resource
    "*" and no Condition: moto asks IAM about KMS and Secrets Manager actions on resource "*"
    and passes no condition context (module docstring; pinned by the last test), so the
    resource match is made here, IAM's way (`*` and `?` wildcards), and moto matches actions."""
    out = []
    for s in policy:
        patterns = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
        if any(fnmatch.fnmatchcase(arn, p) for p in patterns for arn in touched):
            out.append(
                {"Sid": s["Sid"], "Effect": s["Effect"], "Action": s["Action"], "Resource": "*"}
            )
    return out


def assume(monkeypatch: pytest.MonkeyPatch, name: str, policy: list[dict[str, Any]]) -> None:
    """A role with `policy` inline (as aws_iam_role_policy makes it), assumed through STS as
    ECS assumes a task role; its credentials become the process's (boto3's default chain)."""
    iam, sts = boto3.client("iam", region_name=REGION), boto3.client("sts", region_name=REGION)
    account = sts.get_caller_identity()["Account"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=name,
        PolicyName="task",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": policy}),
    )
    creds = sts.assume_role(RoleArn=arn, RoleSessionName="ecs-task")["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", creds["SessionToken"])
    # boto3's default session keeps the credentials it resolved first: a new one reads these
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def without(policy: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    out = []
    for s in policy:
        kept = [a for a in s["Action"] if a != action]
        if kept:
            out.append({**s, "Action": kept})
    assert sum(len(s["Action"]) for s in out) < sum(len(s["Action"]) for s in policy), action
    return out


def configure_secrets(monkeypatch: pytest.MonkeyPatch, aws: Aws) -> None:
    for name, arn in aws.secrets.items():
        monkeypatch.setenv(f"{name}_SECRET_ARN", arn)


def test_the_terraform_policy_is_what_the_worker_needs(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    policy = terraform_policy("worker", aws)
    wallet = [s for s in policy if s["Resource"] == [aws.wallet_key]]
    assert [s["Action"] for s in wallet] == [["kms:Decrypt"]], "only kms:Decrypt on the key"
    assert wallet[0]["Condition"] == {
        "StringEquals": {"kms:EncryptionContext:tonrail:purpose": ["ton-hot-wallet"]}
    }
    assume(monkeypatch, "tonrail-worker-task", as_moto_checks_it(policy, aws.touched))
    configure_secrets(monkeypatch, aws)

    @set_initial_no_auth_action_count(0)  # every call from here is checked against the role
    def start() -> tuple[Settings, HotWalletSigner]:
        s = Settings(_env_file=None, data_dir=tmp_path, ton_master_key=aws.envelope)  # type: ignore[call-arg]
        return s, load_signer(s)

    settings, signer = start()
    assert settings.jwt_secret.get_secret_value() == JWT
    assert settings.ton_api_key.get_secret_value() == TON_API_KEY
    assert signer.public_key == HotWalletSigner(SEED).public_key

    # The policy is not broader than the start needs: kms:Encrypt (init-wallet, rewrap) is the
    # operator's, and is refused to the worker's role, naming the permission.
    @set_initial_no_auth_action_count(0)
    def rewrap() -> None:
        KmsKek(kms_client(settings), aws.wallet_key).wrap(b"\x01" * 32, "00" * 32)

    with pytest.raises(WalletKeyError) as err:
        rewrap()
    assert err.value.code == "wallet_key_kms_denied"
    assert "kms:Encrypt" in err.value.message


@pytest.mark.parametrize(
    "role", ["worker without kms:Decrypt", "worker, wallet grant on another key", "api"]
)
async def test_a_role_without_kms_decrypt_starts_no_ton_rail_and_sends_nothing(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db: Database, role: str
) -> None:
    """`tonrail worker` opens the TON rail with open_ton_rail (cli.py): refused, its TON loops
    stay idle with the message; no request leaves for toncenter, so nothing is signed or sent.
    The api's role (no wallet grant in Terraform) is refused the same way."""
    if role == "api":
        api = terraform_policy("api", aws)
        assert not any(aws.wallet_key in s["Resource"] for s in api), "api: wallet key grant"
        policy = as_moto_checks_it(api, aws.touched)
    elif role == "worker, wallet grant on another key":
        policy = [
            {**s, "Resource": [aws.main_key]} if s["Resource"] == [aws.wallet_key] else s
            for s in terraform_policy("worker", aws)
        ]
        policy = as_moto_checks_it(policy, aws.touched)
    else:
        worker = as_moto_checks_it(terraform_policy("worker", aws), aws.touched)
        policy = without(worker, "kms:Decrypt")
    assume(monkeypatch, "tonrail-task", policy)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    _Counting.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    s = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        aws_region=REGION,
        ton_master_key=aws.envelope,
        ton_network="testnet",
        ton_api_url=f"{url}/api/v2",
        ton_api_v3_url=f"{url}/api/v3",
    )
    try:
        with enable_iam_authentication(), pytest.raises(WalletKeyError) as err:
            await open_ton_rail(s, db, PaymentService(db, s), "w-iam")
    finally:
        server.shutdown()
    assert err.value.code == "wallet_key_kms_denied"
    assert "kms:Decrypt" in err.value.message and aws.wallet_key in err.value.message
    assert SEED.hex() not in err.value.message
    assert _Counting.seen == [], "a request left for toncenter"


def test_a_role_without_get_secret_value_refuses_to_start_and_logs_no_secret(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    worker = as_moto_checks_it(terraform_policy("worker", aws), aws.touched)
    policy = without(worker, "secretsmanager:GetSecretValue")
    assume(monkeypatch, "tonrail-worker-task", policy)
    configure_secrets(monkeypatch, aws)
    caplog.set_level(logging.DEBUG)

    @set_initial_no_auth_action_count(0)
    def start_settings() -> None:
        Settings(_env_file=None)  # type: ignore[call-arg]

    with pytest.raises(SecretsError) as err:
        start_settings()
    message = str(err.value)
    assert "_SECRET_ARN" in message and "secretsmanager:GetSecretValue" in message
    assert any(arn in message for arn in aws.secrets.values())

    # `tonrail worker` and `tonrail serve` read their settings first: both stop there.
    @set_initial_no_auth_action_count(0)
    def run(command: str) -> Any:
        return CliRunner().invoke(app, [command])

    for command in ("worker", "serve"):
        get_settings.cache_clear()
        try:
            result = run(command)
        finally:
            get_settings.cache_clear()
        assert result.exit_code != 0
        assert isinstance(result.exception, SecretsError), result.output
        assert "secretsmanager:GetSecretValue" in str(result.exception)
        seen = result.output + str(result.exception) + caplog.text
        assert JWT not in seen and TON_API_KEY not in seen


def test_what_moto_does_not_check(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Pins the module docstring's limits: if moto starts checking resources or conditions for
    KMS, this fails, and the tests above should then take Terraform's statements whole."""
    exact = [s for s in terraform_policy("worker", aws) if s["Resource"] == [aws.wallet_key]]
    other_wallet = [
        {
            **exact[0],
            "Resource": "*",
            "Condition": {"StringEquals": {"kms:EncryptionContext:tonrail:wallet": ["ab" * 32]}},
        }
    ]
    s = Settings(_env_file=None, data_dir=tmp_path, ton_master_key=aws.envelope)  # type: ignore[call-arg]

    # Terraform's statement as written (the key's ARN): moto refuses it, having asked about "*".
    assume(monkeypatch, "exact", exact)
    with enable_iam_authentication(), pytest.raises(WalletKeyError) as err:
        load_signer(s)
    assert err.value.code == "wallet_key_kms_denied"
    # A condition naming another wallet: moto does not evaluate it, and the key opens.
    assume(monkeypatch, "other-wallet", other_wallet)
    with enable_iam_authentication():
        assert load_signer(s).public_key == HotWalletSigner(SEED).public_key


def test_tonrail_worker_without_kms_decrypt_keeps_its_ton_loops_idle(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """The `tonrail worker` command itself, under the worker's Terraform role without
    kms:Decrypt: it says why its TON loops are idle (naming kms:Decrypt), runs them idle, ends
    on SIGTERM, and not one request reaches toncenter (nothing signed, nothing sent)."""
    worker = as_moto_checks_it(terraform_policy("worker", aws), aws.touched)
    assume(monkeypatch, "tonrail-worker-task", without(worker, "kms:Decrypt"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    _Counting.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    for name, value in {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(tmp_path),
        "TON_MASTER_KEY": aws.envelope,
        "TON_NETWORK": "testnet",
        "TON_API_URL": f"{url}/api/v2",
        "TON_API_V3_URL": f"{url}/api/v3",
        "SECRETS_REFRESH_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    before = signal.getsignal(signal.SIGTERM)

    def stop_when_running() -> None:
        # asyncio installs its SIGTERM handler once the loops start: then end the worker
        for _ in range(600):
            if signal.getsignal(signal.SIGTERM) is not before:
                time.sleep(1.0)  # a round of every loop
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.05)

    stopper = threading.Thread(target=stop_when_running, daemon=True)
    get_settings.cache_clear()
    try:
        stopper.start()
        with enable_iam_authentication():
            result = CliRunner().invoke(app, ["worker", "--only", "ton_payouts,ton_deposits"])
    finally:
        get_settings.cache_clear()
        server.shutdown()
    stopper.join(timeout=5)
    assert result.exit_code == 0, result.output
    assert "TON loops idle:" in result.output and "kms:Decrypt" in result.output, result.output
    assert SEED.hex() not in result.output
    assert _Counting.seen == [], "a request left for toncenter"
