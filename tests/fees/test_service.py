"""Decisions stored with their inputs and outcomes, and GET /v1/fees/status, end to end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import make_key
from tests.fees.test_sampler import sampler_for
from tests.rails.ton.rail_fixture import Rail
from tonrail import clock
from tonrail.db import Database
from tonrail.fees import repository
from tonrail.fees.repository import Arrivals
from tonrail.fees.service import (
    arrival_rates,
    decide_for_batch,
    fee_decisions_for,
    load_conditions,
    record_outcome,
    shared_fee_fit,
)
from tonrail.payments.models import Payment
from tonrail.settings import Settings


async def create(
    client: httpx.AsyncClient, auth: dict[str, str], payee: str, amount: str, priority: str
) -> str:
    r = await client.post(
        "/v1/payouts",
        json={"amount": amount, "asset": "TON", "destination": payee, "priority": priority},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_arrivals_are_read_from_the_newest_payouts_only(
    db: Database,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payee = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"
    for priority in ("low", "urgent", "urgent"):
        await create(client, auth, payee, "1", priority)
    since = clock.now() - timedelta(seconds=60)
    async with db.transaction() as session:
        found = await repository.arrivals_since(session, since)
        assert found.counts == {("TON", "low"): 1, ("TON", "urgent"): 2}
        first = (await session.execute(select(Payment.created_at))).scalars().all()
        assert found.oldest == min(first)
        monkeypatch.setattr(repository, "ARRIVALS_READ_MAX", 2)  # the two newest
        assert (await repository.arrivals_since(session, since)).counts == {("TON", "urgent"): 2}
        later = await repository.arrivals_since(session, clock.now() + timedelta(seconds=1))
        assert later == Arrivals({}, None)


async def test_without_any_sample_decisions_say_what_is_unknown(
    db: Database, settings: Settings, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    payee = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"
    ids = [await create(client, auth, payee, "1", p) for p in ("low", "urgent")]
    cond = await load_conditions(db, settings)
    assert cond.sample is None and cond.model is None and cond.congestion_pct is None
    assert cond.queued == {"low": 1, "urgent": 1}
    for _ in range(2):  # deciding again replaces the decision and counts the revision
        async with db.transaction() as session:
            payouts = (await session.execute(select(Payment))).scalars().all()
            decisions = await decide_for_batch(session, cond, settings, payouts)
        low, urgent = decisions[ids[0]], decisions[ids[1]]
        assert low.expected_fee_nanoton is None and "fee_unknown" in low.reasons
        assert "latency_assumed" in low.reasons
        # two arrivals: company is expected, but without a fee estimate waiting is unpriced
        assert set(cond.arrivals) == {("TON", "low"), ("TON", "urgent")}
        assert sum(cond.arrivals.values()) > 0
        assert low.send_by <= clock.now() and "waiting_unpriced" in low.reasons
        assert urgent.batch_window_ms <= settings.fees_window_urgent_ms
        assert urgent.divert_reason is None
    async with db.transaction() as session:
        shown = await fee_decisions_for(session, ids)
    assert shown[ids[0]].revisions == 2 and shown[ids[0]].congestion_pct is None
    status = (await client.get("/v1/fees/status", headers=auth)).json()
    assert status["congestion"]["pct"] is None
    assert status["congestion"]["unavailable"] == {"sample": "none yet"}
    assert status["fee_model"] is None
    assert status["queue"] == {"urgent": 1, "normal": 0, "low": 1}
    assert set(status["arrivals_per_min"]) == {"TON/low", "TON/urgent"}
    assert {d["payment_id"] for d in status["decisions"]} == set(ids)


async def test_decisions_outcomes_and_savings_on_the_local_network(
    rail: Rail,
    db: Database,
    settings: Settings,
    client: httpx.AsyncClient,
    auth: dict[str, str],
) -> None:
    sampler = sampler_for(rail, db, settings)
    try:
        await sampler.sample()
    finally:
        await sampler.aclose()
    payee = rail.net.genesis.wallet("customer").address.to_str(is_bounceable=False)
    ids = [
        await create(client, auth, payee, amount, priority)
        for amount, priority in (("1", "low"), ("2", "normal"), ("3", "normal"))
    ]
    cond = await load_conditions(db, settings)
    assert cond.model_source == "estimate" and cond.congestion_pct == 0.0
    async with db.transaction() as session:
        payouts = (await session.execute(select(Payment))).scalars().all()
        decisions = await decide_for_batch(session, cond, settings, payouts)
    for d in decisions.values():
        assert d.expected_fee_nanoton is not None and d.alone_fee_nanoton is not None
        assert d.expected_fee_nanoton < d.alone_fee_nanoton  # three share one request
        assert d.divert_reason is None

    final = await rail.run_until_final(ids, client, auth)
    async with db.transaction() as session:
        for pid, p in final.items():
            payment = await session.get(Payment, pid)
            assert payment is not None and payment.completed_at is not None
            fee = int(p["attempts"][0]["fee"].replace(".", ""))  # TON, 9 decimals
            assert await record_outcome(
                session,
                pid,
                "confirmed",
                fee_paid=fee,
                queued_at=payment.created_at,
                confirmed_at=payment.completed_at,
            )
        assert not await record_outcome(session, "pay_unknown", "failed")

    status = (await client.get("/v1/fees/status", headers=auth)).json()
    assert status["congestion"]["pct"] == 0.0
    assert status["config_params"]["21"]["gas_price"] > 0
    assert status["fees"]["ton_transfer_alone"]["count"] == 1
    assert status["fees"]["ton_paid"]["count"] == 3
    assert status["fee_model"]["source"] == "estimate+history"
    assert status["queue"] == {"urgent": 0, "normal": 0, "low": 0}
    outcomes = {d["payment_id"]: d for d in status["decisions"]}
    assert set(outcomes) == set(ids)
    assert all(d["outcome"] == "confirmed" and d["confirm_ms"] >= 0 for d in outcomes.values())
    assert status["savings"]["payouts"] == 3
    paid = sum(d["fee_paid_nanoton"] for d in outcomes.values())
    assert status["savings"]["fee_paid_nanoton"] == paid

    # another account sees none of these decisions; a key without payments:read none at all
    other = {"Authorization": f"Bearer {await make_key(db, 'acct_other')}"}
    assert (await client.get("/v1/fees/status", headers=other)).json()["decisions"] == []
    writer = {"Authorization": f"Bearer {await make_key(db, 'acct_w', 'payments:write')}"}
    denied = await client.get("/v1/fees/status", headers=writer)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "scope_missing"


T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_arrival_rates_from_recent_payouts() -> None:
    # one payout every 20 s: three in the last minute, the oldest 40 s ago -> 0.05/s
    trickle = Arrivals({("TON", "normal"): 2, ("USDT", "low"): 1}, T0 - timedelta(seconds=40))
    rates = arrival_rates(trickle, T0)
    assert abs(sum(rates.values()) - 0.05) < 1e-12
    assert abs(rates[("TON", "normal")] - 2 * rates[("USDT", "low")]) < 1e-12
    # a lone payout: nothing else is expected; nothing at all: no rate
    assert arrival_rates(Arrivals({("TON", "urgent"): 1}, T0), T0) == {("TON", "urgent"): 0.0}
    assert arrival_rates(Arrivals({}, None), T0) == {}
    # a handful posted together: measured over at least 10 s, not as a stream
    together = arrival_rates(Arrivals({("TON", "low"): 5}, T0 - timedelta(milliseconds=5)), T0)
    assert together == {("TON", "low"): 0.4}
    # a burst of 1,000 over 2 s reads as the stream it is
    burst = arrival_rates(Arrivals({("TON", "low"): 1000}, T0 - timedelta(seconds=2)), T0)
    assert burst[("TON", "low")] > 99


def test_shared_fee_fit_separates_the_request_overhead_from_its_part_per_payout() -> None:
    a, b = 4_400_000, 1_100_000
    requests = [(a + b * n, n) for n in (1, 1, 1, 10, 30, 30, 254)]
    requests.append((a + b + 50_000_000, 1))  # the request that deployed the wallet
    assert shared_fee_fit(requests) == (a, b)
    assert shared_fee_fit([(a + b, 1), (a + b + 1, 1)]) is None  # one size: cannot tell
    assert shared_fee_fit([(9_000_000, 1), (5_000_000, 20)]) is None  # falling: noise
