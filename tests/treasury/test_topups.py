"""Hot wallet top-ups from the treasury: below its floor the float gets a multisig order,
proposed automatically; the low-balance alert names it; once approvers approve, the hot
wallet holds exactly the top-up more, booked once (not also as a deposit)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.rails.ton.rail_fixture import Rail, rail  # noqa: F401  (the TON rail fixture)
from tests.treasury.test_payouts import _config, signers  # noqa: F401  (fixture)
from tonrail import clock
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.localnet.genesis import TON, USDT, Genesis
from tonrail.monitoring.rules import Thresholds, hot_wallet_low
from tonrail.monitoring.snapshot import SignalValue, build_snapshot
from tonrail.processing.deposits import watch_deposits
from tonrail.processing.treasury_loop import treasury_round
from tonrail.rails.ton.api import jetton_balance, jetton_wallet_of
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.models import TonDeposit
from tonrail.settings import Settings
from tonrail.treasury.models import OrderPurpose, OrderStatus, TreasuryOrder
from tonrail.treasury.multisig import multisig_address
from tonrail.treasury.reader import order_state
from tonrail.treasury.service import approve, deploy, wait_for
from tonrail.treasury.wallets import SignerWallet

FLOOR_TON = 200_000 * TON  # the genesis hot wallet holds 100,000 TON and 10M USDT
FLOOR_USDT = 20_000_000 * USDT


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=database_url,
        data_dir=tmp_path,
        treasury_address=raw(multisig_address(_config())),
        usdt_jetton_master=Genesis().usdt_master.to_str(),
        alert_hot_wallet_floor_ton=FLOOR_TON,
        alert_hot_wallet_floor_usdt=FLOOR_USDT,
        treasury_topup_ton=50 * TON,
        treasury_topup_usdt=1_000 * USDT,
    )


async def _rounds_until(on: Rail, done: Callable[[], Awaitable[bool]], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not await done():
        assert time.monotonic() < deadline, "the treasury loop did not get there in time"
        await treasury_round(on.ctx)
        await asyncio.sleep(0.05)


async def _topups(db: Database) -> list[TreasuryOrder]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(TreasuryOrder)
            .where(TreasuryOrder.purpose == OrderPurpose.TOPUP)
            .order_by(TreasuryOrder.order_seqno)
        )
        return list(rows.scalars())


async def test_the_float_is_topped_up_by_an_approved_order(
    rail: Rail,  # noqa: F811
    signers: list[SignerWallet],  # noqa: F811
    db: Database,
    settings: Settings,
) -> None:
    treasury = await deploy(signers[3], _config())
    rail.net.chain.faucet(treasury, 500 * TON)
    rail.net.chain.faucet(treasury, 5_000 * USDT, "USDT")
    master = rail.net.genesis.usdt_master.to_str()
    treasury_jettons = await jetton_wallet_of(rail.api, master, treasury)

    async def funded() -> bool:
        return await jetton_balance(rail.api, treasury_jettons) == 5_000 * USDT

    assert await wait_for(funded, timeout_s=20, poll_s=0.05)
    hot = rail.ctx.wallet_raw
    ton_before = (await rail.api.account_state(hot))[1]
    usdt_before = await jetton_balance(rail.api, rail.ctx.jetton_wallet or "")

    async def both_proposed() -> bool:
        rows = await _topups(db)
        return len(rows) == 2 and all(r.status == OrderStatus.PROPOSED for r in rows)

    await _rounds_until(rail, both_proposed)
    orders = {r.asset: r for r in await _topups(db)}
    assert (orders["TON"].amount, orders["USDT"].amount) == (50 * TON, 1_000 * USDT)
    # Open top-ups are not proposed twice.
    await treasury_round(rail.ctx)
    assert len(await _topups(db)) == 2

    # The low-balance alert names the top-up order that waits for approvers.
    async with db.transaction() as session:
        snap = await build_snapshot(session, settings, clock.now())
    snap.signals.append(
        SignalValue("hot_wallet_balance", {"asset": "TON"}, "gauge", 1, clock.now())
    )
    [finding] = hot_wallet_low(snap, Thresholds.from_settings(settings))
    assert finding.details["topup_order"] == orders["TON"].order_address
    assert orders["TON"].order_address in finding.summary

    for order in orders.values():
        for index in (0, 1):
            await approve(rail.api, signers[index], order.order_address, now=int(time.time()))

            async def counted(address: str = order.order_address, i: int = index) -> bool:
                return (await order_state(rail.api, address)).approved_by(i)

            assert await wait_for(counted, timeout_s=30, poll_s=0.05)

    async def confirmed() -> bool:
        return {r.status for r in await _topups(db)} == {OrderStatus.CONFIRMED}

    await _rounds_until(rail, confirmed)
    assert await jetton_balance(rail.api, rail.ctx.jetton_wallet or "") == (
        usdt_before + 1_000 * USDT
    )
    # The deposit watcher leaves the treasury's transfers to the treasury loop's books.
    while await watch_deposits(rail.ctx):
        pass
    async with db.transaction() as session:
        deposits = list((await session.execute(select(TonDeposit))).scalars())
        # (the genesis faucet's funding of the hot wallet is recorded, as always)
        assert deposits and not [d for d in deposits if d.sender and raw(d.sender) == treasury]
        report = await check_books(session)
        hot_books = await balance(session, books.HOT_WALLET, "TON")
        assert await balance(session, books.HOT_WALLET, "USDT") == 1_000 * USDT
        assert await balance(session, books.TREASURY, "USDT") == -1_000 * USDT
    assert report.ok
    ton_after = (await rail.api.account_state(hot))[1]
    # The float grew by the top-up less the proposals' and the receiving cost, as booked
    # (the books also hold the genesis funding the deposit watcher recorded: ton_before).
    assert ton_after - ton_before == hot_books - ton_before
    assert hot_books > 50 * TON - 2 * TON
