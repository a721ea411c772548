"""TON payouts, exactly once: assemble → sign and store → send → track to a final outcome.

The order is what makes a crash harmless at any point:
1. `assemble` claims queued payouts (dispatch.py routes them; ton_batch.py times and funds
   them), starts their attempts, allocates (query_id, created_at),
   signs the highload request and stores the signed BOC — all in one database transaction.
   A crash before the commit leaves the payouts queued; nothing was signed for good.
2. `send` (re-)sends stored BOCs. Re-sending is safe: the wallet accepts a query_id once.
3. `track` (ton_track.py, outcomes.py) reads the chain: the request's external transaction,
   the internal_transfer that carries the out messages, and each transfer's own trace. A
   request that is past its validity and proven unprocessed (no transaction, `processed?`
   false) expires and its payouts go back to the queue for a new request with a new
   query_id. Nothing is ever re-signed while the old request could still be executed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from ton_core import Address

from tonrail import clock
from tonrail.chain.network import GasCaps
from tonrail.fees.service import (
    FeeConditions,
    load_conditions,
)
from tonrail.ids import new_id
from tonrail.kit.claims import claim
from tonrail.kit.faults import crashpoint
from tonrail.payments.attempts import payment_view
from tonrail.payments.models import Payment
from tonrail.payments.states import AttemptStatus, PaymentStatus
from tonrail.payments.transitions import (
    AttemptMove,
    move_attempts,
    move_payment,
    move_payments,
    start_attempts,
)
from tonrail.processing.context import TonRailContext, request_attempts, transaction
from tonrail.processing.dispatch import Routing, claim_for_ton
from tonrail.processing.health import note_ton_down, note_ton_up
from tonrail.processing.rotation_pause import signing_paused
from tonrail.processing.ton_batch import (
    attach_for,
    chain_balances,
    fund,
    measured_fees,
    retry_attaches,
    timing,
    within_gas_caps,
)
from tonrail.processing.ton_track import track_open
from tonrail.rails.base import BatchRail
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.highload import OutTransfer, SignedRequest, query_id_for
from tonrail.rails.ton.models import TonQueryCounter, TonRequest, TonTransfer
from tonrail.rails.ton.quote import DEFAULT_FEE_NANOTON, TonQuoter
from tonrail.rails.ton.states import (
    OPEN_REQUEST_STATES,
    RequestStatus,
    RotationState,
    TransferStatus,
)
from tonrail.rails.ton.stored_send import SendOutcome, send_stored
from tonrail.rails.ton.toncenter import ToncenterError
from tonrail.security.switches import is_on

log = structlog.get_logger(__name__)

ASSEMBLE_PER_ROUND = 8  # requests signed at a time
ASSEMBLE_EVERY_S = 0.2  # while tracking waits on the chain, payouts keep going out


# ------------------------------------------------------------------------------- assemble
async def next_query_seq(session: AsyncSession, wallet: str) -> int:
    """Atomically take the next query sequence number of the wallet."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(TonQueryCounter)
        .values(wallet=wallet, next_seq=0)
        .on_conflict_do_nothing(index_elements=["wallet"])
    )
    result = await session.execute(
        update(TonQueryCounter)
        .where(TonQueryCounter.wallet == wallet)
        .values(next_seq=TonQueryCounter.next_seq + 1)
        .returning(TonQueryCounter.next_seq)
    )
    return int(result.scalar_one()) - 1


def routing_of(ctx: TonRailContext) -> Routing:
    return Routing(ctx.settings, ctx.payments, ctx.backup, ctx.routing, ctx.enabled)


@dataclass(frozen=True)
class RoundInputs:
    """What `assemble` reads before its transaction; one read serves a whole loop turn (the
    funds check subtracts what requests signed since then will take, in the transaction)."""

    quoter: TonQuoter
    chain: dict[str, int]
    conditions: FeeConditions | None
    caps: GasCaps  # the network's gas caps (TON_GAS_CAP_*), enforced by `within_gas_caps`
    fees_seen: dict[str, int]  # average fee of recent confirmed payouts, by asset


async def round_inputs(ctx: TonRailContext) -> RoundInputs:
    seen = await measured_fees(ctx.db)
    return RoundInputs(
        TonQuoter({**DEFAULT_FEE_NANOTON, **seen}, ctx.jetton_wallet is not None),
        await chain_balances(ctx),
        await load_conditions(ctx.db, ctx.settings) if ctx.fee_optimizer else None,
        ctx.gas_caps,
        seen,
    )


async def _refuse_unpayable(
    ctx: TonRailContext, session: AsyncSession, claimed: list[Payment]
) -> list[Payment]:
    """Fail at once the payouts no message can pay (rails/ton/rail.py: `refusal`: a
    malformed destination, one no message may go to, or our own wallet); they are never
    signed, so nothing leaves for them."""
    rail: BatchRail[OutTransfer, SignedRequest] = ctx.rail
    payable = []
    for p in claimed:
        refused = rail.refusal(payment_view(p))
        if refused is None:
            payable.append(p)
            continue
        log.warning("payout refused by the TON rail", payment=p.id, reason=refused.message)
        await move_payment(
            session,
            p,
            PaymentStatus.FAILED,
            actor="system:ton",
            failure_code=refused.code,
            failure_message=refused.message,
        )
    return payable


async def assemble(
    ctx: TonRailContext, *, deploy: bool, inputs: RoundInputs | None = None
) -> str | None:
    """Claim queued payouts and turn them into one stored, signed request; returns its id.

    One transaction, a few statements whatever the batch size: the claim, the optimizer's
    decisions (one upsert), routing and timing (one UPDATE per distinct value), the moves
    to `processing`, the attempts, the request and its transfers (bulk inserts)."""
    now = clock.now()
    if inputs is None:
        inputs = await round_inputs(ctx)
    quoter, chain, conditions = inputs.quoter, inputs.chain, inputs.conditions
    try:
        return await _assemble(ctx, now, deploy, inputs, quoter, chain, conditions)
    except _SigningPaused as paused:
        log.info("signing paused by a hot wallet rotation", rotation=str(paused))
        return None


class _SigningPaused(Exception):
    """A rotation paused the wallet while this request was being assembled: nothing of it
    is kept (the claimed payouts go back to the queue with the rollback)."""


async def _assemble(
    ctx: TonRailContext,
    now: datetime,
    deploy: bool,
    inputs: RoundInputs,
    quoter: TonQuoter,
    chain: dict[str, int],
    conditions: FeeConditions | None,
) -> str | None:
    async with transaction(ctx) as session:
        claimed, decisions = await claim_for_ton(
            routing_of(ctx), session, ctx.worker_id, quoter, conditions
        )
        claimed = await _refuse_unpayable(ctx, session, claimed)
        claimed = await timing(ctx, session, claimed, decisions, conditions)
        # More TON for a USDT payout our jetton wallet refused for too little (outcomes.py).
        floors = await retry_attaches(ctx, session, claimed)
        claimed = await within_gas_caps(
            ctx, session, claimed, decisions, inputs.caps, inputs.fees_seen, floors
        )
        claimed = await fund(ctx, session, claimed, chain, decisions, floors)
        if not claimed:
            return None
        crashpoint(ctx.settings, "ton.after_claim")
        seq = await next_query_seq(session, ctx.wallet_raw)
        # Checked holding the wallet's counter row, which a rotation locks to pause and to
        # count the open requests: a request is either seen by that count or not signed.
        rotating = await signing_paused(session, ctx.wallet_raw)
        if rotating is not None:
            raise _SigningPaused(rotating.id)
        chain_created_at = int(now.timestamp()) - ctx.settings.ton_created_at_lag_s
        query_id = query_id_for(seq)
        jetton_query_ids = [secrets.randbits(63) for _ in claimed]
        rail: BatchRail[OutTransfer, SignedRequest] = ctx.rail
        transfers = [
            rail.transfer(
                payment_view(p),
                attach=attach_for(ctx, decisions.get(p.id), floors.get(p.id, 0)),
                jetton_query_id=jq,
            )
            for p, jq in zip(claimed, jetton_query_ids, strict=True)
        ]
        signed = rail.sign(
            transfers,
            query_id=query_id,
            created_at=chain_created_at,
            deploy=deploy,
        )
        crashpoint(ctx.settings, "ton.after_sign")
        request = TonRequest(
            id=new_id("treq"),
            wallet=ctx.wallet_raw,
            query_seq=seq,
            query_id=query_id,
            chain_created_at=chain_created_at,
            valid_until=chain_created_at + ctx.wallet.timeout,
            boc=signed.boc,
            msg_hash_norm=signed.message_hash_norm,
            status=RequestStatus.SIGNED,
            send_count=0,
            created_at=now,
            updated_at=now,
        )
        session.add(request)
        await move_payments(
            session,
            claimed,
            PaymentStatus.PROCESSING,
            actor="system:ton",
            values={"hold_reason": None},
        )
        # Flushes the request too: the transfers below refer to both.
        attempts = await start_attempts(
            session, claimed, "ton", provider_ref=signed.message_hash_norm
        )
        session.add_all(
            TonTransfer(
                attempt_id=attempts[payment.id].id,
                request_id=request.id,
                payment_id=payment.id,
                position=position,
                asset=payment.asset,
                amount=payment.amount,
                destination=raw(Address(payment.counterparty or "")),
                message_to=raw(out.destination),
                message_value=out.value,
                bounce=out.bounce,
                body_hash=out.body_hash,
                jetton_query_id=jq if payment.asset != "TON" else None,
                status=TransferStatus.PENDING,
                trace={},
                updated_at=now,
            )
            for position, (payment, out, jq) in enumerate(
                zip(claimed, transfers, jetton_query_ids, strict=True)
            )
        )
        log.info(
            "ton request signed",
            request=request.id,
            payouts=len(claimed),
            query_id=request.query_id,
        )
    crashpoint(ctx.settings, "ton.after_store")
    return request.id


async def batch_ready(ctx: TonRailContext) -> bool:
    """Whether any payout could go: when it goes is the fee optimizer's call in `assemble`
    (`_timing`), which leases waiting payouts until their moment, so this stays cheap."""
    now = clock.now()
    async with transaction(ctx) as session:
        row = (
            await session.execute(
                select(Payment.id)
                .where(
                    Payment.direction == "out",
                    Payment.status == PaymentStatus.QUEUED,
                    (Payment.route.is_(None)) | (Payment.route == "ton"),
                    (Payment.locked_until.is_(None)) | (Payment.locked_until < now),
                )
                .limit(1)
            )
        ).first()
    return row is not None


async def _in_flight_full(ctx: TonRailContext) -> bool:
    """Whether the wallet already has TON_MAX_OPEN_REQUESTS requests open (every worker's,
    counted in the database): more would only queue on the chain, be re-sent while they
    wait, and go overdue. 0 = no cap."""
    cap = ctx.settings.ton_max_open_requests
    if cap <= 0:
        return False
    async with transaction(ctx) as session:
        n = (
            await session.execute(
                select(func.count(TonRequest.id)).where(
                    TonRequest.wallet == ctx.wallet_raw,
                    TonRequest.status.in_(OPEN_REQUEST_STATES),
                )
            )
        ).scalar_one()
    return int(n) >= cap


async def ton_round(ctx: TonRailContext) -> int:
    """The `ton_payouts` loop: `payout_round`, and the health of TON for dispatch.py. A round
    that cannot read the chain (toncenter down past the client's retry budget) counts as an
    error of `ton` (its breaker opens at the threshold); after such a round, or when the
    worker starts, the chain is read once more and a success closes the breaker."""
    try:
        handled = await payout_round(ctx)
        if ctx.ton_failing:
            await ctx.api.account_state(ctx.wallet.address.to_str())
            await note_ton_up(ctx.db)
            ctx.ton_failing = False
    except ToncenterError as exc:
        ctx.ton_failing = True
        await note_ton_down(ctx.db, ctx.routing.breaker, f"toncenter: {exc}")
        raise
    return handled


async def payout_round(ctx: TonRailContext) -> int:
    """One turn of the payout loop: track the open requests and, while that waits on the
    chain, assemble and send (unless paused) every ASSEMBLE_EVERY_S. Each request goes out
    as soon as it is signed, and a tracking turn that ends while requests are being signed
    is followed by the next at once, not after the run of assemblies."""
    tracking = asyncio.create_task(track_open(ctx))
    tracked = 0

    def keep_tracking() -> None:
        nonlocal tracking, tracked
        if tracking.done():
            tracked += tracking.result()  # a failed turn raises here, as at the end
            tracking = asyncio.create_task(track_open(ctx))

    handled = 0
    try:
        while True:
            handled += await _assemble_and_send(ctx, keep_tracking)
            if tracking.done():
                break
            await asyncio.wait({tracking}, timeout=ASSEMBLE_EVERY_S)
            if tracking.done():
                break
    except Exception:
        await asyncio.gather(tracking, return_exceptions=True)  # let it finish its reads
        raise
    return handled + tracked + await tracking


async def _assemble_and_send(ctx: TonRailContext, between: Callable[[], None] | None = None) -> int:
    async with transaction(ctx) as session:
        paused = await is_on(session, "payments_paused")
        # A hot wallet rotation pauses new signing on the wallet it retires.
        rotating = await signing_paused(session, ctx.wallet_raw)
    if paused:
        return 0
    if rotating is not None and rotating.state == RotationState.SWITCHED:
        from tonrail.processing.ton_runtime import adopt_rotated_wallet

        # The rotation is over: sign with the new wallet if our key file holds it.
        if not await adopt_rotated_wallet(ctx, rotating.id, rotating.new_public_key):
            return 0
    elif rotating is not None:
        # Signed requests still go out (re-sent until valid_until): the rotation waits for
        # every one of them to settle.
        log.debug("signing paused by a hot wallet rotation", rotation=rotating.id)
        return await send_due(ctx)
    handled = 0
    # Several requests at a time when payouts pile up.
    inputs: RoundInputs | None = None
    deploy = False
    for _ in range(ASSEMBLE_PER_ROUND):
        if not await batch_ready(ctx):
            break
        if await _in_flight_full(ctx):
            break
        if inputs is None:
            state, _ = await ctx.api.account_state(ctx.wallet.address.to_str())
            deploy = state != "active"
            inputs = await round_inputs(ctx)
        if not await assemble(ctx, deploy=deploy, inputs=inputs):
            break
        # Out at once: the chain works on it while the next one is signed.
        handled += 1 + await send_due(ctx)
        if between is not None:
            between()
    return handled + await send_due(ctx)


# ------------------------------------------------------------------------------- send
async def send_due(ctx: TonRailContext) -> int:
    """Send requests never sent, and re-send those not yet seen on chain, until valid_until."""
    now = clock.now()
    resend_before = now - timedelta(seconds=ctx.settings.ton_resend_seconds)
    async with transaction(ctx) as session:
        due = await claim(
            session,
            TonRequest,
            (TonRequest.status.in_((RequestStatus.SIGNED, RequestStatus.SENT)))
            & (TonRequest.valid_until > int(now.timestamp()))
            & ((TonRequest.last_sent_at.is_(None)) | (TonRequest.last_sent_at < resend_before)),
            # The worker's lease, as every claim takes it: alike other claims in shape only.
            worker_id=ctx.worker_id,
            lease_seconds=ctx.settings.worker_lease_seconds,
            limit=ctx.settings.worker_batch_size,
            order_by=(TonRequest.created_at,),
        )
    sent = 0
    for request in due:
        # The node may refuse a duplicate or a message that is already processed: the
        # tracker decides the outcome from the chain, never from this answer. A copy
        # refused because the wallet executed its query_id only ends the re-sending: the
        # request is `processed` (as `processed?` would say; never expired), and the
        # tracker still books what its transactions show.
        result = await send_stored(ctx.rail.send, request.boc, copy=request.send_count > 0)
        executed = result.outcome == SendOutcome.EXECUTED
        if result.outcome == SendOutcome.SENT:
            crashpoint(ctx.settings, "ton.after_send")
        elif executed:
            log.info("ton request already executed; not re-sent", request=request.id)
        else:
            log.warning("ton send failed", request=request.id, error=str(result.error))
        async with transaction(ctx) as session:
            await session.execute(
                update(TonRequest)
                .where(
                    TonRequest.id == request.id,
                    TonRequest.status.in_((RequestStatus.SIGNED, RequestStatus.SENT)),
                )
                .values(
                    status=RequestStatus.PROCESSED if executed else RequestStatus.SENT,
                    send_count=TonRequest.send_count + 1,
                    last_sent_at=clock.now(),
                    updated_at=clock.now(),
                    locked_by=None,
                    locked_until=None,
                )
            )
            attempts = await request_attempts(session, request.id)
            await move_attempts(
                session,
                [
                    AttemptMove(a, AttemptStatus.SUBMITTED)
                    for a in attempts
                    if a.status == AttemptStatus.CREATED
                ],
            )
        sent += 1
    return sent
