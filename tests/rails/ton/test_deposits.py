"""Invoices paid on the local network: credited exactly once, fakes and mismatches refused."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from ton_core import Address, begin_cell
from tonutils.contracts import JettonTransferBuilder, TONTransferBuilder, WalletV5R1

from tests.rails.ton.rail_fixture import Rail, settled
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.localnet.genesis import TON
from tonrail.monitoring.jobs import evaluate_alerts
from tonrail.monitoring.models import Alert
from tonrail.processing import deposits
from tonrail.processing.deposits import watch_deposits
from tonrail.rails.ton.models import TonDeposit
from tonrail.settings import Settings

USDT = 10**6


async def invoice(client: httpx.AsyncClient, auth: dict[str, str], amount: str, asset: str) -> dict:
    r = await client.post("/v1/invoices", json={"amount": amount, "asset": asset}, headers=auth)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def drain(rail: Rail, until: int, rounds: int = 1200) -> None:
    """Run the watcher until `until` deposits exist (and the chain has settled)."""
    for _ in range(rounds):
        await watch_deposits(rail.ctx)
        async with rail.ctx.db.transaction() as session:
            n = len((await session.execute(select(TonDeposit.id))).all())
        if n >= until:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {n} deposits after {rounds} rounds")


async def test_ton_and_usdt_invoices_and_impostors(
    rail: Rail,
    payer: WalletV5R1,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
) -> None:
    hot = rail.ctx.wallet.address
    ton_inv = await invoice(client, auth, "2", "TON")
    usdt_inv = await invoice(client, auth, "10", "USDT")
    other = await invoice(client, auth, "5", "USDT")
    # 1. TON with the reference as comment: credited.
    await payer.transfer(hot, 2 * TON, body=f"order 1 {ton_inv['reference']}", bounce=False)
    await settled(payer, 0)
    # 2. USDT with the reference in the forward payload: credited.
    await payer.transfer_message(
        JettonTransferBuilder(
            destination=hot,
            jetton_amount=10 * USDT,
            jetton_master_address=rail.net.genesis.usdt_master,
            forward_amount=1,
            forward_payload=usdt_inv["reference"],
            bounce=True,
        )
    )
    await settled(payer, 1)
    # 3. TON carrying a USDT invoice's reference: not a USDT payment.
    await payer.transfer(hot, 1 * TON, body=other["reference"], bounce=False)
    await settled(payer, 2)
    # 4. A forged transfer_notification (not from our jetton wallet) claiming 5 USDT.
    forged = (
        begin_cell()
        .store_uint(0x7362D09C, 32)
        .store_uint(0, 64)
        .store_coins(5 * USDT)
        .store_address(payer.address)
        .store_bit(0)
        .store_uint(0, 32)
        .store_snake_string(other["reference"])
        .end_cell()
    )
    await payer.transfer_message(
        TONTransferBuilder(destination=hot, amount=TON // 10, body=forged, bounce=False)
    )
    # The genesis TON funding is the wallet's first deposit (unmatched), then our 4.
    await drain(rail, 5)

    got = {
        i["id"]: (await client.get(f"/v1/invoices/{i['id']}", headers=auth)).json()
        for i in (ton_inv, usdt_inv, other)
    }
    assert got[ton_inv["id"]]["status"] == "succeeded"
    assert got[usdt_inv["id"]]["status"] == "succeeded"
    assert got[other["id"]]["status"] == "awaiting_payment"
    async with db.transaction() as session:
        deps = (await session.execute(select(TonDeposit).order_by(TonDeposit.lt))).scalars().all()
        by_ref = {(d.asset, d.amount): d for d in deps}
        assert by_ref[("TON", 2 * TON)].status == "credited"
        assert by_ref[("USDT", 10 * USDT)].status == "credited"
        assert by_ref[("TON", 1 * TON)].status == "unmatched"
        assert "for a USDT invoice" in (by_ref[("TON", 1 * TON)].resolution or "")
        fake = by_ref[("TON", TON // 10)]
        assert fake.status == "unmatched" and "not ours" in (fake.resolution or "")
        assert not any(d.asset == "USDT" and d.amount == 5 * USDT for d in deps)
        report = await check_books(session)
        ledger_ton = await balance(session, books.HOT_WALLET, "TON")
        ledger_usdt = await balance(session, books.HOT_WALLET, "USDT")
        merchant_ton = await balance(session, books.merchant_account("acct_test"), "TON")
    assert report.ok
    assert merchant_ton == -2 * TON
    # Every transaction of the hot wallet is booked: the ledger equals the chain.
    assert ledger_ton == await rail.ton_balance(hot.to_str())
    # Genesis minted USDT straight into our jetton wallet, with no notification to the
    # wallet: no watcher can see that, so it is the one difference the books show.
    minted = int(rail.net.genesis.wallet("hot").to_json()["funded_usdt"])
    assert ledger_usdt == await rail.usdt_balance(Address(hot).to_str(False)) - minted


async def test_watcher_is_idempotent_and_resumes(
    rail: Rail,
    payer: WalletV5R1,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
) -> None:
    inv = await invoice(client, auth, "1", "TON")
    await payer.transfer(rail.ctx.wallet.address, TON, body=inv["reference"], bounce=False)
    await drain(rail, 2)
    # Replay the same page as a restarted worker would after losing its cursor update.
    async with db.transaction() as session:
        from tonrail.rails.ton.models import TonWalletCursor

        cursor = await session.get(TonWalletCursor, rail.ctx.wallet_raw)
        assert cursor is not None
        cursor.last_lt = 0
    await watch_deposits(rail.ctx)
    async with db.transaction() as session:
        deps = (await session.execute(select(TonDeposit))).scalars().all()
        report = await check_books(session)
    assert len(deps) == 2 and report.ok
    assert [d.status for d in deps if d.payment_id == inv["id"]] == ["credited"]


async def test_reconciliation_reports_what_the_books_miss(
    rail: Rail,
    payer: WalletV5R1,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
) -> None:
    from tonrail.events.models import OutboxEvent
    from tonrail.ledger.service import post
    from tonrail.processing.reconcile import reconcile

    inv = await invoice(client, auth, "3", "TON")
    await payer.transfer(rail.ctx.wallet.address, 3 * TON, body=inv["reference"], bounce=False)
    await settled(payer, 0)
    assert not (await reconcile(rail.ctx)).checked  # the watcher has not caught up yet
    await drain(rail, 2)
    minted = int(rail.net.genesis.wallet("hot").to_json()["funded_usdt"])
    result = await reconcile(rail.ctx)
    assert result.checked and result.differences == {"USDT": minted}
    # The operator books what genesis minted unseen; then the books agree with the chain.
    from tonrail.processing.resolutions import book_opening_balance

    async with db.transaction() as session:
        await book_opening_balance(session, "USDT", minted, "admin:test", "genesis mint")
    assert (await reconcile(rail.ctx)).differences == {}
    # Book something the chain never did: the difference shows, and is reported once.
    async with db.transaction() as session:
        await post(session, "test.bogus", books.forwarded_ton_received(5))
    for _ in range(2):
        result = await reconcile(rail.ctx)
    assert result.differences == {"TON": -5}
    async with db.transaction() as session:
        events = (
            (
                await session.execute(
                    select(OutboxEvent).where(OutboxEvent.type == "ton.reconciliation.mismatch")
                )
            )
            .scalars()
            .all()
        )
    assert [e.payload["differences"] for e in events] == [
        {"USDT": minted},
        {"TON": -5},
    ]
    # The difference is a critical alert naming it, through the monitoring machinery ...
    monitoring = Monitoring(db, rail.ctx.settings)
    await evaluate_alerts(monitoring)
    alert = await _alert(db, "books_mismatch")
    assert alert is not None and (alert.status, alert.severity) == ("open", "critical")
    assert alert.details == {"differences": {"TON": -5}} and "TON -5" in alert.summary
    # ... that resolves once the books match the chain again.
    async with db.transaction() as session:
        await post(
            session,
            "test.correction",
            [
                books.Line(books.FORWARDED_TON_INCOME, "TON", 5),
                books.Line(books.HOT_WALLET, "TON", -5),
            ],
        )
    assert (await reconcile(rail.ctx)).differences == {}
    await evaluate_alerts(monitoring)
    alert = await _alert(db, "books_mismatch")
    assert alert is not None and alert.status == "resolved"


@dataclass
class Monitoring:
    db: Database
    settings: Settings
    worker_id: str = "w-test"


async def _alert(db: Database, dedup_key: str) -> Alert | None:
    async with db.transaction() as session:
        return (
            await session.execute(select(Alert).where(Alert.dedup_key == dedup_key))
        ).scalar_one_or_none()


ROTATION_SWITCHED_ELSEWHERE = """
import asyncio, sys
from tonrail import clock
from tonrail.db import Database
from tonrail.rails.ton.models import TonWalletRotation

async def main() -> None:
    db = Database(sys.argv[1])
    async with db.transaction() as session:
        now = clock.now()
        session.add(TonWalletRotation(
            id="rot-elsewhere", state="switched", open_marker=None, old_wallet=sys.argv[2],
            old_public_key="00" * 32, new_wallet=sys.argv[3], new_public_key="11" * 32,
            new_key_file="/nowhere", actor="test", created_at=now, updated_at=now,
        ))
    await db.dispose()

asyncio.run(main())
"""


async def test_a_round_asks_the_rotations_only_when_a_switch_may_have_happened(
    rail: Rail,
    payer: WalletV5R1,
    db: Database,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watcher used to ask `ton_wallet_rotations` every round (the retired wallets) and
    again per wallet with transactions (whose account a deposit is booked on), with no
    rotation ever. Now the retired wallets are read once, then again only when the wallet
    this worker signs with changed or after RETIRED_WALLETS_REREAD_S, and the account comes
    from the cursor row the watcher locks anyway. A rotation switched by another process
    (here: a subprocess writing the row) is seen within that bound."""
    monkeypatch.setattr(deposits, "RETIRED_WALLETS_REREAD_S", 2.0)
    statements: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    def rotation_queries() -> int:
        return sum("ton_wallet_rotations" in s for s in statements)

    engine = db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        await watch_deposits(rail.ctx)  # the first round reads the retired wallets (none)
        assert rotation_queries() >= 1
        statements.clear()
        for _ in range(3):
            await watch_deposits(rail.ctx)
        assert rotation_queries() == 0  # quiet rounds: no rotation query (was one a round)
        # A round that books a deposit: its account is read from the locked cursor row.
        await payer.transfer(rail.ctx.wallet.address, TON // 2, body="no invoice", bounce=False)
        await settled(payer, 0)
        await drain(rail, 1)
        async with db.transaction() as session:
            amounts = (await session.execute(select(TonDeposit.amount))).scalars().all()
        assert TON // 2 in amounts
        assert rotation_queries() == 0  # was one more a round with transactions

        # Another process switches a rotation that retired some wallet.
        old = "0:" + "ab" * 32
        new = "0:" + "cd" * 32
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", ROTATION_SWITCHED_ELSEWHERE, database_url, old.upper(), new
        )
        assert await proc.wait() == 0
        statements.clear()
        seen_after = None
        started = time.monotonic()
        while time.monotonic() - started < 10:
            await watch_deposits(rail.ctx)
            if old.upper() in rail.ctx.retired_wallets:
                seen_after = time.monotonic() - started
                break
            await asyncio.sleep(0.2)
        assert seen_after is not None and seen_after <= 2.0 + 1.0  # the bound, and one round
        assert rotation_queries() == 1  # one re-read, when the bound was reached
        assert old.upper() in await deposits.retired_wallets(rail.ctx)
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
