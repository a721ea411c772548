"""End to end below the TON rail: failures recorded through the attempt layer open an alert,
it is delivered once per channel to real local servers, and resolves when the fault stops."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tests.helpers import DEST_RAW
from tests.monitoring.conftest import Servers
from tests.monitoring.helpers import attempt_outcome, payout
from tonrail import clock
from tonrail.db import Database
from tonrail.monitoring.jobs import evaluate_alerts
from tonrail.monitoring.models import Alert, AlertDelivery, AlertEvent
from tonrail.settings import Settings

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@dataclass
class Ctx:
    db: Database
    settings: Settings
    worker_id: str = "w-test"


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def _freeze() -> Clock:
    c = Clock(T0)
    clock.set_clock(c)
    return c


async def _alerts(db: Database) -> dict[str, Alert]:
    async with db.transaction() as session:
        return {a.dedup_key: a for a in (await session.execute(select(Alert))).scalars()}


async def _deliveries(db: Database, alert_id: str) -> list[tuple[str, str, str]]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(AlertDelivery.channel, AlertDelivery.action, AlertDelivery.status)
            .where(AlertDelivery.alert_id == alert_id)
            .order_by(AlertDelivery.created_at, AlertDelivery.channel)
        )
        return sorted((c, a, s) for c, a, s in rows)


async def test_bounces_open_deliver_once_and_resolve(
    db: Database, settings: Settings, servers: Servers
) -> None:
    c = _freeze()
    # failure_pattern is "error": route it to PagerDuty too, to see trigger and resolve there.
    cfg = servers.configure(settings, alert_routes="error=email,slack,pagerduty")
    ctx = Ctx(db, cfg)
    assert await evaluate_alerts(ctx) == 0
    for _ in range(cfg.alert_failure_pattern_count):
        await attempt_outcome(db, await payout(db), "failed", error_code="bounced")
    c.advance(1)
    await evaluate_alerts(ctx)
    alerts = await _alerts(db)
    alert = alerts["failure_pattern:ton:bounced"]
    assert alert.status == "open" and alert.severity == "error"
    assert await _deliveries(db, alert.id) == [
        ("email", "trigger", "sent"),
        ("pagerduty", "trigger", "sent"),
        ("slack", "trigger", "sent"),
    ]
    assert len(servers.smtp.received) == 1
    assert len(servers.slack.received) == 1
    [pd] = servers.pagerduty.received
    assert pd["event_action"] == "trigger" and pd["dedup_key"] == "failure_pattern:ton:bounced"

    # Still failing: nothing new is sent.
    await attempt_outcome(db, await payout(db), "failed", error_code="bounced")
    c.advance(5)
    await evaluate_alerts(ctx)
    assert (len(servers.smtp.received), len(servers.slack.received)) == (1, 1)
    assert len(servers.pagerduty.received) == 1

    # The fault stops: once the failures leave the window the alert resolves, once per channel.
    c.advance(cfg.monitoring_window_seconds + 1)
    await evaluate_alerts(ctx)
    alert = (await _alerts(db))["failure_pattern:ton:bounced"]
    assert alert.status == "resolved"
    # (the payouts left queued are stuck by now: that is another alert, filtered out here)
    assert pd_actions(servers, alert.dedup_key) == ["trigger", "resolve"]
    resolved = [m for m in slack_texts(servers) if "[RESOLVED]" in m and "bounced" in m]
    assert len(resolved) == 1 and resolved[0].startswith(":white_check_mark:")
    assert len([s for s in mail_subjects(servers) if s.startswith("[RESOLVED]")]) == 1
    c.advance(5)
    await evaluate_alerts(ctx)
    assert pd_actions(servers, alert.dedup_key) == ["trigger", "resolve"]
    assert len([m for m in slack_texts(servers) if "bounced" in m]) == 2
    async with db.transaction() as session:
        kinds = [
            e.kind
            for e in (
                await session.execute(
                    select(AlertEvent)
                    .where(AlertEvent.alert_id == alert.id)
                    .order_by(AlertEvent.id)
                )
            ).scalars()
        ]
    assert kinds[0] == "opened" and "resolved" in kinds and kinds.count("delivered") == 6


def pd_actions(servers: Servers, dedup_key: str) -> list[str]:
    return [e["event_action"] for e in servers.pagerduty.received if e["dedup_key"] == dedup_key]


def slack_texts(servers: Servers) -> list[str]:
    return [str(b["text"]) for b in servers.slack.received]


def mail_subjects(servers: Servers) -> list[str]:
    return [str(item["message"]["Subject"]) for item in servers.smtp.received]


async def test_one_failure_of_two_is_not_an_incident(
    db: Database, settings: Settings, servers: Servers
) -> None:
    _freeze()
    ctx = Ctx(db, servers.configure(settings))
    await attempt_outcome(db, await payout(db), "failed", error_code="timeout")
    await attempt_outcome(db, await payout(db), "confirmed")
    await evaluate_alerts(ctx)
    assert await _alerts(db) == {}
    assert servers.slack.received == [] and servers.smtp.received == []


async def test_success_rate_below_minimum_pages(
    db: Database, settings: Settings, servers: Servers
) -> None:
    c = _freeze()
    ctx = Ctx(db, servers.configure(settings, alert_success_rate_min_sample=10))
    for i in range(10):
        # 2 of 10 fail (80 %), with different error codes so no failure pattern fires
        outcome = "failed" if i < 2 else "confirmed"
        await attempt_outcome(db, await payout(db), outcome, error_code=f"e{i}")
    c.advance(1)
    await evaluate_alerts(ctx)
    alerts = await _alerts(db)
    assert set(alerts) == {"success_rate:ton"}
    assert alerts["success_rate:ton"].severity == "critical"
    [pd] = servers.pagerduty.received  # critical goes to PagerDuty by default
    assert pd["payload"]["severity"] == "critical"


async def test_a_broken_channel_never_blocks_the_others_and_is_itself_alerted(
    db: Database, settings: Settings, servers: Servers
) -> None:
    c = _freeze()
    cfg = servers.configure(settings, alert_channel_max_attempts=2)
    ctx = Ctx(db, cfg)
    servers.slack.fail_next = [500] * 10
    for _ in range(cfg.alert_failure_pattern_count):
        await attempt_outcome(db, await payout(db), "failed", error_code="bounced")
    c.advance(1)
    await evaluate_alerts(ctx)
    assert len(servers.smtp.received) == 1  # email went out although Slack failed
    alert = (await _alerts(db))["failure_pattern:ton:bounced"]
    assert ("slack", "trigger", "pending") in await _deliveries(db, alert.id)
    c.advance(1)
    await evaluate_alerts(ctx)  # second and last Slack attempt fails: delivery failed
    assert ("slack", "trigger", "failed") in await _deliveries(db, alert.id)
    c.advance(1)
    await evaluate_alerts(ctx)
    failing = (await _alerts(db))["channel_failing:slack"]
    assert failing.status == "open"
    # The channel_failing alert went by email, never to the failing Slack itself.
    assert any("alert channel slack is failing" in s for s in mail_subjects(servers))
    assert {ch for ch, _, _ in await _deliveries(db, failing.id)} == {"email"}
    async with db.transaction() as session:
        errors = (
            await session.execute(
                select(AlertDelivery.last_error).where(AlertDelivery.channel == "slack")
            )
        ).scalars()
        assert all("500" in (e or "") and "services" not in (e or "") for e in errors)


async def test_retry_then_success_delivers_once(
    db: Database, settings: Settings, servers: Servers
) -> None:
    c = _freeze()
    ctx = Ctx(db, servers.configure(settings))
    servers.slack.fail_next = [503]
    servers.smtp.fail_next = [451]
    for _ in range(settings.alert_failure_pattern_count):
        await attempt_outcome(db, await payout(db), "failed", error_code="bounced")
    c.advance(1)
    await evaluate_alerts(ctx)
    assert servers.smtp.received == [] and servers.slack.received == []
    c.advance(1)  # the retry base is 0 s in these settings: due at once
    await evaluate_alerts(ctx)
    c.advance(1)
    await evaluate_alerts(ctx)
    assert len(servers.smtp.received) == 1 and len(servers.slack.received) == 1
    alert = (await _alerts(db))["failure_pattern:ton:bounced"]
    async with db.transaction() as session:
        attempts = (
            await session.execute(
                select(AlertDelivery.channel, AlertDelivery.attempts).where(
                    AlertDelivery.alert_id == alert.id
                )
            )
        ).all()
    assert sorted(attempts) == [("email", 2), ("slack", 2)]


async def test_cooldown_delays_a_flapping_alert(
    db: Database, settings: Settings, servers: Servers
) -> None:
    c = _freeze()
    cfg = servers.configure(
        settings,
        alert_cooldown_seconds=600,
        alert_pending_max=2,
        alert_progress_stale_seconds=10_000,
    )
    ctx = Ctx(db, cfg)

    def pending_texts() -> list[str]:
        return [str(b["text"]) for b in servers.slack.received if "pending" in str(b["text"])]

    ids = [await payout(db, target=10_000) for _ in range(3)]
    await evaluate_alerts(ctx)
    assert len(pending_texts()) == 1  # pending_high (warning) -> email, slack
    async with db.transaction() as session:
        from tonrail.payments.models import Payment

        p = await session.get(Payment, ids[0])
        assert p is not None
        p.status = "canceled"
    c.advance(10)
    await evaluate_alerts(ctx)  # resolved: slack and email get the resolve
    assert len(pending_texts()) == 2 and "[RESOLVED]" in pending_texts()[-1]
    await payout(db, target=10_000)
    c.advance(10)
    await evaluate_alerts(ctx)  # reopened inside the cooldown: the trigger waits
    alert = (await _alerts(db))["pending_high"]
    assert alert.status == "open" and len(pending_texts()) == 2
    c.advance(600)
    await evaluate_alerts(ctx)
    assert len(pending_texts()) == 3 and "[WARNING]" in pending_texts()[-1]


async def test_concurrent_evaluators_deliver_once_per_channel(
    db: Database, settings: Settings, servers: Servers
) -> None:
    c = _freeze()
    cfg = servers.configure(settings)
    for _ in range(10):  # failure pattern + counterparty and key lockouts: three alerts
        await attempt_outcome(db, await payout(db), "failed", error_code="bounced")
    c.advance(1)
    workers = [Ctx(db, cfg, f"w{i}") for i in range(4)]
    for _ in range(3):
        await asyncio.gather(*(evaluate_alerts(w) for w in workers))
        c.advance(1)
    keys = set(await _alerts(db))
    assert keys == {
        "failure_pattern:ton:bounced",
        f"suspicious_activity:counterparty:{DEST_RAW}",
        "suspicious_activity:api_key:key_x",
    }
    assert len(servers.smtp.received) == 3 and len(servers.slack.received) == 3
    assert sorted(e["dedup_key"] for e in servers.pagerduty.received) == sorted(
        k for k in keys if k.startswith("suspicious")
    )
    async with db.transaction() as session:
        from tonrail.security.models import Lockout

        assert len((await session.execute(select(Lockout))).all()) == 2
    # the fault stops: concurrent evaluators resolve it once, one resolve per channel
    c.advance(cfg.monitoring_window_seconds + 1)
    for _ in range(3):
        await asyncio.gather(*(evaluate_alerts(w) for w in workers))
        c.advance(1)
    resolved = [s for s in mail_subjects(servers) if s.startswith("[RESOLVED]")]
    assert len(resolved) == 1 and "bounced" in resolved[0]
    assert len([t for t in slack_texts(servers) if "[RESOLVED]" in t]) == 1
    async with db.transaction() as session:
        kinds = (
            await session.execute(
                select(AlertEvent.kind)
                .join(Alert, Alert.id == AlertEvent.alert_id)
                .where(Alert.dedup_key == "failure_pattern:ton:bounced")
            )
        ).scalars()
        assert [k for k in kinds if k in ("opened", "resolved")] == ["opened", "resolved"]
