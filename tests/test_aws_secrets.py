"""Settings from AWS Secrets Manager (moto): NAME_SECRET_ARN, the service's JSON secret,
refusals that name the ARN and never a value, refresh while running, and a full app start
plus requests whose logs hold none of the configured secret values."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
import stripe
from moto import mock_aws

from tests.conftest import make_key
from tests.dashboard.conftest import PASSWORD, login_csrf
from tonrail import logs
from tonrail.app import create_app
from tonrail.aws_secrets import SecretsError
from tonrail.db import Database
from tonrail.secrets_refresh import refresh, refresh_loop
from tonrail.security.admins import create_admin
from tonrail.settings import Settings

REGION = "eu-west-1"


@pytest.fixture
def sm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("JWT_SECRET", "TONRAIL_SECRETS_ARN", "AWS_SECRETSMANAGER_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)


def secret(sm: Any, name: str, value: str) -> str:
    return str(sm.create_secret(Name=name, SecretString=value)["ARN"])


def test_one_setting_per_arn_wins_over_the_environment(
    sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    jwt = "j" * 48
    monkeypatch.setenv("JWT_SECRET", "from-the-environment-" + "x" * 20)
    monkeypatch.setenv("JWT_SECRET_SECRET_ARN", secret(sm, "tonrail/jwt", jwt))
    # A console key/value secret: the setting's own key is taken.
    kv = json.dumps({"STRIPE_WEBHOOK_SECRET": "whsec_kv", "other": "ignored"})
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET_SECRET_ARN", secret(sm, "tonrail/stripe", kv))
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.jwt_secret.get_secret_value() == jwt
    assert s.stripe_webhook_secret.get_secret_value() == "whsec_kv"
    assert jwt not in repr(s) and "whsec_kv" not in repr(s)


def test_one_json_secret_for_the_service(sm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = {"JWT_SECRET": "k" * 40, "smtp_password": "smtp-pw", "LOCKOUT_SECONDS": 60}
    monkeypatch.setenv("TONRAIL_SECRETS_ARN", secret(sm, "tonrail/all", json.dumps(doc)))
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.jwt_secret.get_secret_value() == "k" * 40
    assert s.smtp_password.get_secret_value() == "smtp-pw"
    assert s.lockout_seconds == 60


@pytest.mark.parametrize("case", ["missing", "unknown_setting", "unknown_key", "not_json"])
def test_refusals_name_the_setting_and_arn_never_a_value(
    sm: Any, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    if case == "missing":
        arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:nope-AbCdEf"
        monkeypatch.setenv("JWT_SECRET_SECRET_ARN", arn)
        expected = ["JWT_SECRET_SECRET_ARN", arn, "ResourceNotFoundException"]
    elif case == "unknown_setting":
        monkeypatch.setenv("NO_SUCH_SECRET_ARN", secret(sm, "x", "value-1"))
        expected = ["NO_SUCH_SECRET_ARN"]
    elif case == "unknown_key":
        body = json.dumps({"JWT_SECRET": "value-1", "TYPO_SETING": "value-2"})
        monkeypatch.setenv("TONRAIL_SECRETS_ARN", secret(sm, "all", body))
        expected = ["TYPO_SETING"]
    else:
        monkeypatch.setenv("TONRAIL_SECRETS_ARN", secret(sm, "all", "value-1"))
        expected = ["not a JSON object"]
    with pytest.raises(SecretsError) as err:
        Settings(_env_file=None)  # type: ignore[call-arg]
    for part in expected:
        assert part in str(err.value)
    assert "value-1" not in str(err.value) and "value-2" not in str(err.value)


async def test_refresh_applies_a_new_value_while_running(
    sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = secret(sm, "tonrail/jwt", "a" * 40)
    monkeypatch.setenv("JWT_SECRET_SECRET_ARN", arn)
    s = Settings(_env_file=None, secrets_refresh_seconds=1)  # type: ignore[call-arg]
    assert refresh(s) == []
    sm.put_secret_value(SecretId=arn, SecretString="b" * 40)
    assert refresh(s) == ["JWT_SECRET"]
    assert s.jwt_secret.get_secret_value() == "b" * 40

    # The loop does the same on its own; a failed read keeps the value in force.
    sm.put_secret_value(SecretId=arn, SecretString="c" * 40)
    stop = asyncio.Event()
    task = asyncio.create_task(refresh_loop(s, stop))
    for _ in range(100):
        if s.jwt_secret.get_secret_value() == "c" * 40:
            break
        await asyncio.sleep(0.05)
    assert s.jwt_secret.get_secret_value() == "c" * 40
    sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    await asyncio.sleep(1.2)
    assert s.jwt_secret.get_secret_value() == "c" * 40
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_full_start_and_requests_log_no_secret_value(
    sm: Any,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    db: Database,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    values = {
        "JWT_SECRET": "jwt-" + "s" * 40,
        "STRIPE_SECRET_KEY": "sk_test_secretvalue123",
        "STRIPE_WEBHOOK_SECRET": "whsec_secretvalue456",
        "PAYPAL_CLIENT_SECRET": "paypal-secretvalue789",
        "SMTP_PASSWORD": "smtp-secretvalue",
        "METRICS_TOKEN": "metrics-secretvalue",
        "PAGERDUTY_ROUTING_KEY": "pd-secretvalue",
        "TON_KEY_PASSPHRASE": "passphrase-secretvalue",
        "TON_API_KEY": "toncenter-secretvalue",
    }
    single = "SLACK_WEBHOOK_URL"
    slack = "http://127.0.0.1:9/hooks/slack-secretvalue"
    monkeypatch.setenv("TONRAIL_SECRETS_ARN", secret(sm, "tonrail/prod", json.dumps(values)))
    slack_arn = secret(sm, "tonrail/slack", slack)
    monkeypatch.setenv(f"{single}_SECRET_ARN", slack_arn)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("BACKUP_RAILS", "stripe")
    caplog.set_level(logging.DEBUG)
    settings = Settings(_env_file=None, secrets_refresh_seconds=1)  # type: ignore[call-arg]
    logs.configure(settings.log_level, settings.log_json)
    async with db.transaction() as session:
        await create_admin(session, "admin", PASSWORD, "admin")
    api_key = await make_key(db)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        auth = {"Authorization": f"Bearer {api_key}"}
        assert (await c.get("/healthz")).status_code == 200
        metrics = {"Authorization": f"Bearer {values['METRICS_TOKEN']}"}
        assert (await c.get("/metrics", headers=metrics)).status_code == 200
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/v1/payouts", headers=auth)).status_code == 200
        form = await c.get("/dashboard/login")
        signed = await c.post(
            "/dashboard/login",
            data={"username": "admin", "password": PASSWORD, "csrf_token": login_csrf(form.text)},
        )
        assert signed.status_code == 303
        assert (await c.get("/dashboard/operations")).status_code == 200
        event = json.dumps(
            {"id": "evt_1", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}
        )
        good = stripe.WebhookSignature.generate_signature_header(
            event, values["STRIPE_WEBHOOK_SECRET"]
        )
        bad = stripe.WebhookSignature.generate_signature_header(event, "whsec_other")
        assert (
            await c.post("/webhooks/stripe", content=event, headers={"Stripe-Signature": bad})
        ).status_code == 400
        r = await c.post("/webhooks/stripe", content=event, headers={"Stripe-Signature": good})
        assert r.status_code == 200, r.text
        # A rotated secret arrives through the refresh loop; its change is logged by name.
        sm.put_secret_value(SecretId=slack_arn, SecretString=slack + "-rotated")
        for _ in range(100):
            if settings.slack_webhook_url.get_secret_value().endswith("-rotated"):
                break
            await asyncio.sleep(0.05)
        assert settings.slack_webhook_url.get_secret_value() == slack + "-rotated"
    out, err = capfd.readouterr()
    seen = out + err + caplog.text
    assert "secrets refreshed" in seen and "SLACK_WEBHOOK_URL" in seen  # logs were captured
    for name, value in [*values.items(), (single, slack), (single, slack + "-rotated")]:
        assert value not in seen, f"{name}'s value reached the logs"
        assert value.split("-")[-1] not in seen, f"part of {name}'s value reached the logs"
