"""Payouts above the approval threshold go out from the treasury multisig: the in-app gate
first, then a multisig order the hot wallet proposes, approved by two signer wallets; the
payee gets exactly the amount once, and the books balance (treasury its own account)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from nacl.signing import SigningKey
from sqlalchemy import select
from ton_core import Address
from tonutils.clients import ToncenterClient as TonutilsClient

from tests.conftest import make_key
from tests.rails.ton.rail_fixture import Rail, rail  # noqa: F401  (the TON rail fixture)
from tests.rails.ton.test_faults import faults
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.localnet.genesis import HOT_SUBWALLET, HOT_TIMEOUT, TON, USDT, Genesis, derive_key
from tonrail.processing.ton_track import processed_flag
from tonrail.processing.treasury_loop import follow_open, propose_due, treasury_of, treasury_round
from tonrail.rails.ton.api import jetton_balance, jetton_wallet_of
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.highload import HighloadWallet, query_id_for
from tonrail.settings import Settings
from tonrail.treasury.models import OrderStatus, TreasuryOrder
from tonrail.treasury.multisig import MultisigConfig, multisig_address
from tonrail.treasury.reader import multisig_state, order_state
from tonrail.treasury.service import approve, deploy, wait_for
from tonrail.treasury.wallets import SignerWallet, open_client

SIGNERS = ("alice", "bob", "carol")


def _seed(label: str) -> bytes:
    return bytes(derive_key("treasury-payouts", label))


def _config() -> MultisigConfig:
    """2 of 3 signers; the genesis hot wallet is the proposer."""
    offline = open_client("http://127.0.0.1:9/api/v2", "", "localnet")  # addresses only
    signers = tuple(SignerWallet(offline, _seed(s)).address for s in SIGNERS)
    hot = Genesis().wallet("hot")
    key = SigningKey(bytes.fromhex(hot.to_json()["private_key"]))
    proposer = HighloadWallet(bytes(key.verify_key), HOT_SUBWALLET, HOT_TIMEOUT).address
    return MultisigConfig(2, signers, (proposer,))


async def funded_treasury(on: Rail, deployer: SignerWallet, ton: int = 100 * TON) -> str:
    """The treasury multisig (`_config`) deployed by `deployer`, holding `ton` from the faucet
    once this returns; its address."""
    treasury = await deploy(deployer, _config())
    on.net.chain.faucet(treasury, ton)

    async def funded() -> bool:
        return await on.ton_balance(treasury) >= ton

    assert await wait_for(funded, timeout_s=20, poll_s=0.05)
    return treasury


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=database_url,
        data_dir=tmp_path,
        approval_threshold_usdt=1 * USDT,  # everything above 1 USDT needs approvers
        treasury_address=raw(multisig_address(_config())),
        usdt_jetton_master=Genesis().usdt_master.to_str(),
    )


@pytest.fixture
async def signers(rail: Rail) -> AsyncIterator[list[SignerWallet]]:  # noqa: F811
    client: TonutilsClient = open_client(rail.net.v2, "", "localnet")
    await client.connect()
    wallets = [SignerWallet(client, _seed(s)) for s in (*SIGNERS, "operator")]
    for w in wallets:
        rail.net.chain.faucet(w.address, 20 * TON)
    for w in wallets:
        assert await wait_for(lambda w=w: _funded(w), timeout_s=20, poll_s=0.05)
    yield wallets
    await client.close()


async def _funded(wallet: SignerWallet) -> bool:
    return await wallet.balance() > 0


async def _rounds_until(on: Rail, done: Callable[[], Awaitable[bool]], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not await done():
        assert time.monotonic() < deadline, "the treasury loop did not get there in time"
        await treasury_round(on.ctx)
        await asyncio.sleep(0.05)


async def _orders(db: Database) -> list[TreasuryOrder]:
    async with db.transaction() as session:
        return list((await session.execute(select(TreasuryOrder))).scalars())


async def test_large_payouts_go_out_from_the_treasury_once(
    rail: Rail,  # noqa: F811
    signers: list[SignerWallet],
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
) -> None:
    operator = signers[3]
    treasury = await deploy(operator, _config())
    assert treasury == rail.ctx.settings.treasury_address
    rail.net.chain.faucet(treasury, 100 * TON)
    rail.net.chain.faucet(treasury, 1_000 * USDT, "USDT")
    master = rail.net.genesis.usdt_master.to_str()
    treasury_jettons = await jetton_wallet_of(rail.api, master, treasury)

    async def funded() -> bool:
        return await jetton_balance(rail.api, treasury_jettons) == 1_000 * USDT

    assert await wait_for(funded, timeout_s=20, poll_s=0.05)

    payee = Address((0, b"\x77" * 32))
    payee_text = payee.to_str(is_user_friendly=True, is_bounceable=False)
    approvers = [
        {"Authorization": f"Bearer {await make_key(db, 'acct_test', 'payouts:approve')}"}
        for _ in range(2)
    ]
    ids = []
    for amount, asset in (("2.5", "TON"), ("12.345678", "USDT")):
        r = await client.post(
            "/v1/payouts",
            json={"amount": amount, "asset": asset, "destination": payee_text},
            headers=auth,
        )
        assert r.status_code == 201 and r.json()["status"] == "requires_approval", r.text
        pid = r.json()["id"]
        for h in approvers:
            assert (await client.post(f"/v1/payouts/{pid}/approve", headers=h)).status_code == 200
        ids.append(pid)
    hot_before = (await rail.api.account_state(rail.ctx.wallet_raw))[1]

    async def proposed() -> bool:
        orders = await _orders(db)
        return len(orders) == 2 and all(o.status == OrderStatus.PROPOSED for o in orders)

    await _rounds_until(rail, proposed)
    orders = {o.payment_id: o for o in await _orders(db)}
    assert sorted(o.order_seqno for o in orders.values()) == [0, 1]
    for pid in ids:
        got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
        assert got["status"] == "processing"
        # The API shows the order the payout waits on: where, and how many approvals.
        order = orders[pid]
        assert got["treasury_order"] == {
            "address": order.order_address,
            "seqno": order.order_seqno,
            "status": "proposed",
            "approvals": 0,
            "threshold": 2,
            "expires_at": datetime.fromtimestamp(order.expiration_date, UTC)
            .isoformat()
            .replace("+00:00", "Z"),
        }
    listed = (await client.get("/v1/payouts", headers=auth)).json()["data"]
    assert {p["id"]: p["treasury_order"]["status"] for p in listed} == dict.fromkeys(
        ids, "proposed"
    )
    # Nothing leaves the treasury before the signers approve.
    assert rail.net.chain.account(payee).balance == 0

    now = int(time.time())
    for o in orders.values():
        for index in (0, 2):
            await approve(rail.api, signers[index], o.order_address, now=now)

            # A wallet's next message needs its seqno moved on: wait for the approval.
            async def counted(order: str = o.order_address, i: int = index) -> bool:
                return (await order_state(rail.api, order)).approved_by(i)

            assert await wait_for(counted, timeout_s=30, poll_s=0.05)

    async def succeeded() -> bool:
        got = [(await client.get(f"/v1/payouts/{i}", headers=auth)).json() for i in ids]
        return all(p["status"] == "succeeded" for p in got)

    await _rounds_until(rail, succeeded)
    payee_jettons = await jetton_wallet_of(rail.api, master, raw(payee))
    assert await jetton_balance(rail.api, payee_jettons) == 12_345_678
    received = [
        t.in_msg.value
        for t in await rail.api.account_transactions(raw(payee), 0, 50)
        if t.in_msg is not None and t.in_msg.source == raw(treasury).upper()
    ]
    assert received == [2_500_000_000]
    assert (await multisig_state(rail.api, treasury)).next_order_seqno == 2
    assert {o.status for o in await _orders(db)} == {OrderStatus.CONFIRMED}
    for pid in ids:
        shown = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()["treasury_order"]
        assert (shown["status"], shown["approvals"]) == ("confirmed", 2)

    async with db.transaction() as session:
        report = await check_books(session)
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
        assert await balance(session, books.PAYOUTS_PAYABLE, "USDT") == 0
        assert await balance(session, books.TREASURY, "USDT") == -12_345_678
        hot_books = await balance(session, books.HOT_WALLET, "TON")
    assert report.ok
    # What left the hot wallet is what the books say: the two proposals and their fees.
    hot_after = (await rail.api.account_state(rail.ctx.wallet_raw))[1]
    assert hot_before - hot_after == -hot_books


async def test_a_proposal_copy_refused_as_executed_ends_the_resending(
    rail: Rail,  # noqa: F811
    signers: list[SignerWallet],
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
) -> None:
    """The hot wallet executed the proposal and the order contract is not there yet (one
    transaction per block), nor is the hot wallet's transaction in the indexer yet (one
    block behind): a re-sent copy, refused as already executed (exit code 36), ends the
    re-sending; the order is proposed and its cost booked from the chain as usual. (Once
    the indexer shows the external, nothing is re-sent at all: the trace is read instead.)"""
    treasury = await funded_treasury(rail, signers[3])
    approvers = [
        {"Authorization": f"Bearer {await make_key(db, 'acct_test', 'payouts:approve')}"}
        for _ in range(2)
    ]
    payee = Address((0, b"\x77" * 32)).to_str(is_user_friendly=True, is_bounceable=False)
    r = await client.post(
        "/v1/payouts", json={"amount": "2.5", "asset": "TON", "destination": payee}, headers=auth
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    for h in approvers:
        assert (await client.post(f"/v1/payouts/{pid}/approve", headers=h)).status_code == 200
    hot_before = (await rail.api.account_state(rail.ctx.wallet_raw))[1]

    await faults(rail, stall_blocks=True, max_tx_per_block=1, index_lag_blocks=1)
    multisig = treasury_of(rail.ctx)
    assert multisig is not None
    assert await propose_due(rail.ctx, multisig) == 1  # sent once
    await rail.net.chain.produce_block()  # the hot wallet's external only
    [order] = await _orders(db)
    assert await processed_flag(rail.ctx, query_id_for(order.query_seq))
    assert (await rail.api.account_state(order.order_address))[0] != "active"

    async def resend_due_now() -> None:
        async with db.transaction() as session:
            row = await session.get(TreasuryOrder, order.id)
            assert row is not None
            row.last_sent_at = datetime.now(UTC) - timedelta(hours=1)

    for _ in range(2):  # the first copy is refused as executed; no second one
        await resend_due_now()
        assert await follow_open(rail.ctx) == 0
    [order] = await _orders(db)
    assert (order.status, order.send_count) == (OrderStatus.SIGNED, 2)
    assert order.landed_at is not None

    await faults(rail, stall_blocks=False, max_tx_per_block=0, index_lag_blocks=0)

    async def proposed() -> bool:
        return [o.status for o in await _orders(db)] == [OrderStatus.PROPOSED]

    await _rounds_until(rail, proposed)
    [order] = await _orders(db)
    assert order.send_count == 2
    assert (await multisig_state(rail.api, treasury)).next_order_seqno == 1
    got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
    assert got["status"] == "processing"
    async with db.transaction() as session:
        assert (await check_books(session)).ok
        hot_books = await balance(session, books.HOT_WALLET, "TON")
    # What left the hot wallet is what the books say: the proposal's value and its fees.
    hot_after = (await rail.api.account_state(rail.ctx.wallet_raw))[1]
    assert hot_before - hot_after == -hot_books > 0
