"""Crash tests of treasury payouts: the worker is SIGKILLed when the order is created, partly
approved, executed, and confirmed, then restarted; the payout ends paid exactly once (one
order on chain, one transfer to the payee) with the books balanced. The same for a hot
wallet top-up, which the worker proposes by itself, and for the bookings of the treasury's
fees and of a refused proposal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from ton_core import Address

from tests.conftest import make_key
from tests.crash_support import (
    crash,
    crashed_and_restarted,
    net,
    running_worker,
    wait_final,
    worker_env,
)
from tests.tonnet import Localnet
from tests.treasury.test_payouts import SIGNERS, _config, _seed
from tests.treasury.test_payouts import settings as settings
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.localnet.genesis import TON
from tonrail.rails.ton.api import ToncenterTonApi
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.settings import Settings
from tonrail.treasury.models import OrderStatus, TreasuryOrder
from tonrail.treasury.reader import multisig_state, order_state
from tonrail.treasury.service import approve, deploy, wait_for
from tonrail.treasury.wallets import SignerWallet, open_client

__all__ = ["net"]  # fixture, used by name


async def _order(db: Database) -> TreasuryOrder | None:
    async with db.transaction() as session:
        return (await session.execute(select(TreasuryOrder))).scalars().first()


@pytest.mark.slow
@pytest.mark.parametrize(
    "crash_at",
    [
        "treasury.order_created",
        "treasury.partly_approved",
        "treasury.executed",
        "treasury.confirmed",
    ],
)
async def test_a_treasury_payout_survives_a_crash_at_every_step(
    net: Localnet,
    settings: Settings,
    db: Database,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tmp_path: Path,
    crash_at: str,
) -> None:
    api = ToncenterTonApi(ToncenterClient([net.v2], [net.v3]))
    wallets_client = open_client(net.v2, "", "localnet")
    await wallets_client.connect()
    signers = [SignerWallet(wallets_client, _seed(s)) for s in SIGNERS]
    operator = SignerWallet(wallets_client, _seed("operator"))
    for w in (*signers, operator):
        net.chain.faucet(w.address, 20 * TON)
    for w in (*signers, operator):
        assert await wait_for(lambda w=w: _positive(w), timeout_s=30, poll_s=0.05)
    treasury = await deploy(operator, _config())
    net.chain.faucet(treasury, 100 * TON)

    payee = Address((0, b"\x78" * 32))
    r = await client.post(
        "/v1/payouts",
        json={
            "amount": "3.5",
            "asset": "TON",
            "destination": payee.to_str(is_user_friendly=True, is_bounceable=False),
        },
        headers=auth,
    )
    pid = r.json()["id"]
    for _ in range(2):
        key = await make_key(db, "acct_test", "payouts:approve")
        a = await client.post(
            f"/v1/payouts/{pid}/approve", headers={"Authorization": f"Bearer {key}"}
        )
        assert a.status_code == 200, a.text

    env = {**worker_env(net, settings, tmp_path, crash_at), "TREASURY_ADDRESS": treasury}
    env["APPROVAL_THRESHOLD_USDT"] = str(settings.approval_threshold_usdt)
    approved: set[int] = set()

    async def approve_up_to(count: int) -> None:
        """Approve from signers 0 and 2 (in that order) once the order is on chain."""
        row = await _order(db)
        if row is None or row.status == OrderStatus.SIGNED:
            return
        for index in (0, 2)[:count]:
            if index not in approved:
                await approve(api, signers[index], row.order_address, now=_now())
                approved.add(index)

                async def counted(i: int = index) -> bool:
                    return (await order_state(api, row.order_address)).approved_by(i)

                assert await wait_for(counted, timeout_s=30, poll_s=0.05)

    # Before the crash: no approval (order_created), one (partly_approved), both (the rest).
    before = {"treasury.order_created": 0, "treasury.partly_approved": 1}.get(crash_at, 2)
    async with crashed_and_restarted(
        env, "treasury_payouts", meanwhile=lambda: approve_up_to(before), within=90
    ):
        for _ in range(600):
            await approve_up_to(2)
            if len(approved) == 2:
                break
            await asyncio.sleep(0.1)
        [final] = await wait_final(client, auth, "/v1/payouts", [pid], {"succeeded", "failed"})
    assert final["status"] == "succeeded", final
    # Exactly once on chain: one order, one transfer from the treasury to the payee.
    assert (await multisig_state(api, treasury)).next_order_seqno == 1
    received = [
        t.in_msg.value
        for t in await api.account_transactions(raw(payee), 0, 50)
        if t.in_msg is not None and t.in_msg.source == raw(treasury).upper()
    ]
    assert received == [3_500_000_000]
    row = await _order(db)
    assert row is not None and row.status == OrderStatus.CONFIRMED
    async with db.transaction() as session:
        assert (await check_books(session)).ok
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
    await wallets_client.close()
    await api.aclose()


async def _positive(wallet: SignerWallet) -> bool:
    return await wallet.balance() > 0


def _now() -> int:
    import time

    return int(time.time())


@pytest.mark.slow
async def test_the_treasury_fees_are_booked_once_across_a_crash(
    net: Localnet, settings: Settings, db: Database, tmp_path: Path
) -> None:
    """The worker's reconcile loop is killed after booking the treasury's fees, before the
    commit; the restarted one books them once: the difference is then exactly the TON that
    came from outside (the deploy's 0.5 and the faucet's 100), not a nanoton more or less."""
    from tonrail.ledger.models import JournalEntry
    from tonrail.monitoring.models import MonitoringSignal
    from tonrail.rails.ton.models import TonWalletCursor

    wallets_client = open_client(net.v2, "", "localnet")
    await wallets_client.connect()
    operator = SignerWallet(wallets_client, _seed("operator"))
    net.chain.faucet(operator.address, 20 * TON)
    assert await wait_for(lambda: _positive(operator), timeout_s=30, poll_s=0.05)
    treasury = await deploy(operator, _config())
    net.chain.faucet(treasury, 100 * TON)
    api = ToncenterTonApi(ToncenterClient([net.v2], [net.v3]))

    async def funded() -> bool:
        return (await api.account_state(treasury))[1] >= 100 * TON

    assert await wait_for(funded, timeout_s=30, poll_s=0.05)

    async def booked() -> tuple[int, int, int | None]:
        async with db.transaction() as session:
            entries = await session.scalar(
                select(func.count())
                .select_from(JournalEntry)
                .where(JournalEntry.kind == "treasury.chain_fees")
            )
            cursors = await session.scalar(
                select(func.count())
                .select_from(TonWalletCursor)
                .where(TonWalletCursor.wallet == raw(treasury))
            )
            signal_row = await session.get(
                MonitoringSignal, ("books_difference", "asset=TON,wallet=treasury")
            )
        return entries or 0, cursors or 0, signal_row.value if signal_row else None

    env = {
        **worker_env(net, settings, tmp_path, "treasury.fees_booked"),
        "TREASURY_ADDRESS": treasury,
    }
    await crash(env, "ton_reconcile")
    assert await booked() == (0, 0, None)  # killed before the commit: nothing booked

    async with running_worker({**env, "CRASH_AT": ""}, "ton_reconcile"):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while (await booked())[2] is None:
            assert loop.time() < deadline, "the restarted worker did not reconcile the treasury"
            await asyncio.sleep(0.2)
    entries, cursors, difference = await booked()
    assert (entries, cursors) == (1, 1)
    assert difference == 100 * TON + TON // 2
    async with db.transaction() as session:
        assert (await check_books(session)).ok
        assert await balance(session, books.TREASURY, "TON") < 0  # the fees, booked once
    await wallets_client.close()
    await api.aclose()


@pytest.mark.slow
async def test_a_refused_proposal_is_booked_once_across_a_crash(
    net: Localnet,
    settings: Settings,
    db: Database,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tmp_path: Path,
) -> None:
    """The multisig refuses the worker's proposal (its order expired before it landed: exit
    code 111); the worker is killed after booking what the hot wallet lost, before the commit:
    nothing is booked and the payout is still processing. The restarted worker reads the
    trace again and books it once, with the payout's failure: exactly the hot wallet's
    balance drop."""
    from tests.treasury.test_refused import LIFETIME_S, approved_payout, refused_lines

    api = ToncenterTonApi(ToncenterClient([net.v2], [net.v3]))
    wallets_client = open_client(net.v2, "", "localnet")
    await wallets_client.connect()
    operator = SignerWallet(wallets_client, _seed("operator"))
    net.chain.faucet(operator.address, 20 * TON)
    assert await wait_for(lambda: _positive(operator), timeout_s=30, poll_s=0.05)
    treasury = await deploy(operator, _config())
    net.chain.faucet(treasury, 100 * TON)

    async def funded() -> bool:
        return (await api.account_state(treasury))[1] >= 100 * TON

    assert await wait_for(funded, timeout_s=30, poll_s=0.05)
    pid = await approved_payout(client, auth, db, "3.5")
    hot = raw(net.genesis.wallet("hot").address)
    hot_before = (await api.account_state(hot))[1]

    env = {
        **worker_env(net, settings, tmp_path, "treasury.proposal_refused"),
        "TREASURY_ADDRESS": treasury,
        "APPROVAL_THRESHOLD_USDT": str(settings.approval_threshold_usdt),
        "TREASURY_ORDER_LIFETIME_SECONDS": str(LIFETIME_S),
    }
    # No block until the worker has sent its proposal; then the chain's clock is past the
    # order's expiration date when the proposal lands.
    net.chain.faults.update({"stall_blocks": True})

    async def land_late() -> None:
        row = await _order(db)
        if row is not None and row.send_count > 0 and net.chain.faults.stall_blocks:
            net.chain.faults.update({"stall_blocks": False, "time_offset_s": 2 * LIFETIME_S})

    await crash(env, "treasury_payouts", meanwhile=land_late, within=90)
    assert await refused_lines(db) == []  # killed before the commit: nothing booked
    row = await _order(db)
    assert row is not None and row.status == OrderStatus.SIGNED
    got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
    assert got["status"] == "processing"

    async with running_worker({**env, "CRASH_AT": ""}, "treasury_payouts"):
        [final] = await wait_final(client, auth, "/v1/payouts", [pid], {"succeeded", "failed"})
    assert (final["status"], final["failure_code"]) == ("failed", "treasury_proposal_refused")
    assert "exit code 111" in final["failure_message"]
    hot_after = (await api.account_state(hot))[1]
    [lines] = await refused_lines(db)
    assert books.Line(books.HOT_WALLET, "TON", -(hot_before - hot_after)) in lines
    assert (await multisig_state(api, treasury)).next_order_seqno == 0
    async with db.transaction() as session:
        assert (await check_books(session)).ok
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
    await wallets_client.close()
    await api.aclose()


async def _entries(db: Database, kind: str) -> list[list[books.Line]]:
    """The lines of every journal entry of `kind`."""
    from tonrail.ledger.models import JournalEntry, LedgerLine

    async with db.transaction() as session:
        ids = list(
            (
                await session.execute(select(JournalEntry.id).where(JournalEntry.kind == kind))
            ).scalars()
        )
        out = []
        for entry in ids:
            rows = await session.execute(
                select(LedgerLine.account, LedgerLine.asset, LedgerLine.amount).where(
                    LedgerLine.entry_id == entry
                )
            )
            out.append([books.Line(a, s, int(n)) for a, s, n in rows.all()])
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    "crash_at", ["treasury.order_created", "treasury.executed", "treasury.confirmed"]
)
async def test_a_hot_wallet_topup_survives_a_crash_at_every_step(
    net: Localnet, settings: Settings, db: Database, tmp_path: Path, crash_at: str
) -> None:
    """The hot wallet's TON is below its floor: the worker proposes a top-up order by itself,
    two signers approve it, and the worker is killed when the order is created (stored, not
    yet sent), executed, and confirmed (booked, before the commit), then restarted. One order
    on chain, one transfer of exactly the top-up into the hot wallet, each booked once."""
    topup = 50 * TON
    api = ToncenterTonApi(ToncenterClient([net.v2], [net.v3]))
    wallets_client = open_client(net.v2, "", "localnet")
    await wallets_client.connect()
    signers = [SignerWallet(wallets_client, _seed(s)) for s in SIGNERS]
    operator = SignerWallet(wallets_client, _seed("operator"))
    for w in (*signers, operator):
        net.chain.faucet(w.address, 20 * TON)
    for w in (*signers, operator):
        assert await wait_for(lambda w=w: _positive(w), timeout_s=30, poll_s=0.05)
    treasury = await deploy(operator, _config())
    net.chain.faucet(treasury, 500 * TON)

    async def funded() -> bool:
        return (await api.account_state(treasury))[1] >= 500 * TON

    assert await wait_for(funded, timeout_s=30, poll_s=0.05)
    hot = raw(net.genesis.wallet("hot").address)
    hot_before = (await api.account_state(hot))[1]
    env = {
        **worker_env(net, settings, tmp_path, crash_at),
        "TREASURY_ADDRESS": treasury,
        # Below the floor by half the top-up: one top-up lifts it above, so one order only.
        "ALERT_HOT_WALLET_FLOOR_TON": str(hot_before + topup // 2),
        "ALERT_HOT_WALLET_FLOOR_USDT": "0",
        "TREASURY_TOPUP_TON": str(topup),
        "TREASURY_TOPUP_USDT": "0",
    }
    approved: set[int] = set()

    async def approve_both() -> None:
        """Approve from signers 0 and 2 once the order is on chain (before the crash only
        when the crash point is after the approvals)."""
        row = await _order(db)
        if row is None or row.status == OrderStatus.SIGNED:
            return
        for index in (0, 2):
            if index not in approved:
                await approve(api, signers[index], row.order_address, now=_now())
                approved.add(index)

                async def counted(i: int = index) -> bool:
                    return (await order_state(api, row.order_address)).approved_by(i)

                assert await wait_for(counted, timeout_s=30, poll_s=0.05)

    async def nothing() -> None:
        return None

    before = nothing if crash_at == "treasury.order_created" else approve_both
    async with crashed_and_restarted(env, "treasury_payouts", meanwhile=before, within=90):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while True:
            await approve_both()
            row = await _order(db)
            if row is not None and row.status == OrderStatus.CONFIRMED:
                break
            assert loop.time() < deadline, f"the top-up is not confirmed: {row and row.status}"
            await asyncio.sleep(0.2)
    async with db.transaction() as session:
        orders = list((await session.execute(select(TreasuryOrder))).scalars())
    assert [(o.purpose, o.asset, o.amount, o.status) for o in orders] == [
        ("topup", "TON", topup, OrderStatus.CONFIRMED)
    ]
    # Exactly once on chain: one order, one transfer of the top-up into the hot wallet.
    assert (await multisig_state(api, treasury)).next_order_seqno == 1
    received = [
        t.in_msg.value
        for t in await api.account_transactions(hot, 0, 100)
        if t.in_msg is not None and t.in_msg.source == raw(treasury).upper()
    ]
    assert received == [topup]
    # Booked once: the proposal's cost, and the top-up into the hot wallet's books.
    assert len(await _entries(db, "treasury.order_funded")) == 1
    [lines] = await _entries(db, "treasury.topup")
    assert books.Line(books.HOT_WALLET, "TON", topup) in lines
    async with db.transaction() as session:
        assert (await check_books(session)).ok
    await wallets_client.close()
    await api.aclose()
