"""Payouts paid from the treasury: one multisig order each, followed until confirmed.

A payout that needed approvers (and passed the in-app gate) is queued with route `treasury`
when TREASURY_ADDRESS is set; the hot wallet's loops never take it. Here:

1. propose: claim it, read the multisig's next order seqno, and store (one transaction) the
   order, the hot wallet's signed highload request carrying `new_order` with that explicit
   seqno, and the payout's move to `processing`; then send. A re-send after a crash is the
   same message (highload refuses a replay; a copy refused as already executed is not sent
   again: it landed); one proposal is in flight at a time, and a unique (multisig, seqno)
   keeps two workers from both taking a seqno.
2. proposed: the order contract holds exactly our order (its hash) -> `proposed`; the hot
   wallet's cost is booked. Otherwise the proposal's trace is read to its end (the hot
   wallet's external and internal_transfer, the multisig's transaction, the bounce taken
   back): when the multisig refused `new_order` (its exit code: a stale seqno another order
   took, not a proposer, too little TON, expired), the payout fails and, in the same
   transaction, what the hot wallet lost to it is booked (`treasury_proposal_refused`). Only
   a request proven never to have landed (past its validity, `processed?` false, no
   transaction) fails with nothing booked.
3. approvals are read from the order (`get_order_data`) until it is executed (K approvals,
   from the signers' own wallets) or expires (the payout fails, nothing moved).
4. executed: the multisig's out message carrying our payout message is found and followed
   to the payee (TON: the destination's transaction; USDT: our jetton wallet, then the
   payee's); then, in one transaction, the order is `confirmed`, the payout `succeeded` and
   the books post the payout from `asset:treasury`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

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
from tonrail.processing.ton_track import processed_flag
from tonrail.rails.ton.api import jetton_balance, jetton_wallet_of
from tonrail.rails.ton.chain_view import Msg, Tx, raw, same_address, ton_change
from tonrail.rails.ton.highload import OutTransfer, query_id_for, sign_request
from tonrail.rails.ton.stored_send import SendOutcome, send_stored
from tonrail.rails.ton.toncenter import ToncenterError
from tonrail.treasury.models import OrderPurpose, OrderStatus, TreasuryOrder
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
TOPUP_COMMENT = "tonrail: hot wallet top-up from the treasury"


def treasury_of(ctx: TonRailContext) -> str | None:
    address = ctx.settings.treasury_address.strip()
    return raw(address) if address else None


async def treasury_round(ctx: TonRailContext) -> int:
    """Propose one due treasury payout and follow the open orders; returns items handled."""
    multisig = treasury_of(ctx)
    if multisig is None:
        return 0
    handled = await propose_due(ctx, multisig)
    handled += await propose_topup(ctx, multisig)
    return handled + await follow_open(ctx)


# ------------------------------------------------------------------------------ proposing
async def _in_flight(ctx: TonRailContext) -> bool:
    async with transaction(ctx) as session:
        count = await session.scalar(
            select(func.count())
            .select_from(TreasuryOrder)
            .where(TreasuryOrder.status == OrderStatus.SIGNED)
        )
    return bool(count)  # seqnos are taken one after another: one proposal at a time


async def propose_due(ctx: TonRailContext, multisig: str) -> int:
    """Claim the oldest queued treasury payout and store and send its order's proposal."""
    if await _in_flight(ctx):
        return 0
    async with transaction(ctx) as session:
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
    message, message_hash = await _payout_message(ctx, multisig, payment)
    proposal = Proposal(
        OrderPurpose.PAYOUT, payment.asset, payment.amount, message, message_hash, payment.id
    )
    return await _propose(ctx, multisig, proposal)


async def propose_topup(ctx: TonRailContext, multisig: str) -> int:
    """Propose a top-up order when the hot wallet's float is below its floor and no top-up
    of that asset is open (approvers still decide: it is an order like any other)."""
    wants = [
        (asset, floor, amount)
        for asset, floor, amount in (
            ("TON", ctx.settings.alert_hot_wallet_floor_ton, ctx.settings.treasury_topup_ton),
            ("USDT", ctx.settings.alert_hot_wallet_floor_usdt, ctx.settings.treasury_topup_usdt),
        )
        if floor > 0 and amount > 0 and (asset == "TON" or ctx.jetton_wallet)
    ]
    if not wants or await _in_flight(ctx):
        return 0
    async with transaction(ctx) as session:
        open_assets = set(
            (
                await session.execute(
                    select(TreasuryOrder.asset).where(
                        TreasuryOrder.purpose == OrderPurpose.TOPUP,
                        TreasuryOrder.status.in_(OPEN),
                    )
                )
            ).scalars()
        )
    for asset, floor, amount in wants:
        if asset in open_assets:
            continue
        if asset == "TON":
            float_now = (await ctx.api.account_state(ctx.wallet_raw))[1]
        else:
            float_now = await jetton_balance(ctx.api, ctx.jetton_wallet or "")
        if float_now >= floor:
            continue
        hot = Address(ctx.wallet_raw)
        message = (
            payout_ton_message(hot, amount, TOPUP_COMMENT, bounce=True)
            if asset == "TON"
            else await _jetton_message(ctx, multisig, hot, amount, TOPUP_COMMENT)
        )
        proposal = Proposal(
            OrderPurpose.TOPUP, asset, amount, message, bytes(message.body.hash).hex(), None
        )
        return await _propose(ctx, multisig, proposal)
    return 0


@dataclass(frozen=True)
class Proposal:
    purpose: OrderPurpose
    asset: str
    amount: int
    message: InternalMessage
    message_hash: str
    payment_id: str | None


async def _propose(ctx: TonRailContext, multisig: str, proposal: Proposal) -> int:
    """Store the order and the hot wallet's signed `new_order` request, then send it."""
    state = await multisig_state(ctx.api, multisig)
    proposers = [raw(a) for a in state.proposers]
    if ctx.wallet_raw not in proposers:
        log.error("the hot wallet is not a proposer of the treasury", treasury=multisig)
        return 0
    now = int(clock.now().timestamp())
    expiration = now + ctx.settings.treasury_order_lifetime_seconds
    order = order_cell([send_message_action(proposal.message)])
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
            payment = None
            if proposal.payment_id is not None:
                payment = await session.get(Payment, proposal.payment_id, with_for_update=True)
                if (
                    payment is None
                    or payment.status != PaymentStatus.QUEUED
                    or payment.locked_by != ctx.worker_id
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
                purpose=proposal.purpose,
                payment_id=proposal.payment_id,
                asset=proposal.asset,
                amount=proposal.amount,
                multisig=multisig,
                order_seqno=state.next_order_seqno,
                order_address=raw(order_address(Address(multisig), state.next_order_seqno)),
                order_hash=bytes(order.hash).hex(),
                message_hash=proposal.message_hash,
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
            created = {"order": row.order_address, "order_seqno": row.order_seqno}
            if payment is not None:
                await move_payment(session, payment, PaymentStatus.PROCESSING, actor=ACTOR)
                emit(
                    session,
                    "payout.treasury_order_created",
                    payment.account_id,
                    {"id": payment.id, **created},
                    payment.id,
                )
            else:
                emit(
                    session,
                    "treasury.topup_proposed",
                    "system",
                    {"asset": row.asset, "amount": str(row.amount), **created},
                    row.id,
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
        message = await _jetton_message(ctx, multisig, destination, payment.amount, comment)
    return message, bytes(message.body.hash).hex()


async def _jetton_message(
    ctx: TonRailContext, multisig: str, recipient: Address, amount: int, comment: str
) -> InternalMessage:
    """USDT from the treasury's jetton wallet to `recipient`; the excess back to it."""
    master = resolve_network(ctx.settings).usdt_master
    if master is None:
        raise ValueError("USDT from the treasury needs USDT_JETTON_MASTER")
    jettons = await jetton_wallet_of(ctx.api, master, multisig)
    return payout_jetton_message(
        Address(jettons),
        Address(multisig),
        recipient,
        amount,
        comment,
        attach_ton=ctx.gas_caps.jetton_transfer_attach,
        forward_ton=ctx.settings.ton_jetton_forward_nanoton,
    )


async def _send(ctx: TonRailContext, row: TreasuryOrder) -> None:
    result = await send_stored(ctx.api.send_boc, row.boc, copy=row.send_count > 0)
    landed = result.outcome == SendOutcome.EXECUTED
    if landed:
        # The hot wallet executed it: the order contract shows what it did; not sent again.
        log.info("treasury proposal already executed; not re-sent", order=row.id)
    elif result.error is not None:
        # Refused now (e.g. already processed): the chain will tell; never a new message.
        log.info("treasury proposal not accepted on send", order=row.id, error=str(result.error))
    async with transaction(ctx) as session:
        fresh = await session.get(TreasuryOrder, row.id)
        if fresh is not None:
            fresh.send_count += 1
            fresh.last_sent_at = clock.now()
            if landed:
                fresh.landed_at = fresh.last_sent_at


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


# Orders whose proposal the multisig took with no order of ours appearing, as this process
# has reported them: an operator needs the error once (the payout then alerts as stuck,
# monitoring/rules.py), not every round of the loop until someone acts.
_REPORTED_TAKEN: set[str] = set()


def _report_taken_without_order(order_id: str) -> None:
    if order_id in _REPORTED_TAKEN:
        log.debug("the multisig took our new_order; still no order of ours", order=order_id)
        return
    _REPORTED_TAKEN.add(order_id)
    log.error("the multisig took our new_order; no order of ours is there", order=order_id)


async def _follow_proposal(ctx: TonRailContext, row: TreasuryOrder) -> int:
    status, _ = await ctx.api.account_state(row.order_address)
    taken = False
    if status == "active":
        order = await order_state(ctx.api, row.order_address)
        ours = order.order is not None and bytes(order.order.hash).hex() == row.order_hash
        if ours:
            return await _book_proposed(ctx, row, order.approvals, order.threshold)
        taken = True  # another order holds our seqno: ours is refused if it ever lands
    landing = await _landing(ctx, row, taken=taken)
    if isinstance(landing, Refusal):
        await _fail(ctx, row, landing.code, landing.message, refusal=landing)
        return 1
    now = int(clock.now().timestamp())
    past = now > row.valid_until + ctx.settings.ton_expiry_margin_s
    if landing == Landing.ACCEPTED and past:
        _report_taken_without_order(row.id)
    if landing != Landing.NOT_LANDED:
        return 0  # on chain, the trace not read to its end yet (or our order on its way)
    if past:
        # The hot wallet refuses the request from now on: prove it never took it.
        if not await _never_landed(ctx, row):
            log.info("treasury proposal past its validity, not proven unprocessed", order=row.id)
            return 0
        if taken:
            await _fail(ctx, row, "treasury_seqno_taken", "another order took this seqno")
        else:
            await _fail(ctx, row, "treasury_proposal_expired", "the proposal expired unprocessed")
        return 1
    last = row.last_sent_at
    every = timedelta(seconds=ctx.settings.ton_resend_seconds)
    # Not re-sent once another order holds the seqno: the multisig would only refuse it.
    if not taken and row.landed_at is None and (last is None or clock.now() - last >= every):
        await _send(ctx, row)
    return 0


async def _book_proposed(
    ctx: TonRailContext, row: TreasuryOrder, approvals: int, threshold: int
) -> int:
    """The order contract holds our order: `proposed`, and the hot wallet's cost booked."""
    costed = await _proposal_cost(ctx, row)
    if costed is None:
        return 0  # the order is there; the hot wallet's transactions not indexed yet
    cost, lts = costed
    async with transaction(ctx) as session:
        fresh = await _reload(session, row, OrderStatus.SIGNED)
        if fresh is None:
            return 0
        fresh.status = OrderStatus.PROPOSED
        fresh.approvals, fresh.threshold = approvals, threshold
        fresh.updated_at = clock.now()
        await post(
            session,
            "treasury.order_funded",
            books.treasury_order_funded(row.proposal_value, cost),
            row.payment_id,
            lts=lts,
        )
    return 1


class Landing(Enum):
    """Where our proposal is, when it is not a refusal (`Refusal`)."""

    NOT_LANDED = "not_landed"  # no transaction of the hot wallet took the request (yet)
    PENDING = "pending"  # it landed; a transaction of its trace is not indexed yet
    ACCEPTED = "accepted"  # the multisig took `new_order`: the order contract follows


@dataclass(frozen=True)
class Refusal:
    """Our proposal landed and can create no order: what it cost the hot wallet."""

    code: str
    message: str
    lost: int  # nanoton the hot wallet's transactions of the trace took from its balance
    kept: int  # of `lost`, what the multisig kept of the proposal's value
    lts: tuple[int, int]  # the first and the last of those transactions


# What the multisig's exit codes mean (contracts/errors.func of multisig-contract-v2).
# 1008: our explicit seqno, read as its next one, is not any more: another order took it.
SEQNO_NOT_NEXT = 1008
MULTISIG_REFUSALS = {
    100: "too little TON for the order",
    111: "the order's expiration date had passed",
    1007: "the hot wallet is not its proposer",
    SEQNO_NOT_NEXT: "the order seqno was not its next one",
}


async def _landing(ctx: TonRailContext, row: TreasuryOrder, *, taken: bool) -> Landing | Refusal:
    """Read our proposal's trace to its end: the hot wallet's external, its internal_transfer
    to itself, the multisig's transaction of `new_order` and, when that bounced, the hot
    wallet's transaction taking the bounce back. A refusal says what the hot wallet lost: the
    balance its transactions of the trace took (`ton_change`), exact to the nanoton.
    `taken`: another order holds our seqno (whatever the multisig did, no order is ours)."""
    external = await ctx.api.tx_by_in_message(row.msg_hash_norm)
    if external is None:
        return Landing.NOT_LANDED
    spent = [external]
    to_self = next(
        (m for m in external.out_msgs if same_address(m.destination, ctx.wallet_raw)), None
    )
    inner = None if to_self is None else await ctx.api.tx_by_in_message(to_self.hash)
    if to_self is not None and inner is None:
        return Landing.PENDING
    proposal = None
    if inner is not None:
        spent.append(inner)
        proposal = next(
            (m for m in inner.out_msgs if same_address(m.destination, row.multisig)), None
        )
    if proposal is None:  # the hot wallet could not send it (its action phase failed)
        return _refusal(
            "treasury_proposal_failed",
            "the hot wallet executed the proposal but sent no new_order to the multisig",
            spent,
            0,
        )
    multisig = await ctx.api.tx_by_in_message(proposal.hash)
    if multisig is None:
        return Landing.PENDING
    bounce = next(
        (m for m in multisig.out_msgs if m.bounced and same_address(m.destination, ctx.wallet_raw)),
        None,
    )
    if not taken and not multisig.aborted and bounce is None:
        return Landing.ACCEPTED
    if bounce is not None:
        back = await ctx.api.tx_by_in_message(bounce.hash)
        if back is None:
            return Landing.PENDING
        spent.append(back)
    refused = f"the multisig refused the proposal ({_refusal_reason(multisig)})"
    kept = proposal.value - (bounce.value if bounce is not None else 0)
    if taken or multisig.exit_code == SEQNO_NOT_NEXT:  # (read before its order was there)
        return _refusal(
            "treasury_seqno_taken", f"another order took this seqno; {refused}", spent, kept
        )
    return _refusal("treasury_proposal_refused", refused, spent, kept)


def _refusal_reason(tx: Tx) -> str:
    if tx.exit_code is None:
        return "its compute phase was skipped"
    if tx.exit_code in (0, 1):
        return "its action phase failed"
    why = MULTISIG_REFUSALS.get(tx.exit_code, "see the contract's contracts/errors.func")
    return f"exit code {tx.exit_code}: {why}"


def _refusal(code: str, message: str, spent: list[Tx], kept: int) -> Refusal:
    lost = -sum(ton_change(tx) for tx in spent)
    return Refusal(code, message, lost, kept, (spent[0].lt, spent[-1].lt))


async def _never_landed(ctx: TonRailContext, row: TreasuryOrder) -> bool:
    """Proof that the hot wallet never took the request: `processed?` false for its query_id
    and no transaction for its message (asked after the flag, as the tracker does)."""
    return await processed_flag(ctx, query_id_for(row.query_seq)) is False and (
        await ctx.api.tx_by_in_message(row.msg_hash_norm) is None
    )


async def _proposal_cost(
    ctx: TonRailContext, row: TreasuryOrder
) -> tuple[int, tuple[int, int]] | None:
    """What the hot wallet paid besides the order's value: the fees of its two transactions
    (the external, then the internal_transfer to itself) and of the messages they sent; with
    the lts of those two transactions."""
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
    cost = external.total_fees + to_self.fwd_fee + inner.total_fees + proposal.fwd_fee
    return cost, (external.lt, inner.lt)


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
            "payout.treasury_order_approved" if row.payment_id else "treasury.order_approved",
            "system",
            {
                "id": row.payment_id or row.id,
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
    arrived, payee = await _delivered(ctx, sent)
    if arrived is None or payee is None:
        return 0
    if not arrived:
        await _fail(ctx, row, "treasury_payout_bounced", "the payee's side refused the payout")
        return 1
    receive_cost = 0
    receive_lt: int | None = None
    if row.payment_id is None:
        cost = await _topup_receive_cost(ctx, row, payee)
        if cost is None:
            return 0
        receive_cost, receive_lt = cost
    async with transaction(ctx) as session:
        fresh = await _reload(session, row, OrderStatus.EXECUTED)
        if fresh is None:
            return 0
        fresh.status = OrderStatus.CONFIRMED
        fresh.payout_tx_hash = sent.hash
        fresh.updated_at = clock.now()
        fee = sent.fwd_fee if row.asset == "TON" else 0
        if row.payment_id is None:  # a top-up: the float grows by what the treasury sent
            lines = books.treasury_topup(row.asset, row.amount, fee)
            if receive_cost:
                lines += [
                    books.Line(books.NETWORK_FEES, "TON", receive_cost),
                    books.Line(books.HOT_WALLET, "TON", -receive_cost),
                ]
            lts = (receive_lt, receive_lt) if receive_lt is not None else None
            await post(session, "treasury.topup", lines, lts=lts)
            emit(
                session,
                "treasury.topup_confirmed",
                "system",
                {"asset": row.asset, "amount": str(row.amount), "order": row.order_address},
            )
        else:
            payment = await session.get(Payment, row.payment_id, with_for_update=True)
            assert payment is not None
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


async def _delivered(ctx: TonRailContext, sent: Msg) -> tuple[bool | None, Tx | None]:
    """(True, the payee-side transaction) when the message reached the payee; (False, _)
    when it bounced; (None, None) while not yet seen. The payee side of a jetton transfer is
    the recipient's jetton wallet."""
    tx = await ctx.api.tx_by_in_message(sent.hash)
    if tx is None:
        return None, None
    bounced = any(m.bounced for m in tx.out_msgs)
    if sent.opcode is None or sent.opcode == 0:  # a TON transfer with a comment
        return not bounced, tx
    if tx.aborted or bounced:
        return False, tx
    onward = next((m for m in tx.out_msgs if not same_address(m.destination, sent.source)), None)
    if onward is None:
        return False, tx
    payee = await ctx.api.tx_by_in_message(onward.hash)
    if payee is None:
        return None, None
    return not payee.aborted, payee


async def _topup_receive_cost(
    ctx: TonRailContext, row: TreasuryOrder, payee: Tx
) -> tuple[int, int | None] | None:
    """What receiving the top-up cost the hot wallet: its transaction's fees (for USDT, the
    transaction of the transfer_notification, less the TON it carried), and that
    transaction's lt (None when no transaction of the hot wallet took part)."""
    if row.asset == "TON":
        return payee.total_fees, payee.lt
    notice = next((m for m in payee.out_msgs if same_address(m.destination, ctx.wallet_raw)), None)
    if notice is None:
        return 0, None  # no notification sent: nothing reached the hot wallet itself
    received = await ctx.api.tx_by_in_message(notice.hash)
    return None if received is None else (received.total_fees - notice.value, received.lt)


async def _reload(
    session: AsyncSession, row: TreasuryOrder, status: OrderStatus
) -> TreasuryOrder | None:
    fresh: TreasuryOrder | None = await session.get(TreasuryOrder, row.id, with_for_update=True)
    if fresh is None or fresh.status != status:
        return None
    return fresh


async def _fail(
    ctx: TonRailContext,
    row: TreasuryOrder,
    code: str,
    message: str,
    *,
    refusal: Refusal | None = None,
) -> None:
    """The order can never pay: it fails, and the payout with it (its reservation returns).
    With `refusal` (the proposal landed), what it cost the hot wallet is booked in the same
    transaction, so a crash books it once or not at all."""
    async with transaction(ctx) as session:
        fresh = await session.get(TreasuryOrder, row.id, with_for_update=True)
        if fresh is None or fresh.status not in OPEN:
            return
        if refusal is not None and fresh.status != OrderStatus.SIGNED:
            return  # only a proposal can be refused
        fresh.status = OrderStatus.FAILED
        fresh.error = f"{code}: {message}"
        fresh.updated_at = clock.now()
        if refusal is not None:
            await post(
                session,
                "treasury.proposal_refused",
                books.treasury_proposal_refused(refusal.lost, refusal.kept),
                row.payment_id,
                lts=refusal.lts,
            )
        payment = (
            await session.get(Payment, row.payment_id, with_for_update=True)
            if row.payment_id is not None
            else None
        )
        if payment is not None and payment.status == PaymentStatus.PROCESSING:
            await move_payment(
                session,
                payment,
                PaymentStatus.FAILED,
                actor=ACTOR,
                failure_code=code,
                failure_message=message,
            )
        if refusal is not None:
            crashpoint(ctx.settings, "treasury.proposal_refused")  # killed: nothing committed
    log.warning(
        "treasury order failed",
        order=row.id,
        payment=row.payment_id,
        code=code,
        lost=refusal.lost if refusal is not None else 0,
    )
