"""The deposit watcher: reads the receiving wallet's transactions in lt order, once each.

The cursor (last lt and hash) advances in the same database transaction that records the
deposits and posts their ledger lines, and each deposit is unique on its transaction hash:
a crash anywhere re-reads from the last committed cursor, with no gap and no double credit.

What counts (TON-NOTES): a TON deposit is an incoming internal message whose comment carries
an invoice reference; a USDT deposit is a `transfer_notification` sent by OUR jetton wallet of
the allow-listed master. A fake jetton's notification, or a TON transfer carrying a USDT
invoice's reference, is recorded but credits nothing. Messages that belong to our own payouts
(externals, internal_transfer to self, bounces, excesses) are the payout tracker's.

AML/KYC screening (docs/COMPLIANCE.md): every new transfer that carries an invoice reference
has its sender screened before the page's transaction (a provider may answer slowly), and
the decision is stored with the deposit it decided. `blocked`: the deposit is `frozen`
(booked to liability:screening_frozen, never to the merchant), its open invoice fails with
`screening_blocked` and the alert `screening_blocked` opens. `review`: a deposit that would
credit an invoice is `held` (liability:screening_held) and its open invoice waits in
`processing` (hold_reason `screening_review`) until an approver releases or freezes it
(resolutions.py `decide_held`). An invoice can have several payments held at once (TON
deposits, a card, PayPal or bank payment: processing/payer_screening.py): it leaves
`screening_review` only once none is held any more (`settle_review`).
"""

from __future__ import annotations

import base64
import re
import time
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
from tonrail.money import format_minor
from tonrail.monitoring.signals import SCREENING_BLOCKED, write_signal
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.states import AttemptStatus, PaymentStatus
from tonrail.payments.transitions import move_payment
from tonrail.processing.context import TonRailContext
from tonrail.rails.ton.api import jetton_wallet_of
from tonrail.rails.ton.chain_view import EXCESSES_OP, JETTON_NOTIFY_OP, Tx, raw, same_address
from tonrail.rails.ton.models import TonDeposit, TonWalletCursor, TonWalletRotation
from tonrail.rails.ton.states import (
    CREDITING_DEPOSIT_STATES,
    SWEPT_ROTATION_STATES,
    DepositStatus,
    RotationState,
)
from tonrail.screening.rules import Outcome, Subject, Verdict
from tonrail.screening.service import (
    DEPOSIT_CREDIT,
    FROZEN_MARK,
    HELD_MARK,
    RELEASED_MARK,
    REVIEW_HOLD,
    SCREENING_MARK,
    store_decision,
)

log = structlog.get_logger(__name__)

HELD = frozenset({DepositStatus.HELD})
HELD_OR_CREDITING = CREDITING_DEPOSIT_STATES | HELD
REFERENCE_RE = re.compile(r"TR-[A-HJ-NP-Z2-9]{10}")
CREDITING = CREDITING_DEPOSIT_STATES


# A sender's screening: whom, and what the providers answered (None: screening is off).
Screened = tuple[Subject, Verdict]
SCREENING_ACTOR = "system:ton"


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


async def _received(
    session: AsyncSession, payment_id: str, states: frozenset[DepositStatus] = CREDITING
) -> int:
    stmt = select(func.coalesce(func.sum(TonDeposit.amount), 0)).where(
        TonDeposit.payment_id == payment_id, TonDeposit.status.in_(states)
    )
    return int((await session.execute(stmt)).scalar_one())


def held_for_review(invoice: Payment) -> bool:
    """An invoice waiting for an approver's decision on a deposit screening held."""
    return invoice.status == PaymentStatus.PROCESSING and invoice.hold_reason == REVIEW_HOLD


async def fail_for_screening(
    session: AsyncSession, invoice: Payment, deposit_id: str, actor: str = SCREENING_ACTOR
) -> None:
    """An invoice paid (in whole or part) from a blocked sender: it fails with
    `screening_blocked` if it was still open; the merchant must not deliver. One held for
    review with another payment still held waits for that decision (`settle_review`)."""
    why = (
        f"deposit {deposit_id} came from a sender AML/KYC screening blocks: it is frozen, "
        "not credited"
    )
    if held_for_review(invoice):
        await settle_review(session, invoice, actor, why)
    elif invoice.status == PaymentStatus.AWAITING_PAYMENT:
        await move_payment(
            session,
            invoice,
            PaymentStatus.FAILED,
            actor=actor,
            failure_code="screening_blocked",
            failure_message=why,
            values={"hold_reason": None},
        )


async def record(
    ctx: TonRailContext,
    session: AsyncSession,
    tx: Tx,
    inc: Incoming,
    screened: Screened | None = None,
    wallet: str | None = None,
    holder: str = books.HOT_WALLET,
) -> TonDeposit:
    """Record one deposit to `wallet` (default: the hot wallet), credit its invoice if it
    pays one, and post the books on `holder` (the ledger account of the wallet it reached);
    a sender screening blocked is frozen, one it holds for review is held (`screened`)."""
    now = clock.now()
    # A new row, field by field: alike other inserts in shape only.
    deposit = TonDeposit(
        id=new_id("dep"),
        wallet=wallet or ctx.wallet_raw,
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
        open_ = (invoice.status == PaymentStatus.AWAITING_PAYMENT or held_for_review(invoice)) and (
            invoice.expires_at is None or tx.now <= int(invoice.expires_at.timestamp())
        )
        if not open_:
            deposit.status = (
                DepositStatus.LATE
                if invoice.status
                in (
                    PaymentStatus.EXPIRED,
                    PaymentStatus.CANCELED,
                    PaymentStatus.AWAITING_PAYMENT,
                    PaymentStatus.FAILED,
                    PaymentStatus.PROCESSING,
                )
                else DepositStatus.OVERPAID
            )
            deposit.resolution = f"the invoice was {invoice.status} when this arrived"
        else:
            # Deposits held for review count towards the amount (they may be released).
            total = await _received(session, invoice.id, HELD_OR_CREDITING) + inc.amount
            deposit.status = (
                DepositStatus.UNDERPAID
                if total < invoice.amount
                else DepositStatus.CREDITED
                if total == invoice.amount
                else DepositStatus.OVERPAID
            )
    outcome = screened[1].outcome if screened is not None else Outcome.CLEAR
    why = f": {screened[1].reason}" if screened is not None and screened[1].reason else ""
    if outcome == Outcome.BLOCKED:
        deposit.status = DepositStatus.FROZEN
        deposit.resolution = f"frozen by AML/KYC screening{why}"
    elif outcome == Outcome.REVIEW and deposit.status in CREDITING:
        deposit.status = DepositStatus.HELD
        deposit.resolution = f"held by AML/KYC screening for review{why}"
    session.add(deposit)
    await session.flush()
    # The hot wallet's transaction these entries book (a USDT credit: the notification that
    # reported it; reconcile.py compares USDT only at quiet points).
    lts = (tx.lt, tx.lt)
    if screened is not None:
        await store_decision(
            session,
            screened[1],
            stage=DEPOSIT_CREDIT,
            subject=screened[0],
            payment_id=deposit.payment_id,
            requested_by=SCREENING_ACTOR,
            deposit_id=deposit.id,
        )
    if deposit.status in (DepositStatus.FROZEN, DepositStatus.HELD):
        frozen = deposit.status == DepositStatus.FROZEN
        account = books.SCREENING_FROZEN if frozen else books.SCREENING_HELD
        await post(
            session,
            f"deposit.screening_{'frozen' if frozen else 'held'}",
            books.receipt_set_apart(account, inc.asset, inc.amount, holder),
            deposit.payment_id,
            lts=lts,
        )
        if frozen:
            await write_signal(session, SCREENING_BLOCKED, 1, kind="counter")
            log.warning("deposit frozen by screening", deposit=deposit.id, tx=tx.hash)
            if invoice is not None:
                await fail_for_screening(session, invoice, deposit.id)
        elif invoice is not None and invoice.status == PaymentStatus.AWAITING_PAYMENT:
            await move_payment(
                session,
                invoice,
                PaymentStatus.PROCESSING,
                actor=SCREENING_ACTOR,
                values={"hold_reason": REVIEW_HOLD},
            )
    elif deposit.status in CREDITING:
        assert invoice is not None
        await post(
            session,
            "invoice.received",
            books.payment_received(invoice.account_id, inc.asset, inc.amount, holder),
            invoice.id,
            lts=lts,
        )
        if (
            deposit.status != DepositStatus.UNDERPAID
            and invoice.status == PaymentStatus.AWAITING_PAYMENT
        ):
            await move_payment(session, invoice, PaymentStatus.SUCCEEDED, actor="system:ton")
        elif deposit.status != DepositStatus.UNDERPAID and held_for_review(invoice):
            await settle_review(session, invoice, SCREENING_ACTOR)
    else:
        await post(
            session,
            "receipt.unapplied",
            books.receipt_unapplied(inc.asset, inc.amount, holder),
            deposit.payment_id,
            lts=lts,
        )
    if inc.forwarded_ton:
        await post(
            session,
            "receipt.forwarded_ton",
            books.forwarded_ton_received(inc.forwarded_ton, holder),
            lts=lts,
        )
    if tx.total_fees:
        await post(session, "deposit.fee", books.network_fee(tx.total_fees, holder=holder), lts=lts)
    return deposit


def _treasury(ctx: TonRailContext) -> str | None:
    address = ctx.settings.treasury_address.strip()
    return raw(address) if address else None


async def _screened_payment_marks(session: AsyncSession, invoice_id: str) -> list[str]:
    """The screening marks of the invoice's confirmed card, PayPal and bank payments."""
    rows = await session.execute(
        select(Attempt.details).where(
            Attempt.payment_id == invoice_id,
            Attempt.rail != "ton",
            Attempt.status == AttemptStatus.CONFIRMED,
        )
    )
    return [str((d or {}).get(SCREENING_MARK) or "") for d in rows.scalars()]


async def still_held(session: AsyncSession, invoice_id: str) -> bool:
    """Whether any payment of the invoice (a TON deposit, a card, PayPal or bank payment)
    is still held for an approver's decision."""
    if await _received(session, invoice_id, HELD):
        return True
    return HELD_MARK in await _screened_payment_marks(session, invoice_id)


async def settle_review(
    session: AsyncSession, invoice: Payment, actor: str, frozen_why: str | None = None
) -> None:
    """An invoice held for review leaves `screening_review` only when none of its payments
    is held any more: then it fails with `screening_blocked` if any was frozen (the merchant
    must not deliver; what was released stays credited, as with a blocked sender's deposit
    after a credited one), else succeeds if what was credited covers it (a released card,
    PayPal or bank payment pays it in full), else awaits payment again (its expiry applies
    as before). Called after every decision and credit of a held invoice."""
    if not held_for_review(invoice) or await still_held(session, invoice.id):
        return
    marks = await _screened_payment_marks(session, invoice.id)
    frozen_deposits = await session.scalar(
        select(func.count())
        .select_from(TonDeposit)
        .where(TonDeposit.payment_id == invoice.id, TonDeposit.status == DepositStatus.FROZEN)
    )
    if frozen_deposits or FROZEN_MARK in marks:
        await move_payment(
            session,
            invoice,
            PaymentStatus.FAILED,
            actor=actor,
            failure_code="screening_blocked",
            failure_message=frozen_why
            or "a payment of it is frozen by AML/KYC screening, not credited",
            values={"hold_reason": None},
        )
        return
    paid = RELEASED_MARK in marks or await _received(session, invoice.id) >= invoice.amount
    target = PaymentStatus.SUCCEEDED if paid else PaymentStatus.AWAITING_PAYMENT
    await move_payment(session, invoice, target, actor=actor, values={"hold_reason": None})


async def screen_senders(
    ctx: TonRailContext, txs: list[Tx], wallet: str, jetton_wallet: str | None
) -> dict[str, Screened]:
    """AML/KYC screening of the senders of new transfers that name an invoice, by
    transaction hash, before the page's transaction. Other transfers credit nobody (an
    operator resolves them; a refund of one is screened then)."""
    screening = ctx.payments.screening
    if screening is None:
        return {}
    todo: list[tuple[Tx, Incoming]] = []
    for tx in txs:
        inc = classify(tx, wallet, jetton_wallet, _treasury(ctx))
        if inc is None or not inc.sender or inc.note is not None:
            continue
        if REFERENCE_RE.search(inc.comment or "") is not None:
            todo.append((tx, inc))
    if not todo:
        return {}
    async with ctx.db.transaction() as session:
        hashes = [tx.hash for tx, _ in todo]
        seen = set(
            (
                await session.execute(
                    select(TonDeposit.tx_hash).where(TonDeposit.tx_hash.in_(hashes))
                )
            ).scalars()
        )
    out: dict[str, Screened] = {}
    for tx, inc in todo:
        if tx.hash in seen:
            continue
        subject = Subject(inc.sender)
        context = {
            "direction": "in",
            "asset": inc.asset,
            "amount": format_minor(inc.amount, inc.asset),
        }
        out[tx.hash] = (subject, await screening.decide(subject, context))
    return out


async def watch_deposits(ctx: TonRailContext, page: int = 50) -> int:
    """Read the next page of the hot wallet's transactions, and of every hot wallet a
    rotation retired (late deposits to an old address are still credited, and booked on
    `asset:retired_hot_wallets`, where the money is); returns deposits recorded."""
    recorded = await watch_wallet(ctx, ctx.wallet_raw, ctx.jetton_wallet, page)
    for wallet, jetton_wallet in (await retired_wallets(ctx)).items():
        recorded += await watch_wallet(ctx, wallet, jetton_wallet, page)
    return recorded


# The retired wallets are re-read at least this often (seconds), and at once when this
# worker signs with another wallet: a switch in another process is seen by the time this
# worker adopts it (processing/ton_loop.py), or by this bound (a retired wallet's late
# deposits are then credited up to this much later; nothing is lost: its cursor is kept).
RETIRED_WALLETS_REREAD_S = 30.0


async def retired_wallets(ctx: TonRailContext) -> dict[str, str | None]:
    """Hot wallets retired by a switched rotation (not the one we sign with), with their
    USDT jetton wallets (asked of the chain once per worker). Read from the rotations at
    most every RETIRED_WALLETS_REREAD_S, or when the wallet this worker signs with changed;
    otherwise no query."""
    now = time.monotonic()
    read = ctx.retired_wallets_read
    if read is None or read[0] != ctx.wallet_raw or now - read[1] >= RETIRED_WALLETS_REREAD_S:
        async with ctx.db.transaction() as session:
            olds = (
                await session.execute(
                    select(TonWalletRotation.old_wallet).where(
                        TonWalletRotation.state == RotationState.SWITCHED,
                        TonWalletRotation.old_wallet != ctx.wallet_raw,
                    )
                )
            ).scalars()
            ctx.retired_wallets = tuple(sorted(set(olds)))
        ctx.retired_wallets_read = (ctx.wallet_raw, now)
    master = ctx.network.usdt_master
    for wallet in ctx.retired_wallets:
        if wallet not in ctx.retired_jetton_wallets:
            ctx.retired_jetton_wallets[wallet] = (
                await jetton_wallet_of(ctx.api, master, wallet) if master else None
            )
    return {w: ctx.retired_jetton_wallets[w] for w in ctx.retired_wallets}


async def _holder(session: AsyncSession, wallet: str, cursor: TonWalletCursor | None) -> str:
    """The ledger account of what reaches `wallet`: the hot wallet's, or once a rotation has
    swept it, the retired wallets' (what arrives after the sweep stays on the old address).
    Read from the cursor row the caller locked, which the sweep's booking marks holding the
    same lock (no query); a wallet with no cursor yet asks the rotations."""
    if cursor is not None:
        return books.RETIRED_HOT_WALLETS if cursor.retired else books.HOT_WALLET
    rotation = (
        await session.execute(
            select(TonWalletRotation.state).where(
                TonWalletRotation.old_wallet == wallet,
                TonWalletRotation.state.in_(SWEPT_ROTATION_STATES),
            )
        )
    ).first()
    return books.RETIRED_HOT_WALLETS if rotation is not None else books.HOT_WALLET


async def watch_wallet(
    ctx: TonRailContext, wallet: str, jetton_wallet: str | None, page: int = 50
) -> int:
    """Read the next page of one wallet's transactions; returns deposits recorded."""
    async with ctx.db.transaction() as session:
        cursor = await session.get(TonWalletCursor, wallet)
        after = cursor.last_lt if cursor is not None else 0
    txs = await ctx.api.account_transactions(wallet, after, page)
    if not txs:
        return 0
    screened = await screen_senders(ctx, txs, wallet, jetton_wallet)
    recorded = 0
    async with ctx.db.transaction() as session:
        cursor = await session.get(TonWalletCursor, wallet, with_for_update=True)
        if (cursor.last_lt if cursor is not None else 0) != after:
            return 0  # another worker moved the cursor: its page, not ours
        holder = await _holder(session, wallet, cursor)
        for tx in sorted(txs, key=lambda t: t.lt):
            inc = classify(tx, wallet, jetton_wallet, _treasury(ctx))
            if inc is None:
                continue
            exists = (
                await session.execute(select(TonDeposit.id).where(TonDeposit.tx_hash == tx.hash))
            ).scalar_one_or_none()
            if exists is None:
                await record(ctx, session, tx, inc, screened.get(tx.hash), wallet, holder)
                recorded += 1
        crashpoint(ctx.settings, "ton.deposit_before_commit")
        last = max(txs, key=lambda t: t.lt)
        if cursor is None:
            # A new row, field by field: alike other inserts in shape only.
            session.add(
                TonWalletCursor(
                    wallet=wallet,
                    last_lt=last.lt,
                    last_hash=last.hash,
                    updated_at=clock.now(),
                    retired=holder == books.RETIRED_HOT_WALLETS,
                )
            )
        else:
            cursor.last_lt, cursor.last_hash, cursor.updated_at = last.lt, last.hash, clock.now()
    if recorded:
        log.info("deposits recorded", count=recorded, wallet=wallet, account=holder)
    return recorded
