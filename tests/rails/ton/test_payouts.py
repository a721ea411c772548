"""TON and USDT payouts end to end on the local network, through the public API."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select, update
from ton_core import Address

from tests.rails.ton.rail_fixture import Rail
from tests.rails.ton.test_deposits import Monitoring
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.monitoring.jobs import evaluate_alerts
from tonrail.monitoring.models import Alert
from tonrail.payments.models import Payment
from tonrail.processing.deposits import watch_deposits
from tonrail.processing.reconcile import reconcile
from tonrail.processing.resolutions import book_opening_balance
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


async def _books_against_chain(rail: Rail) -> dict[str, int]:
    """Reconcile at the next quiet point (the deposit watcher caught up): chain minus books."""
    for _ in range(600):
        await watch_deposits(rail.ctx)
        result = await reconcile(rail.ctx)
        if result.checked and result.quiet:  # every asset compared (USDT only when quiet)
            return result.differences
        await asyncio.sleep(0.05)
    raise AssertionError("the books never reached a quiet point")


async def _opening_balances(rail: Rail, db: Database) -> None:
    """Book what genesis gave the hot wallet unseen (the minted USDT), as an operator would."""
    async with db.transaction() as session:
        for asset, amount in (await _books_against_chain(rail)).items():
            await book_opening_balance(session, asset, amount, "admin:test", "genesis")
    assert await _books_against_chain(rail) == {}


async def _store_destination(db: Database, payment_id: str, destination: str) -> None:
    """A payout as an older version stored it, before the API refused such addresses."""
    async with db.transaction() as session:
        await session.execute(
            update(Payment).where(Payment.id == payment_id).values(counterparty=destination)
        )


def _raw(wc: int, hash_hex: str) -> str:
    return f"{wc}:{hash_hex}"


def _friendly(wc: int, byte: str, bounceable: bool) -> str:
    address = Address(f"{wc}:{byte * 32}")
    return address.to_str(is_user_friendly=True, is_bounceable=bounceable)


# Issue 17's mix: malformed raw destinations, bounces from uninitialised addresses, masterchain
# payees, USDT to a malformed address and to the masterchain. (amount, asset, destination,
# the payout's end: status and failure code.)
HARD_DESTINATIONS = [
    ("0.5", "TON", _raw(0, "ab" * 31), ("failed", "ton_destination_invalid")),
    ("0.5", "TON", _raw(0, "cd" * 33), ("failed", "ton_destination_invalid")),
    ("0.5", "TON", _raw(0, "5e" * 34), ("failed", "ton_destination_invalid")),
    ("0.7", "TON", _friendly(0, "12", True), ("failed", "ton_bounced")),
    ("0.8", "TON", _raw(-1, "34" * 32), ("failed", "ton_bounced")),
    ("0.9", "TON", _friendly(-1, "56", False), ("succeeded", None)),
    ("0.6", "TON", _friendly(-1, "bc", True), ("failed", "ton_bounced")),
    ("1.5", "USDT", _raw(0, "ef" * 31), ("failed", "ton_destination_invalid")),
    ("1.8", "USDT", _raw(0, "de" * 33), ("failed", "ton_destination_invalid")),
    ("1.6", "USDT", _raw(-1, "78" * 32), ("failed", "ton_destination_invalid")),
    ("1.9", "USDT", _friendly(-1, "f1", True), ("failed", "ton_destination_invalid")),
    ("1.7", "USDT", _raw(0, "9a" * 32), ("succeeded", None)),
    ("1.1", "USDT", _friendly(0, "a2", False), ("succeeded", None)),
]


async def test_books_equal_the_chain_after_a_mix_of_hard_destinations(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    await _opening_balances(rail, db)
    hot = rail.ctx.wallet.address.to_str()
    before = await rail.ton_balance(hot)
    ids = []
    for amount, asset, destination, (_, code) in HARD_DESTINATIONS:
        refused = code == "ton_destination_invalid"
        r = await client.post(
            "/v1/payouts",
            json={
                "amount": amount,
                "asset": asset,
                "destination": _raw(0, "77" * 32) if refused else destination,
            },
            headers=auth,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        if refused:  # stored before the API checked addresses this closely
            await _store_destination(db, ids[-1], destination)
    final = await rail.run_until_final(ids, client, auth)
    ends = [(final[i]["status"], final[i]["failure_code"]) for i in ids]
    assert ends == [end for *_, end in HARD_DESTINATIONS]
    # A refused payout never had a message: no attempt, nothing spent, its money released.
    for i, (*_, (_, code)) in zip(ids, HARD_DESTINATIONS, strict=True):
        if code == "ton_destination_invalid":
            assert final[i]["attempts"] == []
    assert await _books_against_chain(rail) == {}
    async with db.transaction() as session:
        fees = sum((await session.execute(select(TonTransfer.fee))).scalars().all())
        report = await check_books(session)
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
        assert await balance(session, books.PAYOUTS_PAYABLE, "USDT") == 0
        assert await balance(session, books.STRAY_OUTFLOW, "TON") == 0
    assert report.ok
    # To the nanoton: the hot wallet spent the TON principal it paid plus every fee booked.
    paid_ton = sum(
        final[i]["amount_minor"]
        for i in ids
        if final[i]["asset"] == "TON" and final[i]["status"] == "succeeded"
    )
    assert before - await rail.ton_balance(hot) == paid_ton + fees


async def test_a_message_the_chain_read_otherwise_is_booked_and_reported(
    rail: Rail,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request signed before destinations were checked (a 33-byte hash): the chain reads
    another address and value from the action. What left is booked, the books keep equal to
    the chain, and `ton.stray_message` says what happened."""
    import tonrail.rails.ton.highload as highload
    import tonrail.rails.ton.rail as ton_rail

    await _opening_balances(rail, db)
    # As a version before the address checks built it: raw, bounceable, 33 bytes as given.
    monkeypatch.setattr(highload, "destination_refusal", lambda *_: None)
    monkeypatch.setattr(ton_rail.HighloadRail, "refusal", lambda *_: None)
    monkeypatch.setattr(ton_rail, "payout_bounce", lambda *_: True)
    r = await client.post(
        "/v1/payouts",
        json={"amount": "0.5", "asset": "TON", "destination": _raw(0, "77" * 32)},
        headers=auth,
    )
    pid = r.json()["id"]
    await _store_destination(db, pid, _raw(0, "5e" * 33))
    final = await rail.run_until_final([pid], client, auth)
    assert final[pid]["failure_code"] == "ton_not_sent"
    assert await _books_against_chain(rail) == {}
    async with db.transaction() as session:
        lost = await balance(session, books.STRAY_OUTFLOW, "TON")
        [event] = (
            (
                await session.execute(
                    select(OutboxEvent).where(OutboxEvent.type == "ton.stray_message")
                )
            )
            .scalars()
            .all()
        )
        assert (await check_books(session)).ok
    # The chain read far more than the payout's 0.5 TON from the bits after the hash; the
    # message bounced from that uninitialised address, so what was lost is its fees.
    assert event.payload["value"] > 500_000_000 and event.payload["outcome"] == "bounced"
    assert event.payload["cost"] == lost > 0
    # A critical alert says so at once.
    await evaluate_alerts(Monitoring(db, rail.ctx.settings))
    async with db.transaction() as session:
        alert = (
            await session.execute(select(Alert).where(Alert.dedup_key == "stray_messages"))
        ).scalar_one()
    assert (alert.status, alert.severity) == ("open", "critical")
    assert event.payload["destination"] == "0:" + "5E" * 32
