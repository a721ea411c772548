"""End to end on the local TON network: a fault injected into the network (toncenter 5xx,
bounces, dropped messages) makes the TON rail's real loop (`payout_round`) record failures,
`evaluate_alerts` opens the alert, delivers it once per routed channel to real local servers
(SMTP, Slack, PagerDuty), and resolves it once the fault is removed and the condition clears.

Time: the monitoring clock runs with the wall clock plus an offset that the tests move
forward (`ShiftClock`), instead of sleeping for the thresholds; when the rail must keep
talking to the chain after a move, the local network's clock moves by the same offset.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from nacl.signing import SigningKey
from ton_core import Address

from tests.monitoring.conftest import Servers
from tests.monitoring.test_alerting import Ctx, _alerts, _deliveries
from tests.rails.ton.rail_fixture import Rail
from tests.tonnet import running_localnet
from tonrail import clock
from tonrail.db import Database
from tonrail.localnet.genesis import HOT_SUBWALLET, HOT_TIMEOUT
from tonrail.monitoring import signals
from tonrail.monitoring.jobs import evaluate_alerts
from tonrail.monitoring.models import Alert
from tonrail.payments.service import PaymentService
from tonrail.processing.context import TonRailContext
from tonrail.processing.ton_loop import payout_round
from tonrail.rails.ton.api import ToncenterTonApi, jetton_wallet_of
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.highload import HighloadWallet
from tonrail.rails.ton.toncenter import ToncenterClient, ToncenterError
from tonrail.settings import Settings

# Every route, so each test sees the trigger and the resolve on PagerDuty as well.
ALL_CHANNELS = "critical=email,slack,pagerduty;error=email,slack,pagerduty;warning=email,slack"
MISSING = Address("0:" + "ab" * 32).to_str(is_user_friendly=True, is_bounceable=True)


class ShiftClock:
    """The wall clock plus an offset that only grows."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class Env:
    rail: Rail
    servers: Servers
    monitor: Ctx
    clock: ShiftClock
    client: httpx.AsyncClient
    auth: dict[str, str]

    async def faults(self, **changes: object) -> None:
        async with httpx.AsyncClient() as c:
            url = f"{self.rail.net.url}/localnet/faults"
            r = await (c.post(url, json=changes) if changes else c.delete(url))
            assert r.status_code == 200, r.text

    async def payout(self, destination: str, amount: str = "0.5") -> str:
        r = await self.client.post(
            "/v1/payouts",
            json={"amount": amount, "asset": "TON", "destination": destination},
            headers=self.auth,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def payee(self) -> str:
        customer = self.rail.net.genesis.wallet("customer").address
        return customer.to_str(is_user_friendly=True, is_bounceable=False)

    async def rounds(self, n: int) -> None:
        """`n` turns of the worker's TON payout loop; a failed turn is retried, as there."""
        for _ in range(n):
            try:
                await payout_round(self.rail.ctx)
            except ToncenterError:
                pass
            await asyncio.sleep(0.05)

    async def statuses(self, ids: list[str]) -> list[str]:
        return [
            (await self.client.get(f"/v1/payouts/{i}", headers=self.auth)).json()["status"]
            for i in ids
        ]

    async def until_final(self, ids: list[str], max_rounds: int = 600) -> list[str]:
        """Run the payout loop until every payout succeeded or failed (bounded in rounds)."""
        for _ in range(max_rounds):
            got = await self.statuses(ids)
            if all(s in ("succeeded", "failed") for s in got):
                return got
            await self.rounds(1)
        raise AssertionError(f"payouts not final: {await self.statuses(ids)}")

    async def evaluate(self) -> None:
        await evaluate_alerts(self.monitor)

    def mails(self, dedup_key: str) -> list[str]:
        """Actions of the mails about one alert (the headers the email channel sets)."""
        return [
            str(m["message"]["X-Tonrail-Action"])
            for m in self.servers.smtp.received
            if m["message"]["X-Tonrail-Alert"] == dedup_key
        ]

    def pd(self, dedup_key: str) -> list[str]:
        return [
            e["event_action"]
            for e in self.servers.pagerduty.received
            if e["dedup_key"] == dedup_key
        ]


@pytest.fixture
async def env(
    db: Database,
    settings: Settings,
    servers: Servers,
    client: httpx.AsyncClient,
    auth: dict[str, str],
) -> AsyncIterator[Env]:
    """The TON rail on a local network, its toncenter client reporting to monitoring as in
    `processing/ton_runtime.py`, and monitoring delivering to the local channel servers."""
    shift = ShiftClock()
    clock.set_clock(shift)
    async with running_localnet() as net:
        hot = net.genesis.wallet("hot")
        key = SigningKey(bytes.fromhex(hot.to_json()["private_key"]))
        wallet = HighloadWallet(bytes(key.verify_key), HOT_SUBWALLET, HOT_TIMEOUT)
        api = ToncenterTonApi(
            ToncenterClient(
                [net.v2],
                [net.v3],
                max_attempts=3,
                backoff_initial=0.01,
                backoff_max=0.05,
                on_call=signals.record_toncenter_call,
            )
        )
        jetton_wallet = await jetton_wallet_of(
            api, net.genesis.usdt_master.to_str(), raw(wallet.address)
        )
        # No batch windows: tests send at once (the optimizer's timing has its own tests).
        fast = settings.model_copy(
            update={
                "ton_resend_seconds": 1,
                "ton_max_attempts": 1,
                "fees_window_urgent_ms": 0,
                "fees_window_normal_ms": 0,
                "fees_window_low_ms": 0,
            }
        )
        ctx = TonRailContext(
            db=db,
            settings=fast,
            payments=PaymentService(db, fast),
            api=api,
            wallet=wallet,
            sign=lambda data: key.sign(data).signature,
            jetton_wallet=jetton_wallet,
            worker_id="w-test",
        )
        monitor = Ctx(db, servers.configure(settings, alert_routes=ALL_CHANNELS))
        try:
            yield Env(Rail(net, ctx, api), servers, monitor, shift, client, auth)
        finally:
            await api.aclose()


async def _active(db: Database, rule: str) -> list[Alert]:
    return [a for a in (await _alerts(db)).values() if a.rule == rule]


def _slack_about(env: Env, dedup_key: str) -> list[str]:
    """Texts of the Slack messages whose context names the alert's key. Not by summary: a
    summary may change while the alert is open ("oldest 190 s", then 191 s)."""
    return [
        str(b["text"])
        for b in env.servers.slack.received
        if f"key `{dedup_key}`" in json.dumps(b.get("blocks", []))
    ]


async def _channels_got(env: Env, alert: Alert) -> dict[str, int]:
    """Messages each channel server received about `alert` (its dedup key)."""
    return {
        "email": len(env.mails(alert.dedup_key)),
        "slack": sum("[RESOLVED]" not in t for t in _slack_about(env, alert.dedup_key)),
        "pagerduty": len(env.pd(alert.dedup_key)),
    }


async def _assert_delivered_once(env: Env, db: Database, alert: Alert) -> None:
    assert await _deliveries(db, alert.id) == [
        ("email", "trigger", "sent"),
        ("pagerduty", "trigger", "sent"),
        ("slack", "trigger", "sent"),
    ]
    assert await _channels_got(env, alert) == {"email": 1, "slack": 1, "pagerduty": 1}
    assert env.pd(alert.dedup_key) == ["trigger"]
    assert env.mails(alert.dedup_key) == ["trigger"]


async def _assert_resolved_once(env: Env, db: Database, dedup_key: str) -> None:
    alert = (await _alerts(db))[dedup_key]
    assert alert.status == "resolved"
    assert env.pd(dedup_key) == ["trigger", "resolve"]
    assert env.mails(dedup_key) == ["trigger", "resolve"]
    assert sum("[RESOLVED]" in t for t in _slack_about(env, dedup_key)) == 1
    assert sorted(await _deliveries(db, alert.id)) == [
        ("email", "resolve", "sent"),
        ("email", "trigger", "sent"),
        ("pagerduty", "resolve", "sent"),
        ("pagerduty", "trigger", "sent"),
        ("slack", "resolve", "sent"),
        ("slack", "trigger", "sent"),
    ]


def _received(env: Env) -> tuple[int, int, int]:
    s = env.servers
    return len(s.smtp.received), len(s.slack.received), len(s.pagerduty.received)


async def test_toncenter_5xx_pages_and_resolves(env: Env, db: Database) -> None:
    # Healthy first: a payout goes out, every toncenter call succeeds, nothing alerts.
    first = await env.payout(env.payee())
    assert await env.until_final([first]) == ["succeeded"]
    await env.evaluate()
    assert await _alerts(db) == {}

    # Fault: toncenter answers 5xx to everything while the payout loop has work.
    await env.faults(http_5xx_rate=1.0)
    second = await env.payout(env.payee())
    await env.rounds(3)
    assert await env.statuses([second]) == ["queued"]
    threshold = env.monitor.settings.alert_toncenter_unreachable_seconds
    env.clock.advance(threshold + 1)  # the outage lasts past the threshold
    await env.rounds(3)
    await env.evaluate()
    down = await _active(db, "toncenter_unreachable")
    assert down and all(a.status == "open" and a.severity == "critical" for a in down)
    for alert in down:
        await _assert_delivered_once(env, db, alert)
    assert set(await _alerts(db)) == {a.dedup_key for a in down}  # nothing else fired

    # Still down: nothing is sent again.
    before = _received(env)
    await env.rounds(2)
    await env.evaluate()
    assert _received(env) == before

    # The fault stops: the payout goes out, toncenter answers, each alert resolves once.
    await env.faults()
    assert await env.until_final([second]) == ["succeeded"]
    await env.evaluate()
    for alert in down:
        await _assert_resolved_once(env, db, alert.dedup_key)
    after = _received(env)
    await env.evaluate()
    assert _received(env) == after


async def test_bounces_open_failure_pattern_and_success_rate(env: Env, db: Database) -> None:
    # Enough bounces for the failure pattern (5 by default) and, with its minimum sample
    # lowered to match, the success rate rule of the TON rail and of all payments.
    count = env.monitor.settings.alert_failure_pattern_count
    env.monitor = Ctx(
        db, env.monitor.settings.model_copy(update={"alert_success_rate_min_sample": count})
    )
    # The rail would retry other failures 3 times; a bounce is final (it would bounce again).
    retries = 1
    env.rail.ctx.settings = env.rail.ctx.settings.model_copy(
        update={"ton_max_attempts": 3, "ton_retry_backoff_s": 0}
    )
    ids = [await env.payout(MISSING) for _ in range(count)]
    assert await env.until_final(ids) == ["failed"] * count
    await env.evaluate()
    alerts = await _alerts(db)
    # 5 bounced payouts: below the lockout count (10), so neither the destination nor the
    # API key is locked. Every payout failing also burns the 99 % success objective's error
    # budget 100x over both 1 h and 5 min: slo_burn pages too.
    assert set(alerts) == {
        "failure_pattern:ton:bounced",
        "success_rate:ton",
        "success_rate:all",
        "slo_burn:success_rate",
    }
    pattern = alerts["failure_pattern:ton:bounced"]
    assert pattern.severity == "error" and pattern.details["count"] == count * retries
    assert alerts["success_rate:ton"].severity == "critical"
    assert alerts["slo_burn:success_rate"].severity == "critical"
    for alert in alerts.values():
        assert alert.status == "open"
        await _assert_delivered_once(env, db, alert)

    before = _received(env)
    env.clock.advance(5)
    await env.evaluate()
    assert _received(env) == before

    # No more bounces: once they leave the window every window alert resolves, once per
    # channel. The error budget still burns over 6 h and 30 min (monitoring/slo.py): the
    # slo_burn alert stays open until its 30-minute window is clear too.
    env.clock.advance(env.monitor.settings.monitoring_window_seconds)
    await env.evaluate()
    for key in alerts:
        if key != "slo_burn:success_rate":
            await _assert_resolved_once(env, db, key)
    assert (await _alerts(db))["slo_burn:success_rate"].status == "open"
    after = _received(env)
    await env.evaluate()
    assert _received(env) == after


async def test_dropped_messages_leave_payouts_stuck_until_the_network_takes_them(
    env: Env, db: Database
) -> None:
    await env.faults(drop_external_rate=1.0)
    pid = await env.payout(env.payee())
    await env.rounds(10)  # signed, sent and re-sent; the network drops every message
    assert await env.statuses([pid]) == ["processing"]
    await env.evaluate()
    assert await _alerts(db) == {}

    # Past the stuck threshold, on our clock and on the network's (the wallet checks time).
    shift = env.monitor.settings.alert_stuck_seconds + 10
    env.clock.advance(shift)
    await env.faults(drop_external_rate=1.0, time_offset_s=shift)
    # Stuck, and past TON_CONFIRMATION_TIMEOUT_SECONDS its attempt is `unknown` as well: the
    # tracker marks it at its next look at the request (it pauses ~400 ms between looks).
    for _ in range(30):
        await env.rounds(1)
        await env.evaluate()
        alerts = await _alerts(db)
        if "payout_unknown" in alerts:
            break
        await asyncio.sleep(0.2)
    assert set(alerts) == {"payments_stuck", "payout_unknown"}
    stuck = alerts["payments_stuck"]
    assert stuck.status == "open" and stuck.details["payment_ids"] == [pid]
    await _assert_delivered_once(env, db, stuck)
    await _assert_delivered_once(env, db, alerts["payout_unknown"])

    # The network takes messages again: the re-sent payout lands, both alerts resolve.
    await env.faults(drop_external_rate=0.0)  # a partial update: the time offset stays
    assert await env.until_final([pid]) == ["succeeded"]
    await env.evaluate()
    await _assert_resolved_once(env, db, "payments_stuck")
    await _assert_resolved_once(env, db, "payout_unknown")
