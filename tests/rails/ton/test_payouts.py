"""TON and USDT payouts end to end on the local network, through the public API."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select
from ton_core import Address

from tests.rails.ton.rail_fixture import Rail
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.models import TonTransfer


async def test_ton_and_usdt_payouts_confirmed_with_exact_fees(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    customer = rail.net.genesis.wallet("customer").address
    # The customer wallet is not deployed yet: pay it non-bounceable, as its owner would ask.
    payee = customer.to_str(is_user_friendly=True, is_bounceable=False)
    hot = rail.ctx.wallet.address.to_str()
    ton_before = await rail.ton_balance(hot)
    cust_before = await rail.ton_balance(payee)
    usdt_before = await rail.usdt_balance(raw(customer))
    ids = []
    for amount, asset in (("1.5", "TON"), ("2.25", "TON"), ("12.5", "USDT")):
        r = await client.post(
            "/v1/payouts",
            json={"amount": amount, "asset": asset, "destination": payee},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    final = await rail.run_until_final(ids, client, auth)
    assert [p["status"] for p in final.values()] == ["succeeded"] * 3
    for p in final.values():
        [attempt] = p["attempts"]
        assert attempt["rail"] == "ton" and attempt["status"] == "confirmed"
        assert attempt["fee_asset"] == "TON" and int(attempt["fee"].replace(".", "")) > 0

    # The payee's own transactions show exactly the two TON payouts from the hot wallet
    # (its balance also pays storage fees, being uninitialized, so it is not compared).
    # Sent non-bounceable, they were final when they left the hot wallet; the payee's
    # transactions follow within a block or two.
    received: list[int] = []
    for _ in range(100):
        received = [
            t.in_msg.value
            for t in await rail.api.account_transactions(raw(customer), 0, 50)
            if t.in_msg is not None and t.in_msg.source == rail.ctx.wallet_raw
        ]
        if len(received) >= 2:
            break
        await asyncio.sleep(0.05)
    assert sorted(received) == [1_500_000_000, 2_250_000_000]
    assert cust_before > 0
    assert await rail.usdt_balance(raw(customer)) - usdt_before == 12_500_000
    # Exactness: what left the hot wallet is the principal plus the fees we booked.
    async with db.transaction() as session:
        fees = (await session.execute(select(TonTransfer.fee))).scalars().all()
        traces = {
            asset: trace
            for asset, trace in (
                await session.execute(select(TonTransfer.asset, TonTransfer.trace))
            ).all()
        }
        # The USDT payout was settled on the excess its recipient's jetton wallet sent back.
        assert traces["USDT"]["recipient_jetton_wallet"] and traces["USDT"]["excess_tx"]
        assert traces["TON"]["delivery"] == "non_bounceable"
        report = await check_books(session)
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
        assert await balance(session, books.PAYOUTS_PAYABLE, "USDT") == 0
    assert report.ok
    spent = ton_before - await rail.ton_balance(hot)
    assert spent == 3_750_000_000 + sum(f or 0 for f in fees)


async def test_bounced_payout_fails_with_money_back_in_the_ledger(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    missing = Address("0:" + "ab" * 32).to_str(is_user_friendly=True, is_bounceable=True)
    hot = rail.ctx.wallet.address.to_str()
    before = await rail.ton_balance(hot)
    r = await client.post(
        "/v1/payouts", json={"amount": "3", "asset": "TON", "destination": missing}, headers=auth
    )
    pid = r.json()["id"]
    final = await rail.run_until_final([pid], client, auth)
    p = final[pid]
    assert p["status"] == "failed" and p["failure_code"] == "ton_bounced"
    assert p["attempts"][0]["status"] == "failed" and p["attempts"][0]["error_code"] == "bounced"
    async with db.transaction() as session:
        fee = (await session.execute(select(TonTransfer.fee))).scalar_one()
        report = await check_books(session)
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
        assert await balance(session, books.merchant_account("acct_test"), "TON") == 0
        assert await balance(session, books.HOT_WALLET, "TON") == -fee
    assert report.ok
    # Only fees are gone: the 3 TON came back.
    assert before - await rail.ton_balance(hot) == fee
    assert 0 < fee < 100_000_000
