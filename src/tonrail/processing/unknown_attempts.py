"""`tonrail payouts resolve-unknown`: prove from the chain what became of a TON payout whose
attempt is `unknown`, and continue from there.

An attempt is `unknown` when it was sent and not confirmed within the confirmation timeout
(outcomes.py: `mark_overdue`), or when its request is past validity and the tracker could not
prove it unprocessed (`mark_unknown`). For each such request the chain is read first — all
requests before anything is written, so an unreachable chain changes nothing:

- **sent**: a transaction of the hot wallet took the request's external message (found by its
  hash, else by its body among the wallet's transactions since the request was created). The
  attempts stay `unknown` and are tracked to confirmed or failed, with the books, from that
  transaction on (here at once as far as the chain shows, then by the worker).
- **expired unsent**: the chain's own time is past the message's valid_until (plus
  TON_EXPIRY_MARGIN_S), so the wallet can no longer accept it; no transaction of the wallet
  since the request was created carries it; and `processed?(query_id)` is false. The request
  expires and its payouts are retried with a new query_id or fail, by the pipeline's rules.
- anything else (still valid, `processed?` true or unreadable without a transaction, a history
  too long to read): **undecided**, nothing changes.

A decision is written with an audit entry per payout in one transaction; an attempt that moved
meanwhile (the tracker decided first) is left as it is. Nothing is ever re-signed while the old
request could still execute, so a payout is never paid twice.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal

import structlog
from sqlalchemy import select
from ton_core import Cell, MessageAny

from tonrail.errors import NotFound, TonrailError
from tonrail.kit.faults import crashpoint
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.states import AttemptStatus
from tonrail.processing.context import TonRailContext, transaction
from tonrail.processing.outcomes import expire_in
from tonrail.processing.ton_track import processed_flag, track_request
from tonrail.rails.ton.chain_view import Tx
from tonrail.rails.ton.models import TonRequest, TonTransfer
from tonrail.rails.ton.toncenter import ToncenterError
from tonrail.security.audit_log import record

log = structlog.get_logger(__name__)

HISTORY_PAGE = 100  # wallet transactions read at a time, newest first
HISTORY_PAGES = 100  # at most this many pages back to the request's creation: else undecided

Verdict = Literal["sent", "expired", "undecided"]


class ChainUnreachable(TonrailError):
    code = "chain_unreachable"
    status = 503


def chain_unreachable(exc: ToncenterError) -> ChainUnreachable:
    return ChainUnreachable(
        f"the chain cannot be read ({exc.message}): nothing was changed; try again when "
        "toncenter answers"
    )


@dataclass(frozen=True, slots=True)
class Proof:
    """What the chain shows of one request."""

    request_id: str
    verdict: Verdict
    reason: str
    ext: Tx | None = None  # the transaction that took the external message (sent)


@dataclass(frozen=True, slots=True)
class Resolved:
    """One payout's line of the command's report."""

    payout_id: str
    request_id: str
    verdict: Verdict
    reason: str
    status: str  # the payout's status afterwards


def _message_hashes(boc: str) -> tuple[str, str]:
    """The external message's own hash and its body's hash (hex): how a transaction that took
    it is recognized among the wallet's transactions."""
    cell = Cell.one_from_boc(base64.b64decode(boc))
    body = MessageAny.deserialize(cell.begin_parse()).body
    return bytes(cell.hash).hex(), bytes(body.hash).hex()


def _takes(tx: Tx, request: TonRequest, hashes: tuple[str, str]) -> bool:
    m = tx.in_msg
    if m is None or m.source is not None:  # only an external message can carry the request
        return False
    return m.hash.lower() in (hashes[0], request.msg_hash_norm.lower()) or m.body_hash == hashes[1]


async def _wallet_history_takes(ctx: TonRailContext, request: TonRequest) -> tuple[Tx | None, bool]:
    """The wallet's transaction that took the request's external message, read backwards to
    the request's creation; and whether that history was read to its end."""
    hashes = _message_hashes(request.boc)
    before = 0
    for _ in range(HISTORY_PAGES):
        page = await ctx.api.transactions_before(ctx.wallet_raw, before, HISTORY_PAGE)
        for tx in page:
            if _takes(tx, request, hashes):
                return tx, True
        if len(page) < HISTORY_PAGE or page[-1].now < request.chain_created_at:
            return None, True
        before = page[-1].lt
    return None, False


async def prove(ctx: TonRailContext, request: TonRequest) -> Proof:
    """Read the chain for one request; ToncenterError when it cannot be read."""
    # The chain's time first: whatever the wallet accepted is in the state read after it.
    chain_now = await ctx.api.synced_at(ctx.wallet.address.to_str())
    ext = await ctx.api.tx_by_in_message(request.msg_hash_norm)
    complete = True
    if ext is None:
        ext, complete = await _wallet_history_takes(ctx, request)
    if ext is not None:
        return Proof(request.id, "sent", f"taken by the hot wallet's transaction {ext.hash}", ext)
    if not complete:
        return Proof(request.id, "undecided", "the wallet's history is too long to read back")
    expired_at = request.valid_until + ctx.settings.ton_expiry_margin_s
    if chain_now <= expired_at:
        return Proof(
            request.id,
            "undecided",
            f"still valid on chain (chain time {chain_now} <= {expired_at}): it may land; "
            "the worker keeps re-sending and tracking it",
        )
    processed = await processed_flag(ctx, request.query_id)
    if processed is not False:
        return Proof(
            request.id,
            "undecided",
            "the wallet reports the query_id processed but no transaction of it was found"
            if processed
            else "the wallet's processed? cannot be read",
        )
    return Proof(
        request.id,
        "expired",
        f"valid until {request.valid_until}, chain time {chain_now}, not in the wallet's "
        f"transactions since {request.chain_created_at}, processed?({request.query_id}) false",
    )


async def _unknown_requests(ctx: TonRailContext, payout_id: str | None) -> list[TonRequest]:
    """The requests of the unknown TON attempts (of `payout_id`, else all), oldest first."""
    async with transaction(ctx) as session:
        stmt = (
            select(TonRequest)
            .join(TonTransfer, TonTransfer.request_id == TonRequest.id)
            .join(Attempt, Attempt.id == TonTransfer.attempt_id)
            .where(Attempt.status == AttemptStatus.UNKNOWN)
            .order_by(TonRequest.created_at)
            .distinct()
        )
        if payout_id is not None:
            if await session.get(Payment, payout_id) is None:
                raise NotFound(f"no payout {payout_id}", param="payout_id")
            stmt = stmt.where(Attempt.payment_id == payout_id)
        requests = list((await session.execute(stmt)).scalars())
    if payout_id is not None and not requests:
        raise TonrailError(
            f"payout {payout_id} has no attempt in unknown", code="no_unknown_attempt"
        )
    return requests


async def resolve_unknown(ctx: TonRailContext, payout_id: str | None, actor: str) -> list[Resolved]:
    """Resolve the unknown attempts of one payout (or all): see the module's docstring.

    Raises ChainUnreachable, with nothing written, when the chain cannot be read."""
    requests = await _unknown_requests(ctx, payout_id)
    try:
        proofs = [await prove(ctx, r) for r in requests]
    except ToncenterError as exc:
        raise chain_unreachable(exc) from exc
    report: list[Resolved] = []
    for proof in proofs:
        report += await _apply(ctx, proof, actor)
    return report


async def _apply(ctx: TonRailContext, proof: Proof, actor: str) -> list[Resolved]:
    decided = proof.verdict != "undecided"
    async with transaction(ctx) as session:
        attempts = (
            (
                await session.execute(
                    select(Attempt)
                    .join(TonTransfer, TonTransfer.attempt_id == Attempt.id)
                    .where(TonTransfer.request_id == proof.request_id)
                    .order_by(TonTransfer.position)
                )
            )
            .scalars()
            .all()
        )
        unknown = [a for a in attempts if a.status == AttemptStatus.UNKNOWN]
        if proof.verdict == "expired" and not await expire_in(ctx, session, proof.request_id):
            decided = False  # the tracker got there first: nothing to do
        if decided:
            for a in unknown:
                await record(
                    session,
                    actor,
                    "payout.unknown_resolved",
                    a.payment_id,
                    {
                        "attempt": a.id,
                        "request": proof.request_id,
                        "verdict": proof.verdict,
                        "proof": proof.reason,
                    },
                )
            crashpoint(ctx.settings, "ton.resolve_unknown")
    if proof.verdict == "sent" and decided:
        log.warning("unknown ton request proven sent", request=proof.request_id)
        await _track_from(ctx, proof)
    elif decided:
        log.warning("unknown ton request proven expired unsent", request=proof.request_id)
    async with transaction(ctx) as session:
        out = []
        for a in unknown:
            payment = await session.get(Payment, a.payment_id, populate_existing=True)
            assert payment is not None
            out.append(
                Resolved(
                    a.payment_id, proof.request_id, proof.verdict, proof.reason, payment.status
                )
            )
    return out


async def _track_from(ctx: TonRailContext, proof: Proof) -> None:
    """Track a request proven sent from the transaction that took it: as far as the chain
    shows now; the worker's tracker goes on from there."""
    assert proof.ext is not None
    async with transaction(ctx) as session:
        request = await session.get(TonRequest, proof.request_id)
        assert request is not None
        msg_hash = request.msg_hash_norm
    ctx.found.setdefault(proof.request_id, {})[msg_hash] = proof.ext
    try:
        await track_request(ctx, proof.request_id)
    except TonrailError as exc:  # the proof stands; reading on is the worker's job
        log.warning("tracking after resolve-unknown failed", error=exc.message)
