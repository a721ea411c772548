"""Rotating JWT_SECRET (dashboard sessions) and the backup rails' webhook secrets with an
overlap: `tonrail keys rotate-secret`, the value in Secrets Manager (moto) or printed, the
old value accepted until its expiry and refused after, an audit entry without values."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws
from pydantic import SecretStr
from typer.testing import CliRunner

from tests.dashboard.conftest import sign_in
from tonrail import clock
from tonrail.app import create_app
from tonrail.cli import app as cli
from tonrail.db import Database
from tonrail.security.admins import create_admin
from tonrail.security.audit_log import recent, verify
from tonrail.security.secret_rotation import rotated_value
from tonrail.settings import Settings, active_values, get_settings

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
OLD = "o" * 40
REGION = "eu-west-1"


def test_the_rotated_value_and_what_is_in_force_over_time() -> None:
    once = rotated_value(OLD, "n" * 40, T0, timedelta(hours=24))
    assert once == f"{'n' * 40},{OLD}@2026-12-05T12:00:00Z"
    assert active_values(once, T0) == ["n" * 40, OLD]
    assert active_values(once, T0 + timedelta(hours=24)) == ["n" * 40]
    # A second rotation inside the overlap keeps the earlier expiry; expired values go.
    twice = rotated_value(once, "m" * 40, T0 + timedelta(hours=1), timedelta(hours=48))
    assert twice == f"{'m' * 40},{'n' * 40}@2026-12-06T13:00:00Z,{OLD}@2026-12-05T12:00:00Z"
    later = rotated_value(twice, "p" * 40, T0 + timedelta(hours=30), timedelta(hours=1))
    expected = f"{'p' * 40},{'m' * 40}@2026-12-05T19:00:00Z,{'n' * 40}@2026-12-05T19:00:00Z"
    assert later == expected


async def test_dashboard_sessions_survive_the_overlap_then_end(
    db: Database, settings: Settings
) -> None:
    now = [T0]
    clock.set_clock(lambda: now[0])
    s = settings.model_copy(update={"jwt_secret": SecretStr(OLD)})
    async with db.transaction() as session:
        await create_admin(session, "admin", "correct horse battery", "admin")
    app = create_app(s, db)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://t") as old_client,
        httpx.AsyncClient(transport=transport, base_url="http://t") as new_client,
    ):
        old_csrf = await sign_in(old_client, "admin", "correct horse battery")
        s.jwt_secret = SecretStr(rotated_value(OLD, "n" * 40, now[0], timedelta(hours=1)))
        # The old session and its forms keep working during the overlap ...
        assert (await old_client.get("/dashboard/operations")).status_code == 200
        r = await old_client.post(
            "/dashboard/operations/switches/maintenance",
            data={"csrf_token": old_csrf, "enabled": "on", "reason": "rotation test"},
        )
        assert r.status_code == 200, r.text
        # ... new sign-ins are signed with the new secret ...
        await sign_in(new_client, "admin", "correct horse battery")
        now[0] = T0 + timedelta(hours=1)
        # ... and after it the old session ends; the new one goes on.
        gone = await old_client.get("/dashboard/operations")
        assert gone.status_code == 303, gone.text
        assert gone.headers["location"].startswith("/dashboard/login")
        assert (await new_client.get("/dashboard/operations")).status_code == 200


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> Iterator[Any]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AWS_REGION", REGION)
    for name in ("JWT_SECRET", "STRIPE_WEBHOOK_SECRET", "TONRAIL_SECRETS_ARN"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)
    get_settings.cache_clear()


async def test_rotate_jwt_in_secrets_manager(
    cli_env: Any, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    sm = cli_env
    arn = sm.create_secret(Name="tonrail/all", SecretString=json.dumps({"JWT_SECRET": OLD}))["ARN"]
    monkeypatch.setenv("TONRAIL_SECRETS_ARN", arn)
    clock.set_clock(lambda: T0)
    out = await asyncio.to_thread(
        CliRunner().invoke, cli, ["keys", "rotate-secret", "jwt", "--overlap-hours", "2"]
    )
    assert out.exit_code == 0, out.output
    assert "updated in Secrets Manager" in out.output and OLD not in out.output
    stored = json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])["JWT_SECRET"]
    new, old = stored.split(",")
    assert len(new) >= 32 and new not in out.output
    assert old == f"{OLD}@2026-12-04T14:00:00Z"
    get_settings.cache_clear()
    assert active_values(get_settings().jwt_secret.get_secret_value(), T0) == [new, OLD]
    async with db.transaction() as session:
        [entry] = await recent(session, action_prefix="secret.")
        assert (await verify(session)).ok
    assert (entry.subject, entry.details["stored_in"]) == ("JWT_SECRET", arn)
    assert new not in json.dumps(entry.details) and OLD not in json.dumps(entry.details)


async def test_rotate_the_stripe_webhook_secret_printed_and_refusals(
    cli_env: Any, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_old")
    clock.set_clock(lambda: T0)
    out = await asyncio.to_thread(
        CliRunner().invoke, cli, ["keys", "rotate-secret", "stripe-webhook"], "whsec_new\n"
    )
    assert out.exit_code == 0, out.output
    assert "whsec_new,whsec_old@2026-12-05T12:00:00Z" in out.output
    for args, stdin in (
        (["keys", "rotate-secret", "stripe-webhook"], "bad,value\n"),
        (["keys", "rotate-secret", "stripe-webhook"], "\n"),
        (["keys", "rotate-secret", "nonsense"], "x\n"),
        (["keys", "rotate-secret", "paypal-webhook", "--overlap-hours", "500"], "WH-2\n"),
    ):
        bad = await asyncio.to_thread(CliRunner().invoke, cli, args, stdin)
        assert bad.exit_code == 2, (args, bad.output)
    async with db.transaction() as session:
        assert len(await recent(session, action_prefix="secret.")) == 1
