"""Fallback end to end: a TON payout that TON cannot pay (it bounces) is paid on Stripe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from ton_core import Address

from tests.conftest import make_key
from tests.rails.conftest import StripeExtras, books_ok
from tests.rails.ton.rail_fixture import Rail
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.monitoring import signals
from tonrail.processing.backup_loop import BackupContext, backup_round
from tonrail.processing.ton_loop import payout_round
from tonrail.rails.registry import build_backup_rails, enabled_rails, routing_policy
from tonrail.settings import Settings


@pytest.fixture
async def wired(rail: Rail, rail_settings: Settings, db: Database) -> AsyncIterator[Any]:
    """The TON rail of `rail`, with the backup rails of `rail_settings` behind the router."""
    settings = rail_settings.model_copy(
        update={
            "ton_max_attempts": 2,
            "ton_retry_backoff_s": 0,
            "ton_resend_seconds": 1,
            "fees_window_urgent_ms": 0,
            "fees_window_normal_ms": 0,
            "fees_window_low_ms": 0,
        }
    )
    backup = build_backup_rails(settings)
    rail.ctx.settings = settings
    rail.ctx.backup, rail.ctx.routing = backup, routing_policy(settings)
    rail.ctx.enabled = enabled_rails(settings)
    yield BackupContext(db, settings, rail.ctx.payments, backup, routing_policy(settings), "w-b")


async def test_ton_failure_after_retries_falls_back_to_stripe(
    rail: Rail,
    wired: BackupContext,
    db: Database,
    rail_settings: Settings,
    stripe_extras: tuple[StripeExtras, str],
) -> None:
    app = create_app(rail_settings, db)
    key = await make_key(db)
    auth = {"Authorization": f"Bearer {key}"}
    # A bounceable address with no account behind it: every TON attempt bounces.
    nowhere = Address("0:" + "cd" * 32).to_str(is_user_friendly=True, is_bounceable=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        r = await client.post(
            "/v1/payouts",
            headers=auth,
            json={
                "amount": "20",
                "asset": "TON",
                "destination": nowhere,
                "metadata": {"stripe_account": "acct_1PayeeConnected"},
            },
        )
        pid = r.json()["id"]
        for _ in range(600):
            await payout_round(rail.ctx)
            await backup_round(wired)
            p = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
            if p["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.05)
    assert p["status"] == "succeeded", p
    rails = [(a["rail"], a["status"]) for a in p["attempts"]]
    # A bounce is not retried on TON (it would bounce again): straight to the router.
    assert rails == [("ton", "failed"), ("stripe", "confirmed")]
    assert p["attempts"][0]["error_code"] == "bounced"
    # Monitoring heard from the provider (provider error rates, docs/monitoring.md).
    _, counters, _ = signals.take_buffer()
    stripe_ok = [
        n
        for (name, labels), n in counters.items()
        if name == "provider_requests" and "provider=stripe" in labels and "outcome=ok" in labels
    ]
    assert stripe_ok and sum(stripe_ok) >= 2  # the submit and at least one poll
    assert p["attempts"][1]["reason"] == "ton_failed_after_retries"
    extras, _ = stripe_extras
    [transfer] = [t for t in extras.transfers.values() if t["transfer_group"] == pid]
    assert (transfer["amount"], transfer["currency"]) == (10_000, "usd")  # 20 TON at 5 USD
    balances = await books_ok(db)
    assert balances.get((books.PAYOUTS_PAYABLE, "TON"), 0) == 0
    # The bounce cost only network fees: the 20 TON came back.
    assert 0 < balances[(books.NETWORK_FEES, "TON")] < 200_000_000


async def test_a_congested_network_sends_payouts_to_stripe(
    rail: Rail,
    wired: BackupContext,
    db: Database,
    rail_settings: Settings,
    stripe_extras: tuple[StripeExtras, str],
) -> None:
    """Congest the local network, let the fee optimizer's sampler see it, and a new payout
    goes to Stripe (`ton_congested`); once the network is calm again, TON takes payouts."""
    from tests.fees.test_sampler import faults, sampler_for

    app = create_app(rail_settings, db)
    auth = {"Authorization": f"Bearer {await make_key(db)}"}
    payee = rail.net.genesis.wallet("customer").address.to_str(
        is_user_friendly=True, is_bounceable=False
    )
    body = {
        "amount": "20",
        "asset": "TON",
        "destination": payee,
        "metadata": {"stripe_account": "acct_1PayeeConnected"},
    }
    # Smoothing off, a short latency scale and window: one slow message reads as congestion.
    sampler = sampler_for(
        rail,
        db,
        rail_settings,
        fees_latency_ok_ms=500,
        fees_latency_full_ms=2_000,
        fees_congestion_tau_seconds=0.001,
        fees_latency_window_seconds=3,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:

        async def drive(pid: str) -> dict[str, Any]:
            for _ in range(600):
                await payout_round(rail.ctx)
                await backup_round(wired)
                p = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
                if p["status"] in ("succeeded", "failed"):
                    return dict(p)
                await asyncio.sleep(0.05)
            raise AssertionError(p)

        await faults(rail, max_tx_per_block=1, inclusion_delay_ms=3_000)
        first = await drive(
            (await client.post("/v1/payouts", json=body, headers=auth)).json()["id"]
        )
        assert [a["rail"] for a in first["attempts"]] == ["ton"]  # before the sampler knew
        congested = await sampler.sample()
        assert congested.congestion_bp is not None and congested.congestion_bp >= 9_000
        second = await drive(
            (await client.post("/v1/payouts", json=body, headers=auth)).json()["id"]
        )
        assert second["status"] == "succeeded"
        assert [(a["rail"], a["reason"]) for a in second["attempts"]] == [
            ("stripe", "ton_congested")
        ]
        await faults(rail, max_tx_per_block=0, inclusion_delay_ms=0)
        await asyncio.sleep(3.5)  # the slow messages leave the latency window
        await drive(
            (await client.post("/v1/payouts", json={**body, "amount": "1"}, headers=auth)).json()[
                "id"
            ]
        )  # a fast one, measured
        calm = await sampler.sample()
        assert calm.congestion_bp is not None and calm.congestion_bp < 7_500
        third = await drive(
            (await client.post("/v1/payouts", json=body, headers=auth)).json()["id"]
        )
        assert [a["rail"] for a in third["attempts"]] == ["ton"]
    await sampler.aclose()
    await books_ok(db)


async def test_a_payout_whose_ton_fee_is_too_dear_is_diverted(
    rail: Rail,
    wired: BackupContext,
    db: Database,
    rail_settings: Settings,
    stripe_extras: tuple[StripeExtras, str],
) -> None:
    """The fee optimizer prices a tiny payout on TON above FEES_MAX_FEE_SHARE_BP of its value:
    the router diverts it to Stripe (`fee_diverted`); a large one stays on TON."""
    from tests.fees.test_sampler import sampler_for

    app = create_app(rail_settings, db)
    auth = {"Authorization": f"Bearer {await make_key(db)}"}
    payee = rail.net.genesis.wallet("customer").address.to_str(
        is_user_friendly=True, is_bounceable=False
    )
    sampler = sampler_for(rail, db, rail_settings)
    fee = (await sampler.sample()).fee_ton_single
    assert fee is not None  # the optimizer knows fees
    await sampler.aclose()
    # Tiny: worth the network's own single-transfer fee (read from the chain's config, never
    # hard-coded), so the fee is far above the share limit whatever the config's prices.
    tiny_amount = f"{fee // 10**9}.{fee % 10**9:09d}"
    meta = {"stripe_account": "acct_1PayeeConnected"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        ids = []
        for amount in (tiny_amount, "20"):
            r = await client.post(
                "/v1/payouts",
                headers=auth,
                json={"amount": amount, "asset": "TON", "destination": payee, "metadata": meta},
            )
            ids.append(r.json()["id"])
        for _ in range(600):
            await payout_round(rail.ctx)
            await backup_round(wired)
            got = [(await client.get(f"/v1/payouts/{i}", headers=auth)).json() for i in ids]
            if all(p["status"] in ("succeeded", "failed") for p in got):
                break
            await asyncio.sleep(0.05)
    tiny, large = got
    assert [(a["rail"], a["reason"]) for a in tiny["attempts"]] == [("stripe", "fee_diverted")]
    assert tiny["fee_decision"]["divert_reason"] == "fee_above_amount_share"
    assert tiny["status"] == "succeeded"
    assert [a["rail"] for a in large["attempts"]] == ["ton"] and large["status"] == "succeeded"
    await books_ok(db)


async def test_an_account_with_a_balance_pays_its_payouts_and_their_fees(
    rail: Rail,
    wired: BackupContext,
    db: Database,
    rail_settings: Settings,
    stripe_extras: tuple[StripeExtras, str],
) -> None:
    from sqlalchemy import select

    from tonrail.balances.service import top_up
    from tonrail.ledger.models import AccountBalance

    # No house account: acct_test pays out only what it holds, fees included.
    enforced = rail_settings.model_copy(update={"house_account_id": ""})
    rail.ctx.settings = rail.ctx.settings.model_copy(update={"house_account_id": ""})
    rail.ctx.payments.settings = enforced
    async with db.transaction() as session:
        await top_up(session, "acct_test", "21", "TON", "test funds", "admin:test")
    auth = {"Authorization": f"Bearer {await make_key(db)}"}
    nowhere = Address("0:" + "cd" * 32).to_str(is_user_friendly=True, is_bounceable=True)
    body = {
        "amount": "20",
        "asset": "TON",
        "destination": nowhere,
        "metadata": {"stripe_account": "acct_1PayeeConnected"},
    }
    transport = httpx.ASGITransport(app=create_app(enforced, db))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        pid = (await client.post("/v1/payouts", headers=auth, json=body)).json()["id"]
        too_much = await client.post("/v1/payouts", headers=auth, json=body)
        assert too_much.json()["error"]["code"] == "insufficient_balance"
        for _ in range(600):
            await payout_round(rail.ctx)
            await backup_round(wired)
            p = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
            if p["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.05)
        shown = {
            b["asset"]: b for b in (await client.get("/v1/balance", headers=auth)).json()["data"]
        }
    assert p["status"] == "succeeded", p
    balances = await books_ok(db)
    ton_fee = balances[(books.NETWORK_FEES, "TON")]
    usd_fee = balances[(books.PROVIDER_FEES, "USD")]
    assert ton_fee > 0 and usd_fee > 0
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(AccountBalance.asset, AccountBalance.available).where(
                    AccountBalance.account_id == "acct_test"
                )
            )
        ).all()
    # 21 TON less the 20 paid and the bounced attempt's network fee; the Stripe fee in USD.
    assert dict(rows) == {"TON": 10**9 - ton_fee, "USD": -usd_fee}
    assert balances[(books.merchant_account("acct_test"), "TON")] == -(10**9 - ton_fee)
    assert balances[(books.FEES_CHARGED, "TON")] == -ton_fee
    assert shown["TON"]["pending"] == "0.000000000"
