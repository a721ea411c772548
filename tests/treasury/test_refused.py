"""A treasury proposal the hot wallet executes but the multisig refuses: no order is created,
yet the hot wallet paid for it (its transactions' fees, the forward fees, what of the
proposal's value did not bounce back, the fee of taking the bounce back in). The payout fails
with the refusal's own code, and what the hot wallet lost is booked once, exactly: the books
equal the chain for the hot wallet (reconcile.py) and for the treasury (treasury_reconcile.py).

Two real refusals of the bundled multisig v2, both on the local network's TVM:
- the order's expiration date has passed when `new_order` reaches the multisig (exit code
  111): the chain's clock moves on between the proposal's signing and its landing; no order
  contract is ever there;
- another order took the seqno first (exit code 1008): a signer proposes while ours is in
  flight, and the multisig takes the signer's `new_order` first.

And one proposal that never reaches the multisig although the hot wallet executed it: the hot
wallet holds less TON than the proposal's value (`treasury_proposal_failed`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from ton_core import Address, begin_cell

from tests.conftest import make_key
from tests.rails.ton.rail_fixture import Rail, rail
from tests.rails.ton.test_faults import faults
from tests.rails.ton.test_payouts import _books_against_chain, _opening_balances
from tests.treasury.test_payouts import (
    _orders,
    _rounds_until,
    funded_treasury,
    settings,
    signers,
)
from tests.treasury.test_reconcile import _quiet_check
from tonrail import clock
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.models import JournalEntry, LedgerLine
from tonrail.ledger.service import balance, check_books
from tonrail.localnet.genesis import TON
from tonrail.processing.ton_loop import next_query_seq
from tonrail.processing.treasury_loop import propose_due, treasury_of, treasury_round
from tonrail.processing.treasury_reconcile import book_treasury_funding
from tonrail.rails.ton.highload import OutTransfer, query_id_for, sign_request
from tonrail.treasury.models import OrderStatus
from tonrail.treasury.reader import multisig_state
from tonrail.treasury.service import payout_ton_message, propose, wait_for
from tonrail.treasury.wallets import SignerWallet

__all__ = ["rail", "settings", "signers"]  # fixtures used here

LIFETIME_S = 60  # the order's lifetime in the expired case; the chain then jumps past it


async def refused_lines(db: Database) -> list[list[books.Line]]:
    """The lines of every `treasury.proposal_refused` entry."""
    async with db.transaction() as session:
        ids = (
            await session.execute(
                select(JournalEntry.id).where(JournalEntry.kind == "treasury.proposal_refused")
            )
        ).scalars()
        out = []
        for entry in ids:
            rows = await session.execute(
                select(LedgerLine.account, LedgerLine.asset, LedgerLine.amount).where(
                    LedgerLine.entry_id == entry
                )
            )
            out.append([books.Line(a, s, int(n)) for a, s, n in rows.all()])
    return out


async def approved_payout(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database, amount: str = "2.5"
) -> str:
    """A TON payout above the approval threshold, approved by two approvers: for the treasury."""
    payee = Address((0, b"\x66" * 32)).to_str(is_user_friendly=True, is_bounceable=False)
    r = await client.post(
        "/v1/payouts",
        json={"amount": amount, "asset": "TON", "destination": payee},
        headers=auth,
    )
    assert r.status_code == 201 and r.json()["status"] == "requires_approval", r.text
    pid = str(r.json()["id"])
    for _ in range(2):
        h = {"Authorization": f"Bearer {await make_key(db, 'acct_test', 'payouts:approve')}"}
        assert (await client.post(f"/v1/payouts/{pid}/approve", headers=h)).status_code == 200
    return pid


@pytest.mark.parametrize(
    ("refusal", "code", "exit_code"),
    [
        ("expired", "treasury_proposal_refused", 111),
        ("seqno_taken", "treasury_seqno_taken", 1008),
    ],
)
async def test_a_refused_proposal_is_booked_once_as_what_the_hot_wallet_lost(
    rail: Rail,
    signers: list[SignerWallet],
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    refusal: str,
    code: str,
    exit_code: int,
) -> None:
    treasury = await funded_treasury(rail, signers[3])
    # The treasury's funding and the hot wallet's genesis balance, booked as an operator would.
    async with db.transaction() as session:
        await book_treasury_funding(session, "TON", 100 * TON + TON // 2, "admin:t", "funding")
    await _opening_balances(rail, db)
    pid = await approved_payout(client, auth, db)
    multisig = treasury_of(rail.ctx)
    assert multisig is not None
    hot = rail.ctx.wallet_raw
    hot_before = await rail.ton_balance(hot)

    # Our proposal is signed and sent while no block is made; then the chain moves on so that
    # the multisig refuses it when it lands.
    await faults(rail, stall_blocks=True)
    if refusal == "seqno_taken":  # a signer's order reaches the multisig first
        theirs = payout_ton_message(Address((0, b"\x67" * 32)), TON, "theirs", bounce=False)
        await propose(rail.api, signers[0], treasury, [theirs], now=int(time.time()))
    else:
        rail.ctx.settings = rail.ctx.settings.model_copy(
            update={"treasury_order_lifetime_seconds": LIFETIME_S}
        )
    assert await propose_due(rail.ctx, multisig) == 1
    [order] = await _orders(db)
    assert order.order_seqno == 0
    await faults(
        rail, stall_blocks=False, time_offset_s=2 * LIFETIME_S if refusal == "expired" else 0
    )

    async def failed() -> bool:
        got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
        return bool(got["status"] == "failed")

    await _rounds_until(rail, failed)
    got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
    assert got["failure_code"] == code
    assert f"exit code {exit_code}" in got["failure_message"]
    [order] = await _orders(db)
    assert order.status == OrderStatus.FAILED and (order.error or "").startswith(code)
    state, _ = await rail.api.account_state(order.order_address)
    if refusal == "expired":  # no order at our seqno: the multisig's next seqno did not move
        assert state != "active"
        assert (await multisig_state(rail.api, treasury)).next_order_seqno == 0
    else:  # the signer's order holds it
        assert state == "active"
        assert (await multisig_state(rail.api, treasury)).next_order_seqno == 1

    # What the hot wallet lost is booked once, to the nanoton, even as the loop goes on.
    for _ in range(3):
        await treasury_round(rail.ctx)
    hot_after = await rail.ton_balance(hot)
    [lines] = await refused_lines(db)
    lost = hot_before - hot_after
    assert 0 < lost < TON // 2  # fees and gas: the proposal's value came back
    assert books.Line(books.HOT_WALLET, "TON", -lost) in lines
    assert not books.imbalance(lines)
    async with db.transaction() as session:
        assert (await check_books(session)).ok
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
    assert await _books_against_chain(rail) == {}
    if refusal == "expired":
        # The treasury's books equal the multisig too: what it kept of the proposal paid its
        # transaction, whose fees its watcher books. (With a signer's order, its traffic is
        # outside tonrail's books: the next test of that is reconciliation's own.)
        assert (await _quiet_check(rail)).differences == {}


@pytest.mark.parametrize(
    ("taken", "code", "message"),
    [
        (False, "treasury_proposal_expired", "the proposal expired unprocessed"),
        (True, "treasury_seqno_taken", "another order took this seqno"),
    ],
)
async def test_a_proposal_that_never_landed_fails_once_past_its_validity_with_nothing_booked(
    rail: Rail,
    signers: list[SignerWallet],
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    taken: bool,
    code: str,
    message: str,
) -> None:
    """Every copy of our proposal is lost on its way (the request never reaches the hot
    wallet). While it is valid it may still land, so the payout waits, even with another
    order at our seqno; past its validity, `processed?` false and no transaction prove it
    never landed: the payout fails and nothing is booked (nothing left the hot wallet)."""
    treasury = await funded_treasury(rail, signers[3])
    await _opening_balances(rail, db)
    pid = await approved_payout(client, auth, db)
    multisig = treasury_of(rail.ctx)
    assert multisig is not None
    hot = rail.ctx.wallet_raw
    hot_before = await rail.ton_balance(hot)
    await faults(rail, stall_blocks=True)
    if taken:
        theirs = payout_ton_message(Address((0, b"\x67" * 32)), TON, "theirs", bounce=False)
        await propose(rail.api, signers[0], treasury, [theirs], now=int(time.time()))
    await faults(rail, drop_external_rate=1.0)  # ours, and every copy of it, lost
    assert await propose_due(rail.ctx, multisig) == 1
    await faults(rail, stall_blocks=False)
    [order] = await _orders(db)

    async def order_there() -> bool:
        return (await rail.api.account_state(order.order_address))[0] == "active"

    if taken:
        assert await wait_for(order_there, timeout_s=20, poll_s=0.05)
    for _ in range(10):  # still valid: it may land yet (re-sent while no order is there)
        await treasury_round(rail.ctx)
    got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
    assert got["status"] == "processing"
    [order] = await _orders(db)
    assert order.status == OrderStatus.SIGNED
    if taken:  # not re-sent: the multisig would only refuse it
        assert order.send_count == 1

    # Two hours later on both clocks: past the request's validity.
    later = datetime.now(UTC) + timedelta(hours=2)
    clock.set_clock(lambda: later + (datetime.now(UTC) - later + timedelta(hours=2)))
    await faults(rail, time_offset_s=7200)
    assert await treasury_round(rail.ctx) >= 1
    got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
    assert (got["status"], got["failure_code"], got["failure_message"]) == (
        "failed",
        code,
        message,
    )
    assert await refused_lines(db) == []
    assert await rail.ton_balance(hot) == hot_before
    async with db.transaction() as session:
        assert (await check_books(session)).ok
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
    await faults(rail, time_offset_s=7200, drop_external_rate=0.0)
    assert await _books_against_chain(rail) == {}


async def _drain_hot_wallet(rail: Rail, db: Database, leave: int) -> None:
    """Send all but about `leave` nanoton of the hot wallet's TON to an outsider, as one
    highload request of its own (its query id taken like the loop's), and wait for it."""
    hot = rail.ctx.wallet_raw
    state, before = await rail.api.account_state(hot)
    async with db.transaction() as session:
        seq = await next_query_seq(session, hot)
    outsider = Address((0, b"\x68" * 32))
    signed = sign_request(
        rail.ctx.wallet,
        rail.ctx.sign,
        [OutTransfer(outsider, before - leave, False, begin_cell().end_cell())],
        query_id=query_id_for(seq),
        created_at=int(time.time()) - rail.ctx.settings.ton_created_at_lag_s,
        deploy=state != "active",  # genesis leaves the hot wallet undeployed
    )
    await rail.api.send_boc(signed.boc)

    async def drained() -> bool:
        return await rail.ton_balance(hot) < leave

    assert await wait_for(drained, timeout_s=20, poll_s=0.05)


async def test_a_proposal_the_hot_wallet_cannot_fund_fails_with_its_fees_booked_once(
    rail: Rail,
    signers: list[SignerWallet],
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
) -> None:
    """The hot wallet holds less TON than the proposal's value: it executes the request (the
    external, the internal_transfer to itself) but its action sending `new_order` is skipped
    (send mode 1|2 ignores the error), so the multisig never hears of it. The payout fails as
    `treasury_proposal_failed`, nothing is re-sent, and the two transactions' fees are booked
    once from the hot wallet, exactly what its balance lost."""
    treasury = await funded_treasury(rail, signers[3])
    async with db.transaction() as session:
        await book_treasury_funding(session, "TON", 100 * TON + TON // 2, "admin:t", "funding")
    await _opening_balances(rail, db)
    await _drain_hot_wallet(rail, db, leave=TON // 25)  # 0.04 TON: below any order's value
    # The drain is outside the books: the hot wallet's difference from here on is just it.
    drained = await _books_against_chain(rail)
    assert set(drained) == {"TON"} and drained["TON"] < 0
    pid = await approved_payout(client, auth, db)
    multisig = treasury_of(rail.ctx)
    assert multisig is not None
    hot = rail.ctx.wallet_raw
    hot_before = await rail.ton_balance(hot)
    treasury_before = await rail.ton_balance(treasury)
    assert await propose_due(rail.ctx, multisig) == 1
    [order] = await _orders(db)
    assert order.proposal_value > hot_before  # what the action phase cannot send

    async def failed() -> bool:
        got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
        return bool(got["status"] == "failed")

    await _rounds_until(rail, failed)
    got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
    assert (got["failure_code"], got["failure_message"]) == (
        "treasury_proposal_failed",
        "the hot wallet executed the proposal but sent no new_order to the multisig",
    )
    [order] = await _orders(db)
    assert order.status == OrderStatus.FAILED
    assert (order.error or "").startswith("treasury_proposal_failed")
    assert order.send_count == 1  # it landed: never sent again
    assert (await rail.api.account_state(order.order_address))[0] != "active"
    assert (await multisig_state(rail.api, treasury)).next_order_seqno == 0

    for _ in range(3):  # booked once, however often the loop comes by
        await treasury_round(rail.ctx)
    hot_after = await rail.ton_balance(hot)
    lost = hot_before - hot_after
    assert 0 < lost < TON // 50  # two transactions' fees and a forward fee, no value
    [lines] = await refused_lines(db)
    assert len(lines) == 2 and set(lines) == {
        books.Line(books.HOT_WALLET, "TON", -lost),
        books.Line(books.NETWORK_FEES, "TON", lost),
    }
    assert await rail.ton_balance(treasury) == treasury_before  # the multisig saw nothing
    async with db.transaction() as session:
        assert (await check_books(session)).ok
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
    assert await _books_against_chain(rail) == drained  # the failure booked what the chain shows
    assert (await _quiet_check(rail)).differences == {}
