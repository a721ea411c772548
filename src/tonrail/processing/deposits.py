"""The deposit watcher: reads the receiving wallet's transactions in lt order, once each.

The cursor (last lt and hash) advances in the same database transaction that records the
deposits and posts their ledger lines, and each deposit is unique on its transaction hash:
a crash anywhere re-reads from the last committed cursor, with no gap and no double credit.

What counts (TON-NOTES): a TON deposit is an incoming internal message whose comment carries
an invoice reference; a USDT deposit is a `transfer_notification` sent by OUR jetton wallet of
the allow-listed master. A fake jetton's notification, or a TON transfer carrying a USDT
invoice's reference, is recorded but credits nothing. Messages that belong to our own payouts
(externals, internal_transfer to self, bounces, excesses) are the payout tracker's.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from ton_core import Address, Cell, Slice

from tonrail import clock
from tonrail.ids import new_id
from tonrail.kit.faults import crashpoint
from tonrail.ledger import rules as books
from tonrail.ledger.service import post
from tonrail.payments.models import Payment
from tonrail.payments.states import PaymentStatus
from tonrail.payments.transitions import move_payment
from tonrail.processing.context import TonRailContext
from tonrail.rails.ton.chain_view import EXCESSES_OP, JETTON_NOTIFY_OP, Tx, raw, same_address
from tonrail.rails.ton.models import TonDeposit, TonWalletCursor
from tonrail.rails.ton.states import CREDITING_DEPOSIT_STATES, DepositStatus

log = structlog.get_logger(__name__)

REFERENCE_RE = re.compile(r"TR-[A-HJ-NP-Z2-9]{10}")
CREDITING = CREDITING_DEPOSIT_STATES


@dataclass(frozen=True, slots=True)
class Incoming:
    """One incoming transfer as the watcher understands it."""

    asset: str
    amount: int
    sender: str | None
    comment: str | None
    note: str | None = None  # why it cannot be a payment, when it cannot
    forwarded_ton: int = 0  # TON riding on a jetton notification


def _comment_of(payload: Slice) -> str | None:
    if payload.remaining_bits < 32 or payload.load_uint(32) != 0:
        return None
    try:
        return str(payload.load_snake_string())
    except Exception:  # a malformed comment is still a transfer; it just matches nothing
        return None


def parse_notification(body_b64: str) -> tuple[int, str | None, str | None]:
    """transfer_notification: (jetton amount, original sender, comment)."""
    s = Cell.one_from_boc(base64.b64decode(body_b64)).begin_parse()
    s.skip_bits(32 + 64)
    amount = int(s.load_coins())
    sender = s.load_address()
    sender_raw = raw(sender) if isinstance(sender, Address) else None
    comment = None
    if s.remaining_bits >= 1:
        in_ref = s.load_bit()
        if in_ref and s.remaining_refs:
            comment = _comment_of(s.load_ref().begin_parse())
        elif not in_ref:
            comment = _comment_of(s)
    return amount, sender_raw, comment


def classify(
    tx: Tx, wallet: str, jetton_wallet: str | None, treasury: str | None = None
) -> Incoming | None:
    """What an incoming transaction means for deposits; None when it is a payout's, or a
    top-up from our own treasury (the treasury loop books those)."""
    m = tx.in_msg
    if m is None or m.source is None or same_address(m.source, wallet) or m.bounced:
        return None
    if m.opcode == EXCESSES_OP or same_address(m.source, treasury):
        return None
    if m.opcode == JETTON_NOTIFY_OP and m.body_b64:
        amount, sender, comment = parse_notification(m.body_b64)
        if jetton_wallet is not None and same_address(m.source, jetton_wallet):
            if same_address(sender, treasury):
                return None
            return Incoming("USDT", amount, sender, comment, forwarded_ton=m.value)
        return Incoming(
            "TON",
            m.value,
            m.source,
            comment,
            note="transfer_notification from a jetton wallet that is not ours",
        )
    return Incoming("TON", m.value, m.source, m.comment)


async def _received(session: AsyncSession, payment_id: str) -> int:
    stmt = select(func.coalesce(func.sum(TonDeposit.amount), 0)).where(
        TonDeposit.payment_id == payment_id, TonDeposit.status.in_(CREDITING)
    )
    return int((await session.execute(stmt)).scalar_one())


async def record(ctx: TonRailContext, session: AsyncSession, tx: Tx, inc: Incoming) -> TonDeposit:
    """Record one deposit, credit its invoice if it pays one, and post the books."""
    now = clock.now()
    # A new row, field by field: alike other inserts in shape only.
    deposit = TonDeposit(
        id=new_id("dep"),
        wallet=ctx.wallet_raw,
        tx_hash=tx.hash,
        lt=tx.lt,
        asset=inc.asset,
        amount=inc.amount,
        sender=inc.sender,
        comment=inc.comment,
        status=DepositStatus.UNMATCHED,
        resolution=inc.note,
        created_at=now,
    )
    match = REFERENCE_RE.search(inc.comment or "") if inc.note is None else None
    invoice = None
    if match is not None:
        invoice = (
            await session.execute(
                select(Payment).where(
                    Payment.reference == match.group(0), Payment.direction == "in"
                )
            )
        ).scalar_one_or_none()
    if invoice is not None and invoice.asset != inc.asset:
        deposit.resolution = f"paid in {inc.asset} for a {invoice.asset} invoice"
        invoice = None
    if invoice is not None:
        deposit.payment_id = invoice.id
        open_ = invoice.status == PaymentStatus.AWAITING_PAYMENT and (
            invoice.expires_at is None or tx.now <= int(invoice.expires_at.timestamp())
        )
        if not open_:
            deposit.status = (
                DepositStatus.LATE
                if invoice.status
                in (PaymentStatus.EXPIRED, PaymentStatus.CANCELED, PaymentStatus.AWAITING_PAYMENT)
                else DepositStatus.OVERPAID
            )
            deposit.resolution = f"the invoice was {invoice.status} when this arrived"
        else:
            total = await _received(session, invoice.id) + inc.amount
            deposit.status = (
                DepositStatus.UNDERPAID
                if total < invoice.amount
                else DepositStatus.CREDITED
                if total == invoice.amount
                else DepositStatus.OVERPAID
            )
    session.add(deposit)
    await session.flush()
    if deposit.status in CREDITING:
        assert invoice is not None
        await post(
            session,
            "invoice.received",
            books.payment_received(invoice.account_id, inc.asset, inc.amount, books.HOT_WALLET),
            invoice.id,
        )
        if (
            deposit.status != DepositStatus.UNDERPAID
            and invoice.status == PaymentStatus.AWAITING_PAYMENT
        ):
            await move_payment(session, invoice, PaymentStatus.SUCCEEDED, actor="system:ton")
    else:
        await post(
            session,
            "receipt.unapplied",
            books.receipt_unapplied(inc.asset, inc.amount),
            deposit.payment_id,
        )
    if inc.forwarded_ton:
        await post(
            session, "receipt.forwarded_ton", books.forwarded_ton_received(inc.forwarded_ton)
        )
    if tx.total_fees:
        await post(session, "deposit.fee", books.network_fee(tx.total_fees))
    return deposit


def _treasury(ctx: TonRailContext) -> str | None:
    address = ctx.settings.treasury_address.strip()
    return raw(address) if address else None


async def watch_deposits(ctx: TonRailContext, page: int = 50) -> int:
    """Read the next page of the receiving wallet's transactions; returns deposits recorded."""
    async with ctx.db.transaction() as session:
        cursor = await session.get(TonWalletCursor, ctx.wallet_raw)
        after = cursor.last_lt if cursor is not None else 0
    txs = await ctx.api.account_transactions(ctx.wallet_raw, after, page)
    if not txs:
        return 0
    recorded = 0
    async with ctx.db.transaction() as session:
        cursor = await session.get(TonWalletCursor, ctx.wallet_raw, with_for_update=True)
        if (cursor.last_lt if cursor is not None else 0) != after:
            return 0  # another worker moved the cursor: its page, not ours
        for tx in sorted(txs, key=lambda t: t.lt):
            inc = classify(tx, ctx.wallet_raw, ctx.jetton_wallet, _treasury(ctx))
            if inc is None:
                continue
            exists = (
                await session.execute(select(TonDeposit.id).where(TonDeposit.tx_hash == tx.hash))
            ).scalar_one_or_none()
            if exists is None:
                await record(ctx, session, tx, inc)
                recorded += 1
        crashpoint(ctx.settings, "ton.deposit_before_commit")
        last = max(txs, key=lambda t: t.lt)
        if cursor is None:
            # A new row, field by field: alike other inserts in shape only.
            session.add(
                TonWalletCursor(
                    wallet=ctx.wallet_raw,
                    last_lt=last.lt,
                    last_hash=last.hash,
                    updated_at=clock.now(),
                )
            )
        else:
            cursor.last_lt, cursor.last_hash, cursor.updated_at = last.lt, last.hash, clock.now()
    if recorded:
        log.info("deposits recorded", count=recorded, wallet=ctx.wallet_raw)
    return recorded
