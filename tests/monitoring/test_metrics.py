"""`/metrics` in the Prometheus format, from the database and from signals of any process."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.monitoring.helpers import attempt_outcome, finish, payout
from tests.monitoring.test_alerting import _freeze
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.monitoring import signals
from tonrail.settings import Settings


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def _scrape(
    client: httpx.AsyncClient,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


async def test_payment_metrics(db: Database, settings: Settings, client: httpx.AsyncClient) -> None:
    c = _freeze()
    ok = await payout(db, amount=2 * 10**9)
    await attempt_outcome(db, ok, "confirmed", fee=5_000_000)
    await finish(db, settings, ok, "succeeded")
    bad = await payout(db)
    await attempt_outcome(db, bad, "failed", error_code="bounced")
    await finish(db, settings, bad, "failed")
    await payout(db)  # queued, no attempt yet
    c.advance(30)
    m = await _scrape(client)
    key = (("asset", "TON"), ("direction", "out"))
    assert m[("tonrail_payments", (*key, ("rail", "ton"), ("status", "succeeded")))] == 1
    assert m[("tonrail_payments", (*key, ("rail", "ton"), ("status", "failed")))] == 1
    assert m[("tonrail_payments", (*key, ("rail", "none"), ("status", "queued")))] == 1
    assert m[("tonrail_payments_amount", (*key, ("rail", "ton"), ("status", "succeeded")))] == 2.0
    assert m[("tonrail_success_rate", (("scope", "all"),))] == 0.5
    assert m[("tonrail_success_rate", (("scope", "rail:ton"),))] == 0.5
    assert m[("tonrail_pending_payments", ())] == 1
    assert m[("tonrail_pending_oldest_age_seconds", ())] == 30
    assert m[("tonrail_fees_paid_total", (("asset", "TON"), ("rail", "ton")))] == 0.005
    assert m[("tonrail_attempt_failures_window", (("error_code", "bounced"), ("rail", "ton")))] == 1
    assert m[("tonrail_volume_window_usdt", ())] == 10.0  # 2 TON at the helper's rate
    assert m[("tonrail_outbox_backlog", ())] == 4  # the four transitions wrote events


async def test_signals_fed_in_one_process_show_in_another(
    db: Database, settings: Settings, client: httpx.AsyncClient
) -> None:
    _freeze()
    signals.set_hot_wallet_balance("TON", 1234 * 10**9)
    signals.set_congestion(42.5)
    signals.set_gas_price(400)
    signals.record_toncenter_error("runGetMethod", "http_5xx")
    signals.record_toncenter_error("runGetMethod", "http_5xx")
    signals.record_toncenter_success("runGetMethod")
    signals.record_provider_error("stripe", "timeout")
    signals.observe_confirmation("ton", 7.0)
    signals.observe_confirmation("ton", 40.0)
    signals.set_webhook_backlog(7, 12.5)
    assert await signals.persist_signals(db) > 0
    signals.record_toncenter_error("runGetMethod", "http_5xx")  # counters add up
    await signals.persist_signals(db)
    m = await _scrape(client)  # the app reads the table, not this process's buffer
    assert m[("tonrail_hot_wallet_balance", (("asset", "TON"),))] == 1234.0
    assert m[("tonrail_congestion_percent", ())] == 42.5
    assert m[("tonrail_gas_price", ())] == 400
    assert m[("tonrail_webhook_backlog", ())] == 7
    assert m[("tonrail_webhook_backlog_oldest_age_seconds", ())] == 12.5
    tc = (("endpoint", "runGetMethod"),)
    assert m[("tonrail_toncenter_requests_total", (*tc, ("outcome", "http_5xx")))] == 3
    assert m[("tonrail_toncenter_requests_total", (*tc, ("outcome", "ok")))] == 1
    assert (
        m[("tonrail_provider_requests_total", (("outcome", "timeout"), ("provider", "stripe")))]
        == 1
    )
    h = (("rail", "ton"),)
    assert m[("tonrail_confirmation_seconds_bucket", (("le", "5.0"), *h))] == 0
    assert m[("tonrail_confirmation_seconds_bucket", (("le", "10.0"), *h))] == 1
    assert m[("tonrail_confirmation_seconds_bucket", (("le", "+Inf"), *h))] == 2
    assert m[("tonrail_confirmation_seconds_count", h)] == 2
    assert m[("tonrail_confirmation_seconds_sum", h)] == 47.0


async def test_metrics_token(db: Database, settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"metrics_token": SecretStr("s3cret")}), db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/metrics")).status_code == 401
        r = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and "tonrail_pending_payments" in r.text


def test_every_metric_and_rule_is_documented() -> None:
    from datetime import UTC, datetime

    from tonrail.monitoring.prometheus import render
    from tonrail.monitoring.rules import RULES
    from tonrail.monitoring.snapshot import SignalValue, Snapshot
    from tonrail.settings import REPO_ROOT

    at = datetime(2026, 11, 27, tzinfo=UTC)
    snap = Snapshot(at=at, window_seconds=300)
    snap.signals = [
        SignalValue(name, {"rail": "ton"}, "gauge", 1, at)
        for name in (
            "congestion_bp",
            "gas_price",
            "webhook_backlog",
            "webhook_backlog_oldest_ms",
            "confirmation_count",
        )
    ]
    doc = (REPO_ROOT / "docs" / "monitoring.md").read_text()
    names = {f.name for f in text_string_to_metric_families(render(snap, {}).decode())}
    assert len(names) > 20
    for name in names:
        documented = name if f"`{name}`" in doc else f"{name}_total"
        assert f"`{documented}`" in doc, name
    for rule in RULES:
        assert f"| `{rule.__name__}` |" in doc, rule.__name__
