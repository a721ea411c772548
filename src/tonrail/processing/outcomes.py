"""A rail's report → attempts, payments, books: the one place outcomes are recorded.

Backup rails (`record_submit`, `record_poll`): used by the backup loop, provider webhooks,
the bank statement import and checkout; each runs inside the caller's transaction and is
safe to repeat. TON (`finalize_request`, `expire_request`, `mark_unknown`): what the tracker
(ton_track.py) read on chain, recorded in one transaction per request; a failed transfer
goes back to the queue, to the router, or fails (`retry_or_fail`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.errors import Conflict
from tonrail.events.service import emit
from tonrail.fees.policy import jetton_attach_retry
from tonrail.fees.service import (
    Confirmed,
    record_confirmed,
    record_outcome,
)
from tonrail.kit.faults import crashpoint
from tonrail.ledger import rules as books
from tonrail.ledger.service import ChainLts, post, post_many
from tonrail.monitoring import signals
from tonrail.monitoring.suspicious import lock_if_suspicious
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.service import PaymentService
from tonrail.payments.states import (
    FAILED_ATTEMPT_STATES,
    TERMINAL_PAYMENT_STATES,
    AttemptStatus,
    PaymentStatus,
)
from tonrail.payments.transitions import (
    AttemptMove,
    move_attempt,
    move_attempts,
    move_payment,
    move_payments,
)
from tonrail.processing.context import (
    TonRailContext,
    request_attempts,
    request_transfers,
    transaction,
)
from tonrail.processing.dispatch import attempts_of, ton_exhausted_by
from tonrail.processing.payer_screening import Screened, set_apart
from tonrail.processing.ton_batch import attach_retry_limit
from tonrail.rails.base import PollResult, SubmitResult
from tonrail.rails.ton.chain_view import Msg
from tonrail.rails.ton.models import TonRequest, TonTransfer
from tonrail.rails.ton.states import RequestStatus, TraceStatus, TransferStatus
from tonrail.rails.ton.trace import (
    Outcome,
    split_common_fee,
)
from tonrail.screening.rules import Outcome as ScreeningOutcome
from tonrail.screening.service import PAYMENT_CREDIT, store_decision
from tonrail.settings import Settings
from tonrail.states import JETTON_ATTACH_EXHAUSTED, JETTON_ATTACH_LOW, PollStatus


async def record_submit(
    session: AsyncSession, settings: Settings, attempt: Attempt, result: SubmitResult
) -> None:
    """`created -> submitted` (then `unknown` if we cannot tell) or `created -> failed`."""
    details = {**attempt.details, **result.details}
    if result.status == AttemptStatus.FAILED:
        await move_attempt(
            session,
            attempt,
            AttemptStatus.FAILED,
            details=details,
            error_code=result.error_code,
            error_message=result.error_message,
        )
        await _charge(session, settings, attempt)
        return
    await move_attempt(
        session, attempt, AttemptStatus.SUBMITTED, provider_ref=result.provider_ref, details=details
    )
    if result.status == AttemptStatus.UNKNOWN:
        await move_attempt(
            session,
            attempt,
            AttemptStatus.UNKNOWN,
            error_code=result.error_code,
            error_message=result.error_message,
        )


async def _charge(session: AsyncSession, settings: Settings, attempt: Attempt) -> None:
    """A failed attempt counts against its payment's counterparty and API key at once."""
    payment = await session.get(Payment, attempt.payment_id)
    if payment is not None:
        await lock_if_suspicious(session, settings, [payment])


async def attempt_by_ref(session: AsyncSession, rail: str, provider_ref: str) -> Attempt | None:
    stmt = select(Attempt).where(Attempt.rail == rail, Attempt.provider_ref == provider_ref)
    return (await session.execute(stmt)).scalars().first()


async def record_poll(
    session: AsyncSession,
    payments: PaymentService,
    attempt: Attempt,
    result: PollResult,
    extra_details: dict[str, Any] | None = None,
    *,
    screened: Screened | None,
) -> str:
    """Apply a rail's view of an attempt; returns what happened (for logs and reports).

    A confirmed attempt settles its payment in the same transaction: the attempt becomes
    `confirmed` with its fee, the payment `succeeded`, and the ledger gets balanced lines.
    Already-resolved attempts are left alone, so duplicates and late events are harmless.
    An invoice's payer is held or frozen as screening says (payer_screening.py): `screened`
    is what `screen_payer` answered the caller before its transaction (None: nothing to
    screen); nobody is asked here, with the transaction open.
    """
    if attempt.status not in (AttemptStatus.SUBMITTED, AttemptStatus.UNKNOWN):
        return f"attempt_already_{attempt.status}"
    details = {**attempt.details, **result.details, **(extra_details or {})}
    if result.status == PollStatus.PENDING:
        if details != attempt.details:
            attempt.details = details
            await session.flush()
        return PollStatus.PENDING
    if result.status in (PollStatus.FAILED, PollStatus.EXPIRED):
        await move_attempt(
            session,
            attempt,
            AttemptStatus(result.status),
            details=details,
            error_code=result.error_code,
            error_message=result.error_message,
        )
        if result.status == PollStatus.FAILED:
            await _charge(session, payments.settings, attempt)
        return result.status
    payment = await session.get(Payment, attempt.payment_id, with_for_update=True)
    assert payment is not None
    fee = result.fee or 0
    fee_asset = result.fee_asset or str(details["rail_asset"])
    await move_attempt(
        session,
        attempt,
        AttemptStatus.CONFIRMED,
        details=details,
        fee_amount=fee,
        fee_asset=fee_asset,
    )
    rail_asset = str(details["rail_asset"])
    rail_amount = int(details["rail_amount"])
    actor = f"rail:{attempt.rail}"
    if payment.direction == "out":
        # A refusal with its own code: alike other guards in shape only.
        if payment.status != PaymentStatus.PROCESSING:
            raise Conflict(
                f"payout {payment.id} is {payment.status}, but attempt {attempt.id} confirmed",
                code="attempt_confirmed_unexpectedly",
            )
        await post(
            session,
            "payout.settled_by_provider",
            books.payout_settled_by_provider(
                payment.asset, payment.amount, rail_asset, rail_amount, fee
            ),
            payment.id,
        )
        if fee and payments.draws_on_balance(payment.account_id):
            await post(
                session,
                "payout.fee_charged",
                books.fee_charged(payment.account_id, rail_asset, fee),
                payment.id,
            )
        await move_payment(session, payment, PaymentStatus.SUCCEEDED, actor=actor)
        return "succeeded"
    source = str(details.get("received_into", books.PROVIDER_CLEARING))
    if payment.status in TERMINAL_PAYMENT_STATES:
        # Paid again (or after expiry): keep the money visible for a refund, never credit twice.
        lines = [
            books.Line(source, rail_asset, rail_amount),
            books.Line(books.UNAPPLIED_RECEIPTS, rail_asset, -rail_amount),
        ]
        if source != books.UNAPPLIED_RECEIPTS:
            await post(session, "invoice.unapplied_receipt", lines, payment.id)
        return "unapplied_receipt"
    if screened is None and payments.screening is not None:
        # A caller that did not screen the payer first: credit nobody unscreened.
        raise Conflict(
            f"attempt {attempt.id} confirmed invoice {payment.id}, but its payer was not "
            "screened before the transaction",
            code="payer_not_screened",
        )
    if screened is not None:
        await store_decision(
            session,
            screened[1],
            stage=PAYMENT_CREDIT,
            subject=screened[0],
            payment_id=payment.id,
            requested_by=actor,
        )
        if screened[1].outcome != ScreeningOutcome.CLEAR:
            return await set_apart(
                session,
                payment,
                attempt,
                screened,
                rail_asset=rail_asset,
                rail_amount=rail_amount,
                fee=fee,
                source=source,
            )
    await post(
        session,
        "invoice.paid_by_provider",
        books.payment_received_by_provider(
            payment.account_id, payment.asset, payment.amount, rail_asset, rail_amount, fee, source
        ),
        payment.id,
    )
    await move_payment(session, payment, PaymentStatus.SUCCEEDED, actor=actor)
    return "succeeded"


log = structlog.get_logger(__name__)


Row = TypeVar("Row", Attempt, Payment)


async def _by_id(session: AsyncSession, model: type[Row], ids: list[str]) -> dict[str, Row]:
    """The rows of `model` with these ids, by id."""
    rows = await session.execute(select(model).where(model.id.in_(ids)))
    return {row.id: row for row in rows.scalars()}


@dataclass(frozen=True, slots=True)
class Stray:
    """An out message of a request that no transfer of it explains: the chain read an action
    otherwise than we meant it (a malformed address stored before `destination_refusal`
    existed made it read another address and value). Its cost is booked all the same, so
    the books keep equal to the chain, and it raises `ton.stray_message`."""

    msg: Msg
    outcome: Outcome  # follow_ton's: delivered (value gone) or bounced (value back)

    @property
    def cost(self) -> int:
        """Nanoton the hot wallet lost to it: value and forward fee, less what bounced back."""
        if self.outcome.status == TraceStatus.CONFIRMED:
            return self.msg.value + self.outcome.fee
        return self.outcome.fee


async def _book_strays(
    session: AsyncSession, request_id: str, strays: list[Stray], lts: ChainLts | None
) -> None:
    for stray in strays:
        if stray.cost:
            await post(session, "ton.stray_message", books.stray_outflow(stray.cost), lts=lts)
        payload = {
            "request": request_id,
            "message": stray.msg.hash,
            "destination": stray.msg.destination,
            "value": stray.msg.value,
            "cost": stray.cost,
            "outcome": str(stray.outcome.status),
        }
        emit(session, "ton.stray_message", "system", payload)
        await signals.write_signal(session, signals.STRAY_MESSAGES, 1, kind="counter")
        await signals.write_signal(
            session, signals.STRAY_MESSAGE_LAST_MS, int(clock.now().timestamp() * 1000)
        )
        log.error("a message no payout explains left the hot wallet", **payload)


async def finalize_request(
    ctx: TonRailContext,
    request_id: str,
    outcomes: dict[str, Outcome],
    strays: list[Stray] | None = None,
    lts: ChainLts | None = None,
) -> None:
    """Post the books and move attempts and payments, once every transfer is final.

    One transaction for the whole request; the confirmed payouts (nearly all of them) move
    together: one compare-and-set statement for their attempts and one for their payments,
    bulk updates for their transfers and fee decisions, an entry each in the books. Stray
    messages (`Stray`) are booked in the same transaction. Every entry carries `lts`: the
    first and last lt of the hot wallet's transactions the request's outcome was read from."""
    async with transaction(ctx) as session:
        # Locked: a second worker settling the same request (its lease ran out while this one
        # read the chain) waits here, then finds it final, instead of failing the whole round
        # on the attempts' compare-and-set.
        request = await session.get(TonRequest, request_id, with_for_update=True)
        assert request is not None
        if request.status == RequestStatus.FINAL:
            return
        await _book_strays(session, request_id, strays or [], lts)
        transfers = await request_transfers(session, request_id)
        attempts = await _by_id(session, Attempt, [t.attempt_id for t in transfers])
        payments = await _by_id(session, Payment, [t.payment_id for t in transfers])
        await move_attempts(
            session,
            [
                AttemptMove(a, AttemptStatus.SUBMITTED)
                for a in attempts.values()
                if a.status == AttemptStatus.CREATED
            ],
        )
        now = clock.now()

        def charged(payment: Payment) -> bool:
            # Fees of an account that holds a balance are its own (HOUSE_ACCOUNT_ID).
            return books.draws_on_balance(ctx.settings.house_account_id, payment.account_id)

        shares = split_common_fee(request.common_fee or 0, len(transfers))
        confirmed_moves: list[AttemptMove] = []
        confirmed_payments: list[Payment] = []
        confirmed_rows: list[dict[str, Any]] = []
        confirmed_outcomes: list[Confirmed] = []
        failed_payments: list[Payment] = []
        entries: list[tuple[str, list[books.Line], str | None]] = []
        for t, share in zip(transfers, shares, strict=True):
            attempt = attempts[t.attempt_id]
            payment = payments[t.payment_id]
            outcome = outcomes.get(t.attempt_id)
            fee = share + (outcome.fee if outcome else 0)
            trace = {**t.trace, **outcome.trace} if outcome is not None else dict(t.trace)
            if outcome is not None and outcome.status == TraceStatus.CONFIRMED:
                confirmed_rows.append(
                    {
                        "attempt_id": t.attempt_id,
                        "status": TransferStatus.CONFIRMED,
                        "fee": fee,
                        "trace": trace,
                        "updated_at": now,
                    }
                )
                confirmed_moves.append(
                    AttemptMove(
                        attempt,
                        AttemptStatus.CONFIRMED,
                        {
                            "fee_amount": fee,
                            "fee_asset": "TON",
                            "details": {**attempt.details, **trace},
                            # An attempt that was `unknown` for a while keeps no error.
                            "error_code": None,
                            "error_message": None,
                        },
                    )
                )
                entries.append(
                    (
                        "payout.sent",
                        books.payout_sent(
                            payment.asset, payment.amount, fee, "TON", books.HOT_WALLET
                        ),
                        payment.id,
                    )
                )
                if fee and charged(payment):
                    entries.append(
                        (
                            "payout.fee_charged",
                            books.fee_charged(payment.account_id, "TON", fee),
                            payment.id,
                        )
                    )
                confirmed_payments.append(payment)
                confirmed_outcomes.append(Confirmed(payment.id, fee, payment.created_at, now))
                signals.observe_confirmation("ton", (now - payment.created_at).total_seconds())
                continue
            t.fee = fee
            t.updated_at = now
            t.trace = trace
            code = (
                "not_sent"
                if t.status == TransferStatus.NOT_SENT
                else (
                    "bounced"
                    if outcome is not None and outcome.status == TraceStatus.BOUNCED
                    else "failed"
                )
            )
            reason = (
                outcome.reason if outcome is not None else None
            ) or "the wallet skipped the message"
            if outcome is not None and outcome.code == JETTON_ATTACH_LOW:
                code, reason = await _attach_retry_or_not(ctx, session, t, reason)
            if t.status == TransferStatus.SENT:
                t.status = TransferStatus.BOUNCED
            await move_attempt(
                session,
                attempt,
                AttemptStatus.FAILED,
                fee_amount=fee,
                fee_asset="TON",
                error_code=code,
                error_message=reason,
                details={**attempt.details, **trace},
            )
            if fee:
                await post(
                    session,
                    "payout.fee",
                    [
                        books.Line(books.NETWORK_FEES, "TON", fee),
                        books.Line(books.HOT_WALLET, "TON", -fee),
                    ],
                    payment.id,
                    lts=lts,
                )
                if charged(payment):
                    await post(
                        session,
                        "payout.fee_charged",
                        books.fee_charged(payment.account_id, "TON", fee),
                        payment.id,
                        lts=lts,
                    )
            await record_outcome(session, payment.id, "failed", fee_paid=fee)
            if code == JETTON_ATTACH_LOW:
                # The refused attempt is booked and final (it bounced): nothing of it can
                # still move, so the payout may be signed again.
                crashpoint(ctx.settings, "ton.attach_refused_booked")
            await retry_or_fail(ctx, session, payment, code, reason)
            failed_payments.append(payment)
        await lock_if_suspicious(session, ctx.settings, failed_payments)
        await post_many(session, entries, lts=lts)
        await move_attempts(session, confirmed_moves)
        await move_payments(
            session, confirmed_payments, PaymentStatus.SUCCEEDED, actor="system:ton"
        )
        if confirmed_rows:
            await session.execute(update(TonTransfer), confirmed_rows)
        await record_confirmed(session, confirmed_outcomes)
        request.status = RequestStatus.FINAL
        request.updated_at = now
        crashpoint(ctx.settings, "ton.before_confirm")


async def _attach_retry_or_not(
    ctx: TonRailContext, session: AsyncSession, transfer: TonTransfer, reason: str
) -> tuple[str, str]:
    """The error code of a jetton transfer our jetton wallet refused for too little TON:
    JETTON_ATTACH_LOW while a retry with more TON is left (`jetton_attach_retry`: twice the
    attach, at most FEES_JETTON_ATTACH_MAX_NANOTON and the gas cap; at most
    FEES_JETTON_ATTACH_RETRIES of them), else JETTON_ATTACH_EXHAUSTED (final for TON)."""
    s = ctx.settings
    past = (await attempts_of(session, [transfer.payment_id]))[transfer.payment_id]
    refused_before = sum(
        a.error_code == JETTON_ATTACH_LOW for a in past if a.id != transfer.attempt_id
    )
    limit = attach_retry_limit(s, ctx.gas_caps)
    if refused_before >= s.fees_jetton_attach_retries:
        why = f"no retry left ({refused_before} of FEES_JETTON_ATTACH_RETRIES used)"
    elif jetton_attach_retry(transfer.message_value, limit) is None:
        why = f"no more TON to attach (at most {limit} nanoton: FEES_JETTON_ATTACH_MAX_NANOTON)"
    else:
        return JETTON_ATTACH_LOW, reason
    return JETTON_ATTACH_EXHAUSTED, f"{reason}; {why}"


async def retry_or_fail(
    ctx: TonRailContext, session: AsyncSession, payment: Payment, code: str, reason: str
) -> None:
    """Back to the queue with backoff, or failed for good after the last attempt. A jetton
    transfer our jetton wallet refused for too little TON (JETTON_ATTACH_LOW) goes back at
    once: the refusal is deterministic, and the next attempt attaches more (ton_batch.py)."""
    past = (await attempts_of(session, [payment.id]))[payment.id]
    attempts = sum(a.rail == "ton" and a.status in FAILED_ATTEMPT_STATES for a in past)
    if not ton_exhausted_by(ctx.settings, past):
        backoff = ctx.settings.ton_retry_backoff_s * 2 ** (attempts - 1)
        until = None if code == JETTON_ATTACH_LOW else clock.now() + timedelta(seconds=backoff)
        await move_payment(
            session,
            payment,
            PaymentStatus.QUEUED,
            actor="system:ton",
            values={"locked_by": None, "locked_until": until},
        )
        return
    if set(ctx.enabled) - {"ton"}:
        # TON failed after its retries: back to the queue unrouted, so the router falls back.
        await move_payment(
            session,
            payment,
            PaymentStatus.QUEUED,
            actor="system:ton",
            values={"route": None, "route_reason": None, "locked_by": None, "locked_until": None},
        )
        return
    await move_payment(
        session,
        payment,
        PaymentStatus.FAILED,
        actor="system:ton",
        failure_code=f"ton_{code}",
        failure_message=reason,
    )


async def expire_request(ctx: TonRailContext, request_id: str) -> None:
    """Proven unprocessed after its validity: attempts expire, payouts go back to the queue."""
    async with transaction(ctx) as session:
        if not await expire_in(ctx, session, request_id):
            return
    log.warning("ton request expired unprocessed", request=request_id)


async def expire_in(ctx: TonRailContext, session: AsyncSession, request_id: str) -> bool:
    """`expire_request` in the caller's transaction; False when the request was no longer
    signed or sent (processed, expired or final meanwhile): then nothing is written."""
    result = await session.execute(
        update(TonRequest)
        .where(
            TonRequest.id == request_id,
            TonRequest.status.in_((RequestStatus.SIGNED, RequestStatus.SENT)),
        )
        .values(status=RequestStatus.EXPIRED, updated_at=clock.now())
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        return False
    for attempt in await request_attempts(session, request_id):
        if attempt.status == AttemptStatus.CREATED:
            await move_attempt(session, attempt, AttemptStatus.SUBMITTED)
        if attempt.status in (AttemptStatus.SUBMITTED, AttemptStatus.UNKNOWN):
            await move_attempt(
                session,
                attempt,
                AttemptStatus.EXPIRED,
                error_code="expired",
                error_message="not processed before its validity ended",
            )
        payment = await session.get(Payment, attempt.payment_id)
        assert payment is not None
        await session.execute(
            update(TonTransfer)
            .where(TonTransfer.attempt_id == attempt.id)
            .values(status=TransferStatus.NOT_SENT, updated_at=clock.now())
        )
        await retry_or_fail(ctx, session, payment, "expired", "the request expired unprocessed")
    return True


async def mark_overdue(ctx: TonRailContext, request_id: str, timeout_s: int) -> None:
    """Sent (submitted) longer than the confirmation timeout and not confirmed: `unknown`,
    which the `payout_unknown` alert reports. Tracking goes on: the attempt still ends
    confirmed, failed or expired as the chain shows."""
    cutoff = clock.now() - timedelta(seconds=timeout_s)
    async with transaction(ctx) as session:
        overdue = [
            a
            for a in await request_attempts(session, request_id)
            if a.status == AttemptStatus.SUBMITTED and a.updated_at <= cutoff
        ]
        await move_attempts(
            session,
            [
                AttemptMove(
                    a,
                    AttemptStatus.UNKNOWN,
                    {
                        "error_code": "confirmation_timeout",
                        "error_message": f"sent and not confirmed within {timeout_s} s",
                    },
                )
                for a in overdue
            ],
        )
    if overdue:
        log.error(
            "ton payouts unconfirmed past the confirmation timeout",
            request=request_id,
            payouts=[a.payment_id for a in overdue],
        )


async def mark_unknown(ctx: TonRailContext, request_id: str) -> None:
    """Past validity but not provably unprocessed: hold everything as `unknown`."""
    async with transaction(ctx) as session:
        for attempt in await request_attempts(session, request_id):
            if attempt.status == AttemptStatus.CREATED:
                await move_attempt(session, attempt, AttemptStatus.SUBMITTED)
            if attempt.status == AttemptStatus.SUBMITTED:
                await move_attempt(
                    session,
                    attempt,
                    AttemptStatus.UNKNOWN,
                    error_code="unproven",
                    error_message="past validity and not provably unprocessed",
                )
    log.error("ton request outcome unknown", request=request_id)
