"""The daily security audit, and operating alerts: acknowledge, history, manual resolve."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from tests.monitoring.conftest import Servers
from tests.monitoring.helpers import attempt_outcome, payout
from tests.monitoring.servers import mail_of
from tests.monitoring.test_alerting import T0, Ctx, _alerts, _freeze
from tonrail.cli import app as cli
from tonrail.db import Database
from tonrail.monitoring.jobs import evaluate_alerts, security_audit
from tonrail.monitoring.models import SecurityReport
from tonrail.security.lockouts import lock
from tonrail.settings import Settings


async def test_daily_audit_is_sent_once_with_its_findings(
    db: Database, settings: Settings, servers: Servers
) -> None:
    c = _freeze()
    cfg = servers.configure(settings, slack_webhook_url=SecretStr(servers.slack_url))
    big = await payout(db, amount=25_000 * 10**9, key="key_big")  # 125,000 USDT equivalent
    await payout(db, amount=10**9)  # small: not listed
    async with db.transaction() as session:
        await lock(session, "counterparty", "0:" + "cd" * 32, 11, "11 failures in 300 s")
    ctx = Ctx(db, cfg)
    c.advance(24 * 3600)  # the next UTC day: the audit covers the day before
    await security_audit(ctx)
    await evaluate_alerts(ctx)  # delivers what is due
    [mail] = [m for m in servers.smtp.received if "security audit" in str(mail_of(m)["Subject"])]
    text = mail_of(mail).get_payload(decode=True).decode()
    assert "tonrail security audit for 2026-11-27" in text
    assert big in text and "key:key_big" in text
    assert "Lockouts created: 1" in text and "counterparty 0:cdcd" in text
    assert "Configuration: first audit" in text
    assert not [e for e in servers.pagerduty.received if "audit" in str(e)]  # never paged
    await security_audit(ctx)
    await evaluate_alerts(ctx)
    assert len([m for m in servers.smtp.received if "audit" in str(mail_of(m)["Subject"])]) == 1

    # the next day, with a changed threshold and a new secret: the change is named, not shown
    c.advance(24 * 3600)
    changed = cfg.model_copy(
        update={"alert_pending_max": 7, "smtp_password": SecretStr("hunter2-secret")}
    )
    await security_audit(Ctx(db, changed))
    async with db.transaction() as session:
        report = await session.get(SecurityReport, (T0 + timedelta(days=1)).date().isoformat())
        assert report is not None
        assert report.body["config_changes"] == ["alert_pending_max", "smtp_password"]
        assert "hunter2" not in str(report.body)
        days = (await session.execute(select(SecurityReport.day))).scalars().all()
        assert sorted(days) == ["2026-11-27", "2026-11-28"]


async def test_acknowledge_history_and_manual_resolve(
    db: Database,
    settings: Settings,
    servers: Servers,
    cli_env: str,
) -> None:
    c = _freeze()
    cfg = servers.configure(settings, alert_routes="error=email,slack,pagerduty")
    ctx = Ctx(db, cfg)
    for _ in range(5):
        await attempt_outcome(db, await payout(db, target=10_000), "failed", error_code="bounced")
    await evaluate_alerts(ctx)
    alert = (await _alerts(db))["failure_pattern:ton:bounced"]

    def run(args: list[str]) -> str:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        return result.output

    assert alert.id in await asyncio.to_thread(run, ["alerts", "list"])
    await asyncio.to_thread(run, ["alerts", "ack", alert.id, "--actor", "alice"])
    c.advance(1)
    await evaluate_alerts(ctx)
    pd = [e["event_action"] for e in servers.pagerduty.received]
    assert pd == ["trigger", "acknowledge"]
    refused = await asyncio.to_thread(CliRunner().invoke, cli, ["alerts", "ack", alert.id])
    assert refused.exit_code == 2 and "not open" in refused.output
    # still failing: acknowledged alerts are not re-sent
    await attempt_outcome(db, await payout(db, target=10_000), "failed", error_code="bounced")
    c.advance(1)
    await evaluate_alerts(ctx)
    assert len(servers.slack.received) == 1
    await asyncio.to_thread(run, ["alerts", "resolve", alert.id, "--actor", "bob"])
    c.advance(1)
    await evaluate_alerts(ctx)  # the condition still holds: it reopens (inside the cooldown)
    history = await asyncio.to_thread(run, ["alerts", "history", alert.id])
    kinds = [line.split()[2] for line in history.splitlines()]
    assert kinds[:1] == ["opened"] and "acknowledged" in kinds and "reopened" in kinds
    assert "admin:alice" in history and "admin:bob" in history
    assert [e["event_action"] for e in servers.pagerduty.received] == [
        "trigger",
        "acknowledge",
        "resolve",
    ]
    assert (await _alerts(db))[alert.dedup_key].status == "open"
