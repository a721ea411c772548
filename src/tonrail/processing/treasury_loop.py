"""Payouts paid from the treasury: one multisig order each, followed until confirmed.

A payout that needed approvers (and passed the in-app gate) is queued with route `treasury`
when TREASURY_ADDRESS is set; the hot wallet's loops never take it. Here:

1. propose: claim it, read the multisig's next order seqno, and store (one transaction) the
   order, the hot wallet's signed highload request carrying `new_order` with that explicit
   seqno, and the payout's move to `processing`; then send. A re-send after a crash is the
   same message (highload refuses a replay); one proposal is in flight at a time, and a
   unique (multisig, seqno) keeps two workers from both taking a seqno.
2. proposed: the order contract holds exactly our order (its hash) -> `proposed`; the hot
   wallet's cost is booked. Someone else's order at that seqno, or our request expired
   without one, proves ours never created an order: the payout fails, nothing moved.
3. approvals are read from the order (`get_order_data`) until it is executed (K approvals,
   from the signers' own wallets) or expires (the payout fails, nothing moved).
4. executed: the multisig's out message carrying our payout message is found and followed
   to the payee (TON: the destination's transaction; USDT: our jetton wallet, then the
   payee's); then, in one transaction, the order is `confirmed`, the payout `succeeded` and
   the books post the payout from `asset:treasury`.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from ton_core import Address, InternalMessage

from tonrail import clock
from tonrail.chain.address import payout_bounce
from tonrail.chain.network import resolve_network
from tonrail.events.service import emit
from tonrail.ids import new_id
from tonrail.kit.claims import claim
from tonrail.kit.faults import crashpoint
from tonrail.ledger import rules as books
from tonrail.ledger.service import post
from tonrail.payments.models import Payment
from tonrail.payments.states import PaymentStatus
from tonrail.payments.transitions import move_payment
from tonrail.processing.context import TonRailContext, transaction
from tonrail.processing.ton_loop import next_query_seq
from tonrail.rails.ton.api import jetton_wallet_of
from tonrail.rails.ton.chain_view import Msg, Tx, raw, same_address
from tonrail.rails.ton.highload import OutTransfer, query_id_for, sign_request
from tonrail.rails.ton.toncenter import ToncenterError
from tonrail.treasury.models import OrderStatus, TreasuryOrder
from tonrail.treasury.multisig import (
    new_order_body,
    order_address,
    order_cell,
    send_message_action,
)
from tonrail.treasury.reader import multisig_state, order_state
from tonrail.treasury.service import (
    ORDER_VALUE_MARGIN,
    order_estimate,
    payout_jetton_message,
    payout_ton_message,
)

log = structlog.get_logger(__name__)

ACTOR = "system:treasury"
LEASE_S = 30.0
FOLLOW_BATCH = 10
OPEN = (OrderStatus.SIGNED, OrderStatus.PROPOSED, OrderStatus.EXECUTED)


def treasury_of(ctx: TonRailContext) -> str | None:
    address = ctx.settings.treasury_address.strip()
    return raw(address) if address else None


async def treasury_round(ctx: TonRailContext) -> int:
    """Propose one due treasury payout and follow the open orders; returns items handled."""
    multisig = treasury_of(ctx)
    if multisig is None:
        return 0
    handled = await propose_due(ctx, multisig)
    return handled + await follow_open(ctx)


# ------------------------------------------------------------------------------ proposing
async def propose_due(ctx: TonRailContext, multisig: str) -> int:
    """Claim the oldest queued treasury payout and store and send its order's proposal."""
    async with transaction(ctx) as session:
        in_flight = await session.scalar(
            select(func.count())
            .select_from(TreasuryOrder)
            .where(TreasuryOrder.status == OrderStatus.SIGNED)
        )
        if in_flight:
            return 0  # seqnos are taken one after another: one proposal on its way at a time
        claimed = await claim(
            session,
            Payment,
            (Payment.direction == "out")
            & (Payment.status == PaymentStatus.QUEUED)
            & (Payment.route == "treasury"),
            worker_id=ctx.worker_id,
            lease_seconds=LEASE_S,
            limit=1,
            order_by=[Payment.created_at],
        )
    if not claimed:
        return 0
    payment = claimed[0]
    state = await multisig_state(ctx.api, multisig)
    proposers = [raw(a) for a in state.proposers]
    if ctx.wallet_raw not in proposers:
        log.error("the hot wallet is not a proposer of the treasury", treasury=multisig)
        return 0
    message, message_hash = await _payout_message(ctx, multisig, payment)
    now = int(clock.now().timestamp())
    expiration = now + ctx.settings.treasury_order_lifetime_seconds
    order = order_cell([send_message_action(message)])
    value = await order_estimate(ctx.api, multisig, order, expiration) + ORDER_VALUE_MARGIN
    body = new_order_body(
        order,
        expiration_date=expiration,
        signer=False,
        index=proposers.index(ctx.wallet_raw),
        order_seqno=state.next_order_seqno,
    )
    hot_state, _ = await ctx.api.account_state(ctx.wallet_raw)
    try:
        async with transaction(ctx) as session:
            fresh = await session.get(Payment, payment.id, with_for_update=True)
            if (
                fresh is None
                or fresh.status != PaymentStatus.QUEUED
                or fresh.locked_by != ctx.worker_id
            ):
                return 0
            seq = await next_query_seq(session, ctx.wallet_raw)
            created_at = now - ctx.settings.ton_created_at_lag_s
            signed = sign_request(
                ctx.wallet,
                ctx.sign,
                [OutTransfer(Address(multisig), value, True, body)],
                query_id=query_id_for(seq),
                created_at=created_at,
                deploy=hot_state != "active",  # a new hot wallet deploys with its first request
            )
            row = TreasuryOrder(
                id=new_id("tord"),
                payment_id=fresh.id,
                multisig=multisig,
                order_seqno=state.next_order_seqno,
                order_address=raw(order_address(Address(multisig), state.next_order_seqno)),
                order_hash=bytes(order.hash).hex(),
                message_hash=message_hash,
                expiration_date=expiration,
                proposal_value=value,
                query_seq=seq,
                valid_until=created_at + ctx.wallet.timeout,
                boc=signed.boc,
                msg_hash_norm=signed.message_hash_norm,
                status=OrderStatus.SIGNED,
                approvals=0,
                threshold=state.threshold,
                send_count=0,
                created_at=clock.now(),
                updated_at=clock.now(),
            )
            session.add(row)
            await move_payment(session, fresh, PaymentStatus.PROCESSING, actor=ACTOR)
            emit(
                session,
                "payout.treasury_order_created",
                fresh.account_id,
                {"id": fresh.id, "order": row.order_address, "order_seqno": row.order_seqno},
                fresh.id,
            )
    except IntegrityError:
        return 0  # another worker took this seqno first: the next round reads the next one
    crashpoint(ctx.settings, "treasury.order_created")
    await _send(ctx, row)
    return 1


async def _payout_message(
    ctx: TonRailContext, multisig: str, payment: Payment
) -> tuple[InternalMessage, str]:
    """The payout's message from the treasury and its body's hash."""
    destination = Address(payment.counterparty or "")
    comment = payment.id
    if payment.asset == "TON":
        message = payout_ton_message(
            destination,
            payment.amount,
            comment,
            bounce=payout_bounce(payment.counterparty or "", "TON"),
        )
    else:
        master = resolve_network(ctx.settings).usdt_master
        if master is None:
            raise ValueError("USDT payouts need USDT_JETTON_MASTER")
        jettons = await jetton_wallet_of(ctx.api, master, multisig)
        message = payout_jetton_message(
            Address(jettons),
            Address(multisig),
            destination,
            payment.amount,
            comment,
            attach_ton=ctx.gas_caps.jetton_transfer_attach,
            forward_ton=ctx.settings.ton_jetton_forward_nanoton,
        )
    return message, bytes(message.body.hash).hex()


async def _send(ctx: TonRailContext, row: TreasuryOrder) -> None:
    try:
        await ctx.api.send_boc(row.boc)
    except ToncenterError as exc:
        # Refused now (e.g. already processed): the chain will tell; never a new message.
        log.info("treasury proposal not accepted on send", order=row.id, error=str(exc))
    async with transaction(ctx) as session:
        fresh = await session.get(TreasuryOrder, row.id)
        if fresh is not None:
            fresh.send_count += 1
            fresh.last_sent_at = clock.now()


# ------------------------------------------------------------------------------ following
async def follow_open(ctx: TonRailContext) -> int:
    """Move each open order on by what the chain shows now."""
    async with transaction(ctx) as session:
        rows = await claim(
            session,
            TreasuryOrder,
            TreasuryOrder.status.in_(OPEN),
            worker_id=ctx.worker_id,
            lease_seconds=LEASE_S,
            limit=FOLLOW_BATCH,
            order_by=[TreasuryOrder.created_at],
        )
    if not rows:
        return 0
    moved = 0
    for row in rows:
        try:
            if row.status == OrderStatus.SIGNED:
                moved += await _follow_proposal(ctx, row)
            elif row.status == OrderStatus.PROPOSED:
                moved += await _follow_approvals(ctx, row)
            else:
                moved += await _follow_payout(ctx, row)
        except ToncenterError as exc:
            log.info("treasury order not readable now", order=row.id, error=str(exc))
    async with transaction(ctx) as session:  # followed: the next round may take them again
        await session.execute(
            update(TreasuryOrder)
            .where(
                TreasuryOrder.id.in_([r.id for r in rows]),
                TreasuryOrder.locked_by == ctx.worker_id,
            )
            .values(locked_by=None, locked_until=None)
        )
    return moved


async def _follow_proposal(ctx: TonRailContext, row: TreasuryOrder) -> int:
    status, _ = await ctx.api.account_state(row.order_address)
    if status == "active":
        order = await order_state(ctx.api, row.order_address)
        ours = order.order is not None and bytes(order.order.hash).hex() == row.order_hash
        if not ours:
            await _fail(ctx, row, "treasury_seqno_taken", "another order took this seqno")
            return 1
        cost = await _proposal_cost(ctx, row)
        if cost is None:
            return 0  # the order is there; the hot wallet's transactions not indexed yet
        async with transaction(ctx) as session:
            fresh = await _reload(session, row, OrderStatus.SIGNED)
            if fresh is None:
                return 0
            fresh.status = OrderStatus.PROPOSED
            fresh.approvals, fresh.threshold = order.approvals, order.threshold
            fresh.updated_at = clock.now()
            await post(
                session,
                "treasury.order_funded",
                books.treasury_order_funded(row.proposal_value, cost),
                row.payment_id,
            )
        return 1
    now = int(clock.now().timestamp())
    if now > row.valid_until + ctx.settings.ton_expiry_margin_s:
        # The hot wallet refuses the request from now on, and no order holds ours.
        await _fail(ctx, row, "treasury_proposal_expired", "the proposal expired unprocessed")
        return 1
    last = row.last_sent_at
    if last is None or clock.now() - last >= timedelta(seconds=ctx.settings.ton_resend_seconds):
        await _send(ctx, row)
    return 0


async def _proposal_cost(ctx: TonRailContext, row: TreasuryOrder) -> int | None:
    """What the hot wallet paid besides the order's value: the fees of its two transactions
    (the external, then the internal_transfer to itself) and of the messages they sent."""
    external = await ctx.api.tx_by_in_message(row.msg_hash_norm)
    if external is None or not external.out_msgs:
        return None
    to_self = external.out_msgs[0]
    inner = await ctx.api.tx_by_in_message(to_self.hash)
    if inner is None:
        return None
    proposal = next((m for m in inner.out_msgs if same_address(m.destination, row.multisig)), None)
    if proposal is None:
        return None
    return external.total_fees + to_self.fwd_fee + inner.total_fees + proposal.fwd_fee


async def _follow_approvals(ctx: TonRailContext, row: TreasuryOrder) -> int:
    order = await order_state(ctx.api, row.order_address)
    now = int(clock.now().timestamp())
    if not order.executed and now > row.expiration_date:
        await _fail(ctx, row, "treasury_order_expired", "the order expired unapproved")
        return 1
    if order.approvals == row.approvals and not order.executed:
        return 0
    async with transaction(ctx) as session:
        fresh = await _reload(session, row, OrderStatus.PROPOSED)
        if fresh is None:
            return 0
        fresh.approvals = order.approvals
        fresh.updated_at = clock.now()
        if order.executed:
            fresh.status = OrderStatus.EXECUTED
        emit(
            session,
            "payout.treasury_order_approved",
            "system",
            {
                "id": row.payment_id,
                "order": row.order_address,
                "approvals": order.approvals,
                "threshold": row.threshold,
                "executed": order.executed,
            },
            row.payment_id,
        )
    crashpoint(ctx.settings, "treasury.executed" if order.executed else "treasury.partly_approved")
    return 1


async def _follow_payout(ctx: TonRailContext, row: TreasuryOrder) -> int:
    sent = await _payout_out_message(ctx, row)
    if sent is None:
        return 0
    arrived = await _delivered(ctx, sent)
    if arrived is None:
        return 0
    if not arrived:
        await _fail(ctx, row, "treasury_payout_bounced", "the payee's side refused the payout")
        return 1
    async with transaction(ctx) as session:
        fresh = await _reload(session, row, OrderStatus.EXECUTED)
        if fresh is None:
            return 0
        payment = await session.get(Payment, row.payment_id, with_for_update=True)
        assert payment is not None
        fresh.status = OrderStatus.CONFIRMED
        fresh.payout_tx_hash = sent.hash
        fresh.updated_at = clock.now()
        fee = sent.fwd_fee if payment.asset == "TON" else 0
        await post(
            session,
            f"payout.{PaymentStatus.SUCCEEDED}",
            books.payout_sent(payment.asset, payment.amount, fee, "TON", books.TREASURY),
            payment.id,
        )
        await move_payment(session, payment, PaymentStatus.SUCCEEDED, actor=ACTOR)
        crashpoint(ctx.settings, "treasury.confirmed")
    return 1


async def _payout_out_message(ctx: TonRailContext, row: TreasuryOrder) -> Msg | None:
    """The multisig's out message that carries our payout message (found by body hash)."""
    txs: list[Tx] = await ctx.api.account_transactions(row.multisig, 0, 256)
    for tx in txs:
        for m in tx.out_msgs:
            if m.body_hash is not None and m.body_hash.lower() == row.message_hash:
                return m
    return None


async def _delivered(ctx: TonRailContext, sent: Msg) -> bool | None:
    """True when the payout reached the payee, False when it bounced, None: not yet seen."""
    tx = await ctx.api.tx_by_in_message(sent.hash)
    if tx is None:
        return None
    bounced = any(m.bounced for m in tx.out_msgs)
    if sent.opcode is None or sent.opcode == 0:  # a TON transfer with a comment
        return not bounced
    if tx.aborted or bounced:
        return False
    onward = next((m for m in tx.out_msgs if not same_address(m.destination, sent.source)), None)
    if onward is None:
        return False
    payee = await ctx.api.tx_by_in_message(onward.hash)
    if payee is None:
        return None
    return not payee.aborted


async def _reload(
    session: AsyncSession, row: TreasuryOrder, status: OrderStatus
) -> TreasuryOrder | None:
    fresh: TreasuryOrder | None = await session.get(TreasuryOrder, row.id, with_for_update=True)
    if fresh is None or fresh.status != status:
        return None
    return fresh


async def _fail(ctx: TonRailContext, row: TreasuryOrder, code: str, message: str) -> None:
    """The order can never pay: it fails, and the payout with it (its reservation returns)."""
    async with transaction(ctx) as session:
        fresh = await session.get(TreasuryOrder, row.id, with_for_update=True)
        if fresh is None or fresh.status not in OPEN:
            return
        fresh.status = OrderStatus.FAILED
        fresh.error = f"{code}: {message}"
        fresh.updated_at = clock.now()
        payment = await session.get(Payment, row.payment_id, with_for_update=True)
        if payment is not None and payment.status == PaymentStatus.PROCESSING:
            await move_payment(
                session,
                payment,
                PaymentStatus.FAILED,
                actor=ACTOR,
                failure_code=code,
                failure_message=message,
            )
    log.warning("treasury order failed", order=row.id, payment=row.payment_id, code=code)
