"""The treasury's books against the chain: `asset:treasury` must equal what the multisig holds.

The treasury on chain is the multisig plus the order contracts tonrail proposed (an order
holds its proposal's TON until it executes and hands the rest to the multisig, or forever if
it expires). USDT is the treasury's jetton wallet.

**Watching** (`watch_treasury`): each transaction of the multisig and of our orders is read
once, in lt order from a cursor per address (`ton_wallet_cursors`), and what it did to the
treasury's TON that no other booking covers is posted with the cursor's move, in one
transaction:

- its fees (`total_fees`) and the forward fees of what it sent -> `expense:network_fees`;
- TON between the multisig and our orders: internal, nothing (only its forward fee);
- TON from the hot wallet (a proposal's value): booked when the order is proposed
  (`treasury.order_funded`), or, for a proposal the multisig refused, what it kept of the
  value when the payout fails (`treasury.proposal_refused`, processing/treasury_loop.py);
  nothing here (the transaction's fees and the bounce's forward fee are booked here);
- a payout's or top-up's own message (by body hash): TON ones are booked when confirmed
  (`payout_sent`, `treasury_topup`, with their forward fee); a USDT one's attached TON leaves
  here as a fee, and the `excesses` returning (from the payee's jetton wallet: any `excesses`
  op counts) come back as a refund of it; the TON a USDT sender forwards with a transfer
  notification from the treasury's jetton wallet is income;
- an order's other traffic (approvers' `approve` with its value, the `approve_accepted`
  returning it): what it leaves behind is a fee;
- **anything else to or from the multisig is not booked**: TON sent to the treasury outside
  tonrail (its funding, a stranger's transfer), an order tonrail did not propose executing,
  USDT arriving. Reconciliation shows it as a difference until an operator books it
  (`tonrail treasury book-funding`, audited).

**Reconciling** (`reconcile_treasury`), at a quiet point only (no proposal being booked, no
executed order waiting for its confirmation, every cursor at the chain's last lt): chain minus
books per asset. Like the hot wallet's (processing/reconcile.py): `ton.reconciliation.mismatch`
(with `"wallet": "treasury"`) once per distinct difference, and the `books_difference` signal
labelled `wallet=treasury`, on which the critical alert `treasury_books_mismatch` opens and
resolves (monitoring/rules.py).
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.errors import InvalidRequest
from tonrail.events.models import OutboxEvent
from tonrail.events.service import emit
from tonrail.kit.faults import crashpoint
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, post
from tonrail.monitoring.signals import BOOKS_DIFFERENCE, write_signal
from tonrail.processing.context import TonRailContext
from tonrail.processing.reconcile import Reconciliation
from tonrail.processing.resolutions import OWNER_FUNDING
from tonrail.rails.ton.api import jetton_balance, jetton_wallet_of
from tonrail.rails.ton.chain_view import Tx, raw
from tonrail.rails.ton.models import TonWalletCursor
from tonrail.security import audit_log
from tonrail.treasury.models import OrderStatus, TreasuryOrder

log = structlog.get_logger(__name__)

OP_EXCESSES = 0xD53276DB
OP_TRANSFER_NOTIFICATION = 0x7362D09C
PAGE = 100
# Orders confirmed longer ago than this are no longer read (executed: their balance went to
# the multisig); expired ones stay (their TON stays in them).
RECENT = timedelta(days=1)
IN_FLIGHT = (OrderStatus.SIGNED, OrderStatus.EXECUTED)
STUCK_FAILURES = ("treasury_order_expired", "treasury_payout_bounced")
MISMATCH = "ton.reconciliation.mismatch"


def _treasury(ctx: TonRailContext) -> str | None:
    address = ctx.settings.treasury_address.strip()
    return raw(address) if address else None


async def _orders(ctx: TonRailContext) -> tuple[list[TreasuryOrder], list[TreasuryOrder]]:
    """(every order row, the ones whose contract is part of the treasury now)."""
    async with ctx.db.transaction() as session:
        rows = list((await session.execute(select(TreasuryOrder))).scalars())
    recent = clock.now() - RECENT
    live = [
        r
        for r in rows
        if r.status in (OrderStatus.PROPOSED, OrderStatus.EXECUTED)
        or (r.status == OrderStatus.CONFIRMED and r.updated_at >= recent)
        or (r.status == OrderStatus.FAILED and (r.error or "").startswith(STUCK_FAILURES))
    ]
    return rows, live


def unbooked_ton(
    tx: Tx,
    *,
    multisig: str,
    orders: set[str],
    treasury_jettons: str | None,
    order_messages: dict[str, str],
) -> tuple[int, int]:
    """(fees, income) in nanoton that `tx` of the multisig or one of our orders moved and no
    other booking covers: `fees` (positive: an expense; negative: a refund), `income` the TON
    forwarded with a jetton notification. What stays unexplained is left for reconciliation."""
    own = tx.account == multisig
    domain = orders | {multisig}
    fees = tx.total_fees
    income = 0
    m = tx.in_msg
    if m is not None and m.source is not None and m.source not in domain:
        if not own:
            fees -= m.value  # an approver's value: what the order does not return is a fee
        elif m.opcode == OP_EXCESSES and not m.bounced:
            fees -= m.value  # what a USDT transfer we sent did not use: a fee refund
        elif m.source == treasury_jettons and m.opcode == OP_TRANSFER_NOTIFICATION:
            income += m.value  # TON a USDT sender forwarded to the treasury
        # from the hot wallet: booked as the order's funding (or a refused proposal's
        # kept value); else unexplained
    for out in tx.out_msgs:
        fees += out.fwd_fee
        if out.destination in domain:
            continue
        asset = order_messages.get((out.body_hash or "").lower())
        if asset == "TON":
            fees -= out.fwd_fee  # booked with the payout or top-up it carries
        elif asset is not None or not own:
            fees += out.value  # a USDT transfer's attached TON; an order's approve_accepted
        # else: the multisig sent TON that no order of ours explains: unexplained
    return fees, income


async def watch_treasury(ctx: TonRailContext) -> int:
    """Book the unbooked TON of the treasury's new transactions; returns how many were read."""
    multisig = _treasury(ctx)
    if multisig is None:
        return 0
    rows, live = await _orders(ctx)
    orders = {r.order_address for r in rows if not (r.error or "").startswith("treasury_seqno")}
    messages = {r.message_hash.lower(): r.asset for r in rows}
    jettons = await _treasury_jettons(ctx, multisig)
    read = 0
    for address in [multisig, *sorted({r.order_address for r in live})]:
        read += await _watch_one(ctx, address, multisig, orders, jettons, messages)
    return read


async def _watch_one(
    ctx: TonRailContext,
    address: str,
    multisig: str,
    orders: set[str],
    jettons: str | None,
    messages: dict[str, str],
) -> int:
    async with ctx.db.transaction() as session:
        cursor = await session.get(TonWalletCursor, address)
        after = cursor.last_lt if cursor is not None else 0
    txs = await ctx.api.account_transactions(address, after, PAGE)
    if not txs:
        return 0
    fees = income = 0
    for tx in txs:
        f, i = unbooked_ton(
            tx,
            multisig=multisig,
            orders=orders,
            treasury_jettons=jettons,
            order_messages=messages,
        )
        fees, income = fees + f, income + i
    last = txs[-1]
    try:
        return await _book(ctx, address, after, last, fees, income, len(txs))
    except IntegrityError:
        return 0  # another worker stored this contract's first cursor at the same moment


async def _book(
    ctx: TonRailContext, address: str, after: int, last: Tx, fees: int, income: int, read: int
) -> int:
    """Post what the transactions after `after` up to `last` moved, with the cursor's move."""
    async with ctx.db.transaction() as session:
        cursor = await session.get(TonWalletCursor, address, with_for_update=True)
        if (cursor.last_lt if cursor is not None else 0) != after:
            return 0  # another worker read them first
        if cursor is None:
            session.add(
                TonWalletCursor(
                    wallet=address, last_lt=last.lt, last_hash=last.hash, updated_at=clock.now()
                )
            )
        else:
            cursor.last_lt, cursor.last_hash, cursor.updated_at = last.lt, last.hash, clock.now()
        lines = []
        if fees:
            lines += [
                books.Line(books.NETWORK_FEES, "TON", fees),
                books.Line(books.TREASURY, "TON", -fees),
            ]
        if income:
            lines += [
                books.Line(books.TREASURY, "TON", income),
                books.Line(books.FORWARDED_TON_INCOME, "TON", -income),
            ]
        if lines:
            await post(session, "treasury.chain_fees", lines)
        crashpoint(ctx.settings, "treasury.fees_booked")  # killed here: nothing committed
    return read


async def _treasury_jettons(ctx: TonRailContext, multisig: str) -> str | None:
    if ctx.jetton_wallet is None:
        return None  # USDT not enabled
    from tonrail.chain.network import resolve_network

    master = resolve_network(ctx.settings).usdt_master
    return raw(await jetton_wallet_of(ctx.api, master, multisig)) if master else None


async def reconcile_treasury(ctx: TonRailContext) -> Reconciliation:
    """Read the treasury's new transactions, then compare books and chain if quiet."""
    multisig = _treasury(ctx)
    if multisig is None:
        return Reconciliation(False, {})
    await watch_treasury(ctx)
    rows, live = await _orders(ctx)
    if any(r.status in IN_FLIGHT for r in rows):
        return Reconciliation(False, {})
    addresses = [multisig, *sorted({r.order_address for r in live})]
    chain_ton = 0
    async with ctx.db.transaction() as session:
        cursors = {a: await session.get(TonWalletCursor, a) for a in addresses}
    for address in addresses:
        state, ton = await ctx.api.account_state(address)
        cursor = cursors[address]
        last = await ctx.api.last_lt(address) if state != "uninit" or ton else 0
        if last and (cursor is None or cursor.last_lt != last):
            return Reconciliation(False, {})  # transactions not read yet
        chain_ton += ton
    chain = {"TON": chain_ton}
    jettons = await _treasury_jettons(ctx, multisig)
    if jettons is not None:
        chain["USDT"] = await jetton_balance(ctx.api, jettons)
    async with ctx.db.transaction() as session:
        ledger = {a: await balance(session, books.TREASURY, a) for a in chain}
        differences = {a: chain[a] - ledger[a] for a in chain if chain[a] != ledger[a]}
        for asset in chain:
            await write_signal(
                session,
                BOOKS_DIFFERENCE,
                differences.get(asset, 0),
                asset=asset,
                wallet="treasury",
            )
        if differences:
            recent = (
                await session.execute(
                    select(OutboxEvent.payload)
                    .where(OutboxEvent.type == MISMATCH)
                    .order_by(OutboxEvent.seq.desc())
                    .limit(50)
                )
            ).scalars()
            previous = next((p for p in recent if p.get("wallet") == "treasury"), None)
            payload = {
                "wallet": "treasury",
                "address": multisig,
                "differences": differences,
                "chain": chain,
                "ledger": ledger,
            }
            if previous is None or previous.get("differences") != differences:
                emit(session, MISMATCH, "system", payload)
            log.error("treasury books differ from the chain", **payload)
    return Reconciliation(True, differences)


async def book_treasury_funding(
    session: AsyncSession, asset: str, amount: int, actor: str, note: str
) -> None:
    """The operator books what reconciliation found moved outside tonrail (audited): a
    positive `amount` arrived in the treasury (its funding, from the owner), a negative one
    left it (an order tonrail did not propose; booked as a stray outflow until recovered)."""
    if amount == 0:
        raise InvalidRequest("the amount must not be 0", param="amount")
    if not note.strip():
        raise InvalidRequest("say why (--note): it goes to the audit log", param="note")
    other = OWNER_FUNDING if amount > 0 else books.STRAY_OUTFLOW
    await post(
        session,
        "treasury.funding" if amount > 0 else "treasury.outflow",
        [books.Line(books.TREASURY, asset, amount), books.Line(other, asset, -amount)],
    )
    details = {"asset": asset, "amount": str(amount), "note": note}
    emit(session, "treasury.funding_booked", "system", {**details, "actor": actor})
    await audit_log.record(session, actor, "treasury.book_funding", "treasury", details)
