"""Rules fed by signals and heartbeats: toncenter down, hot wallet low, a silent worker loop."""

from __future__ import annotations

from datetime import timedelta

from tests.monitoring.conftest import Servers
from tests.monitoring.test_alerting import Ctx, _alerts, _freeze
from tonrail import clock
from tonrail.db import Database
from tonrail.kit.models import WorkerHeartbeat
from tonrail.monitoring import signals
from tonrail.monitoring.jobs import evaluate_alerts
from tonrail.settings import Settings


async def test_toncenter_outage_pages_and_recovers(
    db: Database, settings: Settings, servers: Servers
) -> None:
    c = _freeze()
    ctx = Ctx(db, servers.configure(settings))
    signals.record_toncenter_success("getAddressInformation")
    await evaluate_alerts(ctx)
    for _ in range(20):  # toncenter answers 5xx for 31 s
        c.advance(1.55)
        signals.record_toncenter_error("getAddressInformation", "http_5xx")
        await evaluate_alerts(ctx)
    alert = (await _alerts(db))["toncenter_unreachable:getAddressInformation"]
    assert alert.status == "open" and alert.severity == "critical"
    assert [e["event_action"] for e in servers.pagerduty.received] == ["trigger"]
    c.advance(1)
    signals.record_toncenter_success("getAddressInformation")
    await evaluate_alerts(ctx)
    assert (await _alerts(db))[alert.dedup_key].status == "resolved"
    assert [e["event_action"] for e in servers.pagerduty.received] == ["trigger", "resolve"]


async def test_hot_wallet_below_floor(db: Database, settings: Settings) -> None:
    c = _freeze()
    ctx = Ctx(db, settings.model_copy(update={"alert_hot_wallet_floor_usdt": 50_000 * 10**6}))
    signals.set_hot_wallet_balance("USDT", 49_999 * 10**6)
    await evaluate_alerts(ctx)
    assert (await _alerts(db))["hot_wallet_low:USDT"].status == "open"
    signals.set_hot_wallet_balance("USDT", 80_000 * 10**6)  # topped up
    c.advance(2)
    await evaluate_alerts(ctx)
    assert (await _alerts(db))["hot_wallet_low:USDT"].status == "resolved"


async def test_a_loop_that_stops_heartbeating(db: Database, settings: Settings) -> None:
    c = _freeze()
    async with db.transaction() as session:
        session.add(
            WorkerHeartbeat(
                worker_id="w1", loop="expire_invoices", beat_at=clock.now(), processed=0
            )
        )
    ctx = Ctx(db, settings)
    c.advance(settings.alert_heartbeat_stale_seconds - 1)
    await evaluate_alerts(ctx)
    assert await _alerts(db) == {}
    c.advance(2)
    await evaluate_alerts(ctx)
    assert (await _alerts(db))["worker_stale:expire_invoices"].status == "open"
    async with db.transaction() as session:
        row = await session.get(WorkerHeartbeat, ("w1", "expire_invoices"))
        assert row is not None
        row.beat_at = clock.now() + timedelta(seconds=1)
    c.advance(2)
    await evaluate_alerts(ctx)
    assert (await _alerts(db))["worker_stale:expire_invoices"].status == "resolved"
