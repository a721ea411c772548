"""The treasury's books against the chain, on the local network and both databases: after its
funding is booked, TON and USDT payouts from the treasury and a hot wallet top-up leave
`asset:treasury` equal to what the multisig and its open orders hold (to the nanoton); TON sent
to the treasury outside tonrail is a difference, an event and a critical alert, and booking
it (the operator's `tonrail treasury book-funding`) closes the alert."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from ton_core import Address

from tests.conftest import make_key
from tests.rails.ton.rail_fixture import Rail, rail
from tests.treasury.test_payouts import _config, _rounds_until, settings, signers
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.localnet.genesis import TON, USDT
from tonrail.monitoring.jobs import evaluate_alerts
from tonrail.monitoring.models import Alert
from tonrail.processing.reconcile import Reconciliation
from tonrail.processing.treasury_reconcile import (
    book_treasury_funding,
    reconcile_treasury,
    watch_treasury,
)
from tonrail.rails.ton.api import jetton_balance, jetton_wallet_of
from tonrail.settings import Settings
from tonrail.treasury.models import OrderPurpose, OrderStatus, TreasuryOrder
from tonrail.treasury.reader import order_state
from tonrail.treasury.service import approve, deploy, wait_for
from tonrail.treasury.wallets import SignerWallet

__all__ = ["rail", "settings", "signers"]  # fixtures used here


@dataclass
class Monitoring:
    db: Database
    settings: Settings
    worker_id: str = "w-test"


async def _quiet_check(on: Rail, within: float = 60) -> Reconciliation:
    """Reconcile until the check runs at a quiet point (blocks still landing: not yet)."""
    deadline = time.monotonic() + within
    while True:
        result = await reconcile_treasury(on.ctx)
        if result.checked:
            return result
        assert time.monotonic() < deadline, "the treasury never reached a quiet point"
        await asyncio.sleep(0.2)


async def _alert(db: Database) -> Alert | None:
    async with db.transaction() as session:
        return (
            await session.execute(
                select(Alert)
                .where(Alert.dedup_key == "treasury_books_mismatch")
                .order_by(Alert.opened_at.desc())
                .limit(1)
            )
        ).scalar_one_or_none()


async def _orders(db: Database) -> list[TreasuryOrder]:
    async with db.transaction() as session:
        return list((await session.execute(select(TreasuryOrder))).scalars())


async def _approve_all(on: Rail, signers: list[SignerWallet], db: Database) -> None:
    """Signers 0 and 2 approve every proposed order not executed yet."""
    now = int(time.time())
    for o in await _orders(db):
        if o.status != OrderStatus.PROPOSED:
            continue
        for index in (0, 2):
            if (await order_state(on.api, o.order_address)).approved_by(index):
                continue
            await approve(on.api, signers[index], o.order_address, now=now)

            async def counted(order: str = o.order_address, i: int = index) -> bool:
                return (await order_state(on.api, order)).approved_by(i)

            assert await wait_for(counted, timeout_s=30, poll_s=0.05)


@pytest.mark.usefixtures("settings")
async def test_treasury_books_match_the_chain_and_a_difference_alerts(
    rail: Rail,
    signers: list[SignerWallet],
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
) -> None:
    operator = signers[3]
    treasury = await deploy(operator, _config())
    rail.net.chain.faucet(treasury, 100 * TON)
    rail.net.chain.faucet(treasury, 1_000 * USDT, "USDT")
    master = rail.net.genesis.usdt_master.to_str()
    treasury_jettons = await jetton_wallet_of(rail.api, master, treasury)

    async def funded() -> bool:
        return await jetton_balance(rail.api, treasury_jettons) == 1_000 * USDT

    assert await wait_for(funded, timeout_s=20, poll_s=0.05)

    # The deploy's 0.5 TON, the faucet's 100 TON and 1000 USDT came from outside tonrail:
    # exactly those are the difference (the fees of receiving them are booked).
    result = await _quiet_check(rail)
    assert result.differences == {"TON": 100 * TON + TON // 2, "USDT": 1_000 * USDT}
    monitoring = Monitoring(db, rail.ctx.settings)
    await evaluate_alerts(monitoring)
    alert = await _alert(db)
    assert alert is not None and (alert.status, alert.severity) == ("open", "critical")
    assert alert.details == {"differences": {"TON": 100_500_000_000, "USDT": 1_000_000_000}}
    assert "treasury books differ from the chain" in alert.summary
    async with db.transaction() as session:
        await book_treasury_funding(session, "TON", 100 * TON + TON // 2, "admin:t", "funding")
        await book_treasury_funding(session, "USDT", 1_000 * USDT, "admin:t", "funding")
    assert (await _quiet_check(rail)).differences == {}
    await evaluate_alerts(monitoring)
    alert = await _alert(db)
    assert alert is not None and alert.status == "resolved"

    # A TON and a USDT payout from the treasury, and a TON top-up of the hot wallet.
    payee = Address((0, b"\x55" * 32))
    payee_text = payee.to_str(is_user_friendly=True, is_bounceable=False)
    ids = []
    for amount, asset in (("2.5", "TON"), ("12.345678", "USDT")):
        r = await client.post(
            "/v1/payouts",
            json={"amount": amount, "asset": asset, "destination": payee_text},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        for _ in range(2):
            h = {"Authorization": f"Bearer {await make_key(db, 'acct_test', 'payouts:approve')}"}
            assert (await client.post(f"/v1/payouts/{pid}/approve", headers=h)).status_code == 200
        ids.append(pid)
    hot_ton = await rail.ton_balance(rail.ctx.wallet_raw)
    rail.ctx.settings = rail.ctx.settings.model_copy(
        update={"alert_hot_wallet_floor_ton": hot_ton + 100 * TON, "treasury_topup_ton": 3 * TON}
    )

    async def three_proposed() -> bool:
        orders = await _orders(db)
        return len(orders) == 3 and all(o.status == OrderStatus.PROPOSED for o in orders)

    await _rounds_until(rail, three_proposed)
    # No more top-ups: the test's floor was for one.
    rail.ctx.settings = rail.ctx.settings.model_copy(update={"alert_hot_wallet_floor_ton": 0})
    # Proposed, not approved: the orders hold their TON, and the books say so.
    assert (await _quiet_check(rail)).differences == {}
    await _approve_all(rail, signers, db)

    async def all_confirmed() -> bool:
        return {o.status for o in await _orders(db)} == {OrderStatus.CONFIRMED}

    await _rounds_until(rail, all_confirmed, within=90)
    # Two workers reading the treasury's transactions at once book each of them once.
    await asyncio.gather(watch_treasury(rail.ctx), watch_treasury(rail.ctx))
    assert {o.purpose for o in await _orders(db)} == {OrderPurpose.PAYOUT, OrderPurpose.TOPUP}
    for pid in ids:
        assert (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()["status"] == (
            "succeeded"
        )
    assert (await _quiet_check(rail)).differences == {}
    async with db.transaction() as session:
        assert (await check_books(session)).ok
        treasury_usdt = await balance(session, books.TREASURY, "USDT")
    assert treasury_usdt == 1_000 * USDT - 12_345_678
    assert await jetton_balance(rail.api, treasury_jettons) == treasury_usdt

    # TON sent to the treasury outside tonrail: the difference, an event, a critical alert.
    rail.net.chain.faucet(treasury, 7 * TON)

    async def arrived() -> bool:
        result = await reconcile_treasury(rail.ctx)
        return result.checked and result.differences == {"TON": 7 * TON}

    assert await wait_for(arrived, timeout_s=30, poll_s=0.2)
    async with db.transaction() as session:
        events = (
            (
                await session.execute(
                    select(OutboxEvent.payload).where(
                        OutboxEvent.type == "ton.reconciliation.mismatch"
                    )
                )
            )
            .scalars()
            .all()
        )
    treasury_events = [e["differences"] for e in events if e.get("wallet") == "treasury"]
    assert treasury_events == [
        {"TON": 100_500_000_000, "USDT": 1_000_000_000},
        {"TON": 7 * TON},
    ]
    await evaluate_alerts(monitoring)
    alert = await _alert(db)
    assert alert is not None and (alert.status, alert.severity) == ("open", "critical")
    assert alert.details == {"differences": {"TON": 7 * TON}} and "TON +7000000000" in (
        alert.summary
    )
    # The operator books it (audited); the next check matches and the alert resolves.
    async with db.transaction() as session:
        await book_treasury_funding(session, "TON", 7 * TON, "admin:t", "owner's transfer")
    assert (await _quiet_check(rail)).differences == {}
    await evaluate_alerts(monitoring)
    alert = await _alert(db)
    assert alert is not None and alert.status == "resolved"
