"""TON payouts, exactly once: assemble → sign and store → send → track to a final outcome.

The order is what makes a crash harmless at any point:
1. `assemble` claims queued payouts, starts their attempts, allocates (query_id, created_at),
   signs the highload request and stores the signed BOC — all in one database transaction.
   A crash before the commit leaves the payouts queued; nothing was signed for good.
2. `send` (re-)sends stored BOCs. Re-sending is safe: the wallet accepts a query_id once.
3. `track` reads the chain: the request's external transaction, the internal_transfer that
   carries the out messages, and each transfer's own trace. A request that is past its
   validity and proven unprocessed (no transaction, `processed?` false) expires and its
   payouts go back to the queue for a new request with a new query_id. Nothing is ever
   re-signed while the old request could still be executed.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import structlog
from sqlalchemy import ColumnElement, CursorResult, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from ton_core import Address

from tonrail import clock
from tonrail.db import Database
from tonrail.events.service import emit
from tonrail.fees.policy import FeeDecision
from tonrail.fees.repository import latest_sample
from tonrail.fees.service import (
    Confirmed,
    FeeConditions,
    decide_for_batch,
    load_conditions,
    record_confirmed,
    record_outcome,
)
from tonrail.ids import new_id
from tonrail.kit.claims import claim, release
from tonrail.kit.faults import crashpoint
from tonrail.ledger import rules as books
from tonrail.ledger.service import post, post_many
from tonrail.monitoring import signals
from tonrail.payments.attempts import move_attempt, payment_view
from tonrail.payments.bulk import AttemptMove, move_attempts, move_payments, start_attempts
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.service import PaymentService
from tonrail.rails.base import RailName
from tonrail.rails.health import load_health
from tonrail.rails.router import (
    NoRail,
    PastAttempt,
    RailChoice,
    RouteContext,
    RoutingPolicy,
    choose_rail,
)
from tonrail.rails.ton.api import TonApi, jetton_balance
from tonrail.rails.ton.chain_view import Msg, Tx, query_id_of, raw, same_address
from tonrail.rails.ton.feed import NotCovered, OwnFeeds
from tonrail.rails.ton.highload import (
    HighloadWallet,
    OutTransfer,
    jetton_transfer,
    query_id_for,
    sign_request,
    ton_transfer,
)
from tonrail.rails.ton.models import TonQueryCounter, TonRequest, TonTransfer
from tonrail.rails.ton.outcomes import (
    ASK_RECIPIENT,
    ExcessFinder,
    Lookup,
    Outcome,
    follow_jetton,
    follow_ton,
    split_common_fee,
)
from tonrail.rails.ton.quote import TonQuoter, recent_fees
from tonrail.security.switches import is_on
from tonrail.settings import Settings

log = structlog.get_logger(__name__)


PRIORITY_ORDER = {"urgent": 0, "normal": 1, "low": 2}
FOLLOW_CONCURRENCY = 32  # transfers followed at once (all requests together)


@dataclass
class TonRailContext:
    """What the TON payout loops need; built once per worker."""

    db: Database
    settings: Settings
    payments: PaymentService
    api: TonApi
    wallet: HighloadWallet
    sign: Callable[[bytes], bytes]
    jetton_wallet: str | None  # raw address of our USDT jetton wallet, when USDT is enabled
    worker_id: str
    # Routing (rails/router.py): the backup rails a payout may fall back to, and how.
    backup: Mapping[str, Any] = field(default_factory=dict)
    routing: RoutingPolicy = field(default_factory=RoutingPolicy)
    enabled: frozenset[RailName] = frozenset({"ton"})
    # False: no fee optimizer; every claimed payout goes at once with the configured jetton
    # attach (plain batching: the fee benchmark's baselines).
    fee_optimizer: bool = True
    # request id -> monotonic time before which the tracker leaves it alone (in flight)
    track_after: dict[str, float] = field(default_factory=dict)
    # request id -> transactions of its trace found so far, by in-message hash: a found
    # transaction never changes, so later rounds only ask for the hops still missing
    found: dict[str, dict[str, Tx]] = field(default_factory=dict)
    # chain reads in flight at once, over all requests being followed (FOLLOW_CONCURRENCY)
    follow_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(FOLLOW_CONCURRENCY)
    )
    # SQLite: this worker's transactions take turns here, first come first served, instead
    # of racing for the write lock in SQLite's busy handler (which is not fair).
    db_turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    # our own accounts (hot wallet, USDT jetton wallet) read as feeds: feed.py
    own_feeds: OwnFeeds | None = None
    # request id -> internal transfer hash -> since when its excess is awaited (monotonic)
    excess_waits: dict[str, dict[str, float]] = field(default_factory=dict)

    def feeds(self) -> OwnFeeds:
        if self.own_feeds is None:
            mine = {self.wallet_raw, *([self.jetton_wallet] if self.jetton_wallet else [])}
            self.own_feeds = OwnFeeds(frozenset(a.upper() for a in mine))
        return self.own_feeds

    @property
    def wallet_raw(self) -> str:
        return raw(self.wallet.address)


@asynccontextmanager
async def _transaction(ctx: TonRailContext) -> AsyncIterator[AsyncSession]:
    """`ctx.db.transaction()`, queued behind this worker's other transactions on SQLite."""
    if ctx.db.dialect != "sqlite":
        async with ctx.db.transaction() as session:
            yield session
        return
    async with ctx.db_turn, ctx.db.transaction() as session:
        yield session


# ------------------------------------------------------------------------------- assemble
async def _next_query_seq(session: AsyncSession, wallet: str) -> int:
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


def _attach(ctx: TonRailContext, decision: FeeDecision | None) -> int:
    """TON to attach to a jetton transfer: the optimizer's figure, else the configured one."""
    if decision is not None and decision.jetton_attach_nanoton > 0:
        return decision.jetton_attach_nanoton
    return ctx.settings.ton_jetton_attach_nanoton


def _out_transfer(
    ctx: TonRailContext, payment: Payment, jetton_query_id: int, attach: int
) -> OutTransfer:
    """The out message for one payout; the comment carries our payment id."""
    destination = Address(payment.counterparty or "")
    comment = payment.id
    if payment.asset == "TON":
        # A user-friendly non-bounceable address means "may be uninitialized": honour it.
        bounce = bool(getattr(destination, "is_bounceable", True))
        return ton_transfer(destination, payment.amount, bounce, comment)
    if ctx.jetton_wallet is None:
        raise RuntimeError("USDT payouts need the USDT jetton master to be configured")
    return jetton_transfer(
        Address(ctx.jetton_wallet),
        destination,
        payment.amount,
        attach_ton=attach,
        forward_ton=ctx.settings.ton_jetton_forward_nanoton,
        response=ctx.wallet.address,
        query_id=jetton_query_id,
        comment=comment,
    )


@dataclass(frozen=True)
class RoundInputs:
    """What `assemble` reads before its transaction; one read serves a whole loop turn (the
    funds check subtracts what requests signed since then will take, in the transaction)."""

    quoter: TonQuoter
    chain: dict[str, int]
    conditions: FeeConditions | None


async def round_inputs(ctx: TonRailContext) -> RoundInputs:
    return RoundInputs(
        TonQuoter(await recent_fees(ctx.db), ctx.jetton_wallet is not None),
        await chain_balances(ctx),
        await load_conditions(ctx.db, ctx.settings) if ctx.fee_optimizer else None,
    )


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
    async with _transaction(ctx) as session:
        claimed = await claim(
            session,
            Payment,
            (Payment.direction == "out")
            & (Payment.status == "queued")
            & ((Payment.route.is_(None)) | (Payment.route == "ton")),
            worker_id=ctx.worker_id,
            lease_seconds=ctx.settings.worker_lease_seconds,
            limit=ctx.settings.ton_batch_max,
            order_by=(Payment.created_at,),
        )
        if not claimed:
            return None
        claimed.sort(key=lambda p: (PRIORITY_ORDER.get(p.priority, 1), p.created_at))
        # The fee optimizer decides, for every payout, when it may go and with what.
        decisions: dict[str, FeeDecision] = (
            await decide_for_batch(session, conditions, ctx.settings, claimed)
            if conditions is not None
            else {}
        )
        claimed = await _route(ctx, session, claimed, quoter, decisions)
        claimed = await _timing(ctx, session, claimed, decisions, conditions)
        claimed = await _fund(ctx, session, claimed, chain, decisions)
        if not claimed:
            return None
        crashpoint(ctx.settings, "ton.after_claim")
        seq = await _next_query_seq(session, ctx.wallet_raw)
        chain_created_at = int(now.timestamp()) - ctx.settings.ton_created_at_lag_s
        query_id = query_id_for(seq)
        jetton_query_ids = [secrets.randbits(63) for _ in claimed]
        transfers = [
            _out_transfer(ctx, p, jq, _attach(ctx, decisions.get(p.id)))
            for p, jq in zip(claimed, jetton_query_ids, strict=True)
        ]
        signed = sign_request(
            ctx.wallet,
            ctx.sign,
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
            status="signed",
            send_count=0,
            created_at=now,
            updated_at=now,
        )
        session.add(request)
        await move_payments(
            ctx.payments,
            session,
            claimed,
            "processing",
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
                status="pending",
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


async def _set_columns(
    session: AsyncSession, groups: Mapping[tuple[Any, ...], list[Payment]], names: Sequence[str]
) -> None:
    """One UPDATE per distinct tuple of values (`names`) instead of one per payout."""
    for values, payments in groups.items():
        await session.execute(
            update(Payment)
            .where(Payment.id.in_([p.id for p in payments]))
            .values(dict(zip(names, values, strict=True)))
            .execution_options(synchronize_session=False)
        )
        for p in payments:
            for name, value in zip(names, values, strict=True):
                set_committed_value(p, name, value)


# A bounce is final for TON: the same message to the same address would bounce again.
FINAL_TON_ERRORS = frozenset({"bounced"})


async def _ton_attempts_failed(session: AsyncSession, payment_id: str) -> int:
    stmt = select(Attempt.id).where(
        Attempt.payment_id == payment_id,
        Attempt.rail == "ton",
        Attempt.status.in_(("failed", "expired")),
    )
    return len((await session.execute(stmt)).all())


async def _ton_exhausted(ctx: TonRailContext, session: AsyncSession, payment_id: str) -> bool:
    """TON has had its chance: all retries used, or an error no retry can fix."""
    final = (
        await session.execute(
            select(Attempt.id).where(
                Attempt.payment_id == payment_id,
                Attempt.rail == "ton",
                Attempt.error_code.in_(FINAL_TON_ERRORS),
            )
        )
    ).first()
    if final is not None:
        return True
    return await _ton_attempts_failed(session, payment_id) >= ctx.settings.ton_max_attempts


async def _congestion(session: AsyncSession, ctx: TonRailContext) -> int | None:
    """The fee optimizer's latest congestion estimate (0-100), if it is fresh."""
    sample = await latest_sample(session)
    if sample is None or sample.congestion_bp is None:
        return None
    if clock.now() - sample.sampled_at > timedelta(seconds=ctx.settings.route_congestion_max_age_s):
        return None  # an old sample says nothing about now
    return sample.congestion_bp // 100


def _exhausted(ctx: TonRailContext, attempts: Sequence[Attempt]) -> bool:
    """`_ton_exhausted` from attempts already read."""
    ton = [a for a in attempts if a.rail == "ton"]
    if any(a.error_code in FINAL_TON_ERRORS for a in ton):
        return True
    return sum(a.status in ("failed", "expired") for a in ton) >= ctx.settings.ton_max_attempts


async def _route(
    ctx: TonRailContext,
    session: AsyncSession,
    claimed: list[Payment],
    quoter: TonQuoter,
    fee_decisions: Mapping[str, FeeDecision],
) -> list[Payment]:
    """Ask the router about payouts not routed yet; keep those it sends to TON.

    With a backup rail configured, the router also hears the fee optimizer: the network's
    congestion and, per payout, whether its fee on TON is over the threshold (divert).
    What `rails.health.decide` reads for one payout is read here once for the batch."""
    fresh = [p for p in claimed if p.route != "ton"]
    if not fresh:
        return claimed
    # The fee optimizer only matters to routing when there is somewhere else to go.
    backups = bool(set(ctx.enabled) - {"ton"})
    congestion = await _congestion(session, ctx) if backups else None
    history: dict[str, list[Attempt]] = {}
    for a in (
        await session.execute(
            select(Attempt)
            .where(Attempt.payment_id.in_([p.id for p in fresh]))
            .order_by(Attempt.payment_id, Attempt.number)
        )
    ).scalars():
        history.setdefault(a.payment_id, []).append(a)
    health = await load_health(session)
    rails = cast(dict[RailName, Any], {"ton": quoter, **ctx.backup})
    kept: list[Payment] = []
    routed: dict[tuple[Any, ...], list[Payment]] = {}  # to TON: (route, reason)
    released: dict[tuple[Any, ...], list[Payment]] = {}  # elsewhere, or waiting: unleased
    for p in claimed:
        if p.route == "ton":
            kept.append(p)
            continue
        past = history.get(p.id, [])
        fee_decision = fee_decisions.get(p.id)
        view = payment_view(p)
        quotes = {name: await rail.quote(view) for name, rail in rails.items()}
        decision = choose_rail(
            view,
            RouteContext(
                now=clock.now(),
                quotes=quotes,
                enabled=ctx.enabled,
                attempts=[PastAttempt(a.rail, a.status) for a in past],  # type: ignore[arg-type]
                congestion_pct=congestion,
                divert=backups
                and fee_decision is not None
                and fee_decision.divert_reason is not None,
                ton_failed_after_retries=_exhausted(ctx, past),
                health=health,
            ),
            ctx.routing,
        )
        if isinstance(decision, RailChoice):
            if decision.rail == "ton":
                routed.setdefault(("ton", decision.reason), []).append(p)
                kept.append(p)
                continue
            released.setdefault((decision.rail, decision.reason, None, None), []).append(p)
            await record_outcome(session, p.id, "diverted")
            log.info(
                "payout routed to a backup rail",
                payment=p.id,
                rail=decision.rail,
                reason=decision.reason,
            )
        elif isinstance(decision, NoRail):
            why = "; ".join(f"{s.rail}: {s.reason}" for s in decision.skipped) or "no rail"
            await ctx.payments.transition(
                session,
                p,
                "failed",
                actor="system:router",
                failure_code="no_rail_available",
                failure_message=why,
            )
        else:  # Wait: an attempt is still live; leave the payout alone
            released.setdefault((p.route, p.route_reason, None, None), []).append(p)
    # Payouts for TON stay leased to this worker; the others are released to their rail.
    await _set_columns(session, routed, ("route", "route_reason"))
    await _set_columns(session, released, ("route", "route_reason", "locked_by", "locked_until"))
    return kept


TRACK_CONCURRENCY = 8  # requests followed at once
ASSEMBLE_PER_ROUND = 8  # requests signed at a time
ASSEMBLE_EVERY_S = 0.2  # while tracking waits on the chain, payouts keep going out
EXCESS_PATIENCE_S = 10.0  # a jetton transfer without an excess by then: read the recipient
FEE_RESERVE_NANOTON = 20_000_000  # kept back per transfer for fees when checking funds


async def chain_balances(ctx: TonRailContext) -> dict[str, int]:
    """The hot wallet's balances on chain (read before any database lock is taken)."""
    _, ton = await ctx.api.account_state(ctx.wallet.address.to_str())
    usdt = await jetton_balance(ctx.api, ctx.jetton_wallet) if ctx.jetton_wallet else 0
    signals.set_hot_wallet_balance("TON", ton)
    if ctx.jetton_wallet:
        signals.set_hot_wallet_balance("USDT", usdt)
    return {"TON": ton, "USDT": usdt}


async def _available(session: AsyncSession, chain: dict[str, int]) -> dict[str, int]:
    """Hot wallet balances minus what signed requests not yet executed will take."""
    ton, usdt = chain["TON"], chain["USDT"]
    in_flight = (
        await session.execute(
            select(TonTransfer.asset, TonTransfer.amount, TonTransfer.message_value)
            .join(TonRequest, TonRequest.id == TonTransfer.request_id)
            .where(TonRequest.status.in_(("signed", "sent")))
        )
    ).all()
    for asset, amount, value in in_flight:
        ton -= value + FEE_RESERVE_NANOTON
        if asset == "USDT":
            usdt -= amount
    return {"TON": ton, "USDT": usdt}


# Marks a payout that is ready but waits for company (its lease ends at the batch's send_by):
# any request that goes before takes it along.
WINDOW_LEASE = "fees:batch_window"


async def _timing(
    ctx: TonRailContext,
    session: AsyncSession,
    claimed: list[Payment],
    decisions: dict[str, FeeDecision],
    conditions: FeeConditions | None,
) -> list[Payment]:
    """The optimizer's timing: a payout goes no earlier than `send_at`; a batch goes once one
    of its payouts reaches `send_by` (its window for company) or the batch is full, and then
    with every payout that is ready and waiting. Payouts that must wait are leased until
    their moment, so no round re-decides them before; those only waiting for company are
    marked (`WINDOW_LEASE`) so that an earlier request takes them along.
    Without the optimizer (`fee_optimizer=False`) every claimed payout goes at once."""
    if conditions is None:
        return claimed[: ctx.settings.ton_batch_max]
    now = clock.now()
    ready = [p for p in claimed if decisions[p.id].send_at <= now]
    held = [p for p in claimed if decisions[p.id].send_at > now]
    batch_max = min((decisions[p.id].batch_max for p in ready), default=ctx.settings.ton_batch_max)
    due = len(ready) >= batch_max or any(decisions[p.id].send_by <= now for p in ready)
    leases: dict[tuple[Any, ...], list[Payment]] = {}
    for p in held:
        leases.setdefault((None, decisions[p.id].send_at), []).append(p)
    if not due:
        first = min((decisions[p.id].send_by for p in ready), default=None)
        if ready and first is not None:
            leases.setdefault((WINDOW_LEASE, first), []).extend(ready)
        await _set_columns(session, leases, ("locked_by", "locked_until"))
        return []
    if len(ready) < batch_max:
        ready += await _waiting_company(
            ctx, session, decisions, conditions, batch_max - len(ready), leases
        )
    batch, rest = ready[:batch_max], ready[batch_max:]
    if rest:
        leases.setdefault((None, None), []).extend(rest)
    await _set_columns(session, leases, ("locked_by", "locked_until"))
    return batch


async def _waiting_company(
    ctx: TonRailContext,
    session: AsyncSession,
    decisions: dict[str, FeeDecision],
    conditions: FeeConditions,
    room: int,
    leases: dict[tuple[Any, ...], list[Payment]],
) -> list[Payment]:
    """Payouts waiting for company (`WINDOW_LEASE`), claimed now that a request goes; each
    decided again, and left to wait if it must now be held."""
    now = clock.now()
    candidates = (
        select(Payment.id)
        .where(
            Payment.direction == "out",
            Payment.status == "queued",
            Payment.route == "ton",
            Payment.locked_by == WINDOW_LEASE,
        )
        .order_by(Payment.created_at)
        .limit(room)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    joined = list(
        (
            await session.execute(
                update(Payment)
                .where(Payment.id.in_(candidates), Payment.locked_by == WINDOW_LEASE)
                .values(
                    locked_by=ctx.worker_id,
                    locked_until=now + timedelta(seconds=ctx.settings.worker_lease_seconds),
                )
                .returning(Payment)
                .execution_options(synchronize_session=False)
            )
        ).scalars()
    )
    if not joined:
        return []
    joined.sort(key=lambda p: (PRIORITY_ORDER.get(p.priority, 1), p.created_at))
    decisions.update(await decide_for_batch(session, conditions, ctx.settings, joined))
    for p in joined:
        if decisions[p.id].send_at > now:
            leases.setdefault((None, decisions[p.id].send_at), []).append(p)
    return [p for p in joined if decisions[p.id].send_at <= now]


async def _fund(
    ctx: TonRailContext,
    session: AsyncSession,
    claimed: list[Payment],
    chain: dict[str, int],
    decisions: Mapping[str, FeeDecision],
) -> list[Payment]:
    """Keep the payouts the hot wallet can pay now; the others wait with a reason."""
    left = await _available(session, chain)
    funded: list[Payment] = []
    held: list[Payment] = []
    reason = "insufficient_hot_wallet_balance"
    for p in claimed:
        ton_need = p.amount if p.asset == "TON" else _attach(ctx, decisions.get(p.id))
        ton_need += FEE_RESERVE_NANOTON
        usdt_need = p.amount if p.asset == "USDT" else 0
        if left["TON"] >= ton_need and left["USDT"] >= usdt_need:
            left["TON"] -= ton_need
            left["USDT"] -= usdt_need
            funded.append(p)
            continue
        if p.hold_reason != reason:
            emit(
                session,
                "payout.held",
                p.account_id,
                {"id": p.id, "reason": reason, "asset": p.asset},
                p.id,
            )
        held.append(p)
    if held:
        await _set_columns(
            session, {(reason, None, None): held}, ("hold_reason", "locked_by", "locked_until")
        )
    return funded


async def batch_ready(ctx: TonRailContext) -> bool:
    """Whether any payout could go: when it goes is the fee optimizer's call in `assemble`
    (`_timing`), which leases waiting payouts until their moment, so this stays cheap."""
    now = clock.now()
    async with _transaction(ctx) as session:
        row = (
            await session.execute(
                select(Payment.id)
                .where(
                    Payment.direction == "out",
                    Payment.status == "queued",
                    (Payment.route.is_(None)) | (Payment.route == "ton"),
                    (Payment.locked_until.is_(None)) | (Payment.locked_until < now),
                )
                .limit(1)
            )
        ).first()
    return row is not None


async def payout_round(ctx: TonRailContext) -> int:
    """One turn of the payout loop: track the open requests and, while that waits on the
    chain, assemble and send (unless paused) every ASSEMBLE_EVERY_S."""
    tracking = asyncio.create_task(track_open(ctx))
    handled = 0
    try:
        while True:
            handled += await _assemble_and_send(ctx)
            if tracking.done():
                break
            await asyncio.wait({tracking}, timeout=ASSEMBLE_EVERY_S)
            if tracking.done():
                break
    except Exception:
        await asyncio.gather(tracking, return_exceptions=True)  # let it finish its reads
        raise
    return handled + await tracking


async def _assemble_and_send(ctx: TonRailContext) -> int:
    async with _transaction(ctx) as session:
        paused = await is_on(session, "payments_paused")
    if paused:
        return 0
    handled = 0
    # Several requests at a time when payouts pile up.
    inputs: RoundInputs | None = None
    deploy = False
    for _ in range(ASSEMBLE_PER_ROUND):
        if not await batch_ready(ctx):
            break
        if inputs is None:
            state, _ = await ctx.api.account_state(ctx.wallet.address.to_str())
            deploy = state != "active"
            inputs = await round_inputs(ctx)
        if not await assemble(ctx, deploy=deploy, inputs=inputs):
            break
        handled += 1
    return handled + await send_due(ctx)


# ------------------------------------------------------------------------------- send
async def send_due(ctx: TonRailContext) -> int:
    """Send requests never sent, and re-send those not yet seen on chain, until valid_until."""
    now = clock.now()
    resend_before = now - timedelta(seconds=ctx.settings.ton_resend_seconds)
    async with _transaction(ctx) as session:
        due = await claim(
            session,
            TonRequest,
            (TonRequest.status.in_(("signed", "sent")))
            & (TonRequest.valid_until > int(now.timestamp()))
            & ((TonRequest.last_sent_at.is_(None)) | (TonRequest.last_sent_at < resend_before)),
            worker_id=ctx.worker_id,
            lease_seconds=ctx.settings.worker_lease_seconds,
            limit=ctx.settings.worker_batch_size,
            order_by=(TonRequest.created_at,),
        )
    sent = 0
    for request in due:
        try:
            await ctx.api.send_boc(request.boc)
            crashpoint(ctx.settings, "ton.after_send")
        except Exception as exc:
            # The node may refuse a duplicate or a message that is already processed: the
            # tracker decides from the chain, never from this answer.
            log.warning("ton send failed", request=request.id, error=str(exc))
        async with _transaction(ctx) as session:
            await session.execute(
                update(TonRequest)
                .where(TonRequest.id == request.id, TonRequest.status.in_(("signed", "sent")))
                .values(
                    status="sent",
                    send_count=TonRequest.send_count + 1,
                    last_sent_at=clock.now(),
                    updated_at=clock.now(),
                    locked_by=None,
                    locked_until=None,
                )
            )
            attempts = await _attempts_of(session, request.id)
            await move_attempts(
                session,
                [AttemptMove(a, "submitted", {}) for a in attempts if a.status == "created"],
            )
        sent += 1
    return sent


async def _attempts_of(session: AsyncSession, request_id: str) -> Sequence[Attempt]:
    stmt = (
        select(Attempt)
        .join(TonTransfer, TonTransfer.attempt_id == Attempt.id)
        .where(TonTransfer.request_id == request_id)
        .order_by(TonTransfer.position)
    )
    return (await session.execute(stmt)).scalars().all()


# ------------------------------------------------------------------------------- track
async def track_open(ctx: TonRailContext) -> int:
    """Advance every request that is not final; returns how many reached a final state.

    Requests are followed concurrently (TRACK_CONCURRENCY): each waits on chain reads, not
    on this process. One looked at less than TON_TRACK_PAUSE_MS ago is left alone."""
    now = time.monotonic()
    for request_id in [r for r, after in ctx.track_after.items() if after <= now]:
        del ctx.track_after[request_id]
    resting = list(ctx.track_after)
    condition: ColumnElement[bool] = TonRequest.status.in_(("signed", "sent", "processed"))
    if resting:
        condition = condition & TonRequest.id.not_in(resting)
    async with _transaction(ctx) as session:
        open_requests = await claim(
            session,
            TonRequest,
            condition,
            worker_id=ctx.worker_id,
            lease_seconds=ctx.settings.worker_lease_seconds,
            limit=ctx.settings.worker_batch_size,
            order_by=(TonRequest.created_at,),
        )
    # What another worker finished or took over is no longer ours to remember.
    for request_id in set(ctx.found) - set(resting) - {r.id for r in open_requests}:
        del ctx.found[request_id]
        ctx.excess_waits.pop(request_id, None)
    if not open_requests:
        return 0
    pause = ctx.settings.ton_track_pause_ms / 1000
    slots = asyncio.Semaphore(TRACK_CONCURRENCY)

    async def track(request_id: str) -> bool:
        async with slots:
            done = await track_request(ctx, request_id)
        if done:
            ctx.track_after.pop(request_id, None)
            ctx.found.pop(request_id, None)
            ctx.excess_waits.pop(request_id, None)
        else:
            ctx.track_after[request_id] = time.monotonic() + pause
        return done

    try:
        results = await asyncio.gather(
            *(track(r.id) for r in open_requests), return_exceptions=True
        )
    finally:
        async with _transaction(ctx) as session:
            await release(session, TonRequest, [r.id for r in open_requests], ctx.worker_id)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return sum(1 for r in results if r is True)


async def _processed_flag(ctx: TonRailContext, query_id: int) -> bool | None:
    """The wallet's `processed?(query_id, need_clean=false)`; None when it cannot be read."""
    try:
        exit_code, stack = await ctx.api.run_get_method(
            ctx.wallet.address.to_str(),
            "processed?",
            [["num", hex(query_id)], ["num", "0x0"]],
        )
    except Exception:
        exit_code, stack = -1, []
    if exit_code != 0 or not stack:
        # No code to ask: a wallet that was never deployed has processed nothing.
        try:
            state, _ = await ctx.api.account_state(ctx.wallet.address.to_str())
        except Exception:
            return None
        return False if state != "active" else None
    value = stack[0][1] if isinstance(stack[0], list) else stack[0]
    return int(str(value), 16) != 0 if isinstance(value, str) else bool(value)


def _lookup(ctx: TonRailContext, request_id: str, after_lt: int) -> Lookup:
    """The transaction that took a message of this request's trace (all created after
    `after_lt`): from what was found already, from our own accounts' feeds, else asked of
    toncenter by the message hash."""
    found = ctx.found.setdefault(request_id, {})
    feeds = ctx.feeds()

    async def lookup(msg: Msg) -> Tx | None:
        tx = found.get(msg.hash)
        if tx is not None:
            return tx
        tx = None
        covered = False
        if msg.destination is not None and feeds.covers(msg.destination):
            try:
                tx = await feeds.find(ctx.api, msg.destination, msg.hash, after_lt)
                covered = True
            except NotCovered:
                pass
        if not covered:
            tx = await ctx.api.tx_by_in_message(msg.hash)
        if tx is not None:
            found[msg.hash] = tx
        return tx

    return lookup


def _excess_finder(ctx: TonRailContext, request_id: str, after_lt: int) -> ExcessFinder:
    """The excess of a jetton transfer from the hot wallet's feed, by query_id and sender;
    after EXCESS_PATIENCE_S without one, the recipient's transaction is read instead."""
    feeds = ctx.feeds()
    waits = ctx.excess_waits.setdefault(request_id, {})

    async def find(internal: Msg, ours: Tx) -> tuple[Msg, Tx] | str | None:
        query_id = query_id_of(internal)
        if query_id is None:
            return ASK_RECIPIENT
        try:
            took = await feeds.find_excess(
                ctx.api, ctx.wallet_raw, query_id, internal.destination, after_lt
            )
        except NotCovered:
            return ASK_RECIPIENT
        if took is not None and took.in_msg is not None:
            return took.in_msg, took
        since = waits.setdefault(internal.hash, time.monotonic())
        return ASK_RECIPIENT if time.monotonic() - since > EXCESS_PATIENCE_S else None

    return find


async def track_request(ctx: TonRailContext, request_id: str) -> bool:
    """Read the chain for one request and record what it shows; True once it is final."""
    async with _transaction(ctx) as session:
        request = await session.get(TonRequest, request_id)
        if request is None or request.status not in ("signed", "sent", "processed"):
            return False
        msg_hash = request.msg_hash_norm
        valid_until = request.valid_until
        query_id = request.query_id
    found = ctx.found.setdefault(request_id, {})
    ext = found.get(msg_hash) or await ctx.api.tx_by_in_message(msg_hash)
    if ext is None:
        chain_now = int(clock.now().timestamp())
        if chain_now <= valid_until + ctx.settings.ton_expiry_margin_s:
            return False
        # Past validity: the wallet can no longer accept it. Prove it never did.
        if await _processed_flag(ctx, query_id) is False and (
            await ctx.api.tx_by_in_message(msg_hash) is None
        ):
            await _expire(ctx, request_id)
            return True
        await _mark_unknown(ctx, request_id)
        return False
    found[msg_hash] = ext
    lookup = _lookup(ctx, request_id, ext.lt)
    txs = await _transfer_txs(ctx, ext, lookup)
    if txs is None:
        return False
    out_msgs = [
        m for tx in txs for m in tx.out_msgs if not same_address(m.destination, ctx.wallet_raw)
    ]
    common_fee = (
        ext.total_fees
        + sum(
            m.fwd_fee
            for tx in [ext, *txs]
            for m in tx.out_msgs
            if same_address(m.destination, ctx.wallet_raw)
        )
        + sum(tx.total_fees for tx in txs)
    )
    if not txs:
        # Accepted but the self-message was not sent (no funds?): nothing went out.
        common_fee = ext.total_fees
    return await _settle(ctx, request_id, ext, txs, out_msgs, common_fee, lookup)


async def _transfer_txs(ctx: TonRailContext, ext: Tx, lookup: Lookup) -> list[Tx] | None:
    """The internal_transfer transactions of a request (nested packs included), or None
    while one is still missing."""
    txs: list[Tx] = []
    pending = [m for m in ext.out_msgs if same_address(m.destination, ctx.wallet_raw)]
    while pending:
        msg = pending.pop()
        tx = await lookup(msg)
        if tx is None:
            return None
        txs.append(tx)
        pending += [m for m in tx.out_msgs if same_address(m.destination, ctx.wallet_raw)]
    return txs


async def _settle(
    ctx: TonRailContext,
    request_id: str,
    ext: Tx,
    txs: list[Tx],
    out_msgs: list[Any],
    common_fee: int,
    lookup: Lookup,
) -> bool:
    async with _transaction(ctx) as session:
        request = await session.get(TonRequest, request_id)
        assert request is not None
        transfers = (
            (
                await session.execute(
                    select(TonTransfer)
                    .where(TonTransfer.request_id == request_id)
                    .order_by(TonTransfer.position)
                )
            )
            .scalars()
            .all()
        )
        if request.status != "processed":
            request.status = "processed"
            request.ext_tx_hash = ext.hash
            request.transfer_tx_hash = txs[0].hash if txs else None
            request.common_fee = common_fee
            request.updated_at = clock.now()
        # Match each transfer to its own out message: destination and body are unique.
        unmatched = list(out_msgs)
        for t in transfers:
            if t.status != "pending":
                continue
            found = next(
                (
                    m
                    for m in unmatched
                    if same_address(m.destination, t.message_to) and m.body_hash == t.body_hash
                ),
                None,
            )
            if found is None:
                t.status = "not_sent"
            else:
                unmatched.remove(found)
                t.status = "sent"
                t.out_msg_hash = found.hash
                t.trace = {
                    **t.trace,
                    "out_msg": found.hash,
                    "value": str(found.value),
                    "fwd_fee": str(found.fwd_fee),
                }
            t.updated_at = clock.now()
        await session.flush()
        pending_transfers = [
            (t.attempt_id, t.asset, t.out_msg_hash, dict(t.trace))
            for t in transfers
            if t.status == "sent"
        ]
    outcomes: dict[str, Outcome] = {}
    by_hash = {m.hash: m for m in out_msgs}
    lookups = ctx.follow_slots
    excesses = _excess_finder(ctx, request_id, ext.lt)

    async def follow_one(attempt_id: str, asset: str, msg: Msg) -> None:
        async with lookups:
            if asset == "TON":
                outcomes[attempt_id] = await follow_ton(msg, ctx.wallet_raw, lookup)
            else:
                outcomes[attempt_id] = await follow_jetton(msg, ctx.wallet_raw, lookup, excesses)

    jobs = []
    for attempt_id, asset, out_hash, trace in pending_transfers:
        if "outcome" in trace:  # final on an earlier round: the chain will not change it
            o = trace["outcome"]
            outcomes[attempt_id] = Outcome(
                o["status"], int(o["fee"]), o.get("reason"), dict(o.get("trace", {}))
            )
            continue
        msg = by_hash.get(out_hash or "")
        if msg is not None:
            jobs.append(follow_one(attempt_id, asset, msg))
    await asyncio.gather(*jobs)
    if any(o.status == "pending" for o in outcomes.values()):
        await _remember_final(ctx, outcomes)
        return False
    await _finalize(ctx, request_id, outcomes)
    return True


async def _remember_final(ctx: TonRailContext, outcomes: dict[str, Outcome]) -> None:
    """Keep the outcomes already final, so later rounds follow only what is still pending."""
    final = {a: o for a, o in outcomes.items() if o.status != "pending"}
    if not final:
        return
    async with _transaction(ctx) as session:
        rows = (
            await session.execute(
                select(TonTransfer.attempt_id, TonTransfer.trace).where(
                    TonTransfer.attempt_id.in_(list(final))
                )
            )
        ).all()
        changed = [
            {
                "attempt_id": attempt_id,
                "trace": {
                    **trace,
                    "outcome": {
                        "status": final[attempt_id].status,
                        "fee": final[attempt_id].fee,
                        "reason": final[attempt_id].reason,
                        "trace": final[attempt_id].trace,
                    },
                },
            }
            for attempt_id, trace in rows
            if "outcome" not in (trace or {})
        ]
        if changed:
            await session.execute(update(TonTransfer), changed)


async def _finalize(ctx: TonRailContext, request_id: str, outcomes: dict[str, Outcome]) -> None:
    """Post the books and move attempts and payments, once every transfer is final.

    One transaction for the whole request; the confirmed payouts (nearly all of them) move
    together: one compare-and-set statement for their attempts and one for their payments,
    bulk updates for their transfers and fee decisions, an entry each in the books."""
    async with _transaction(ctx) as session:
        request = await session.get(TonRequest, request_id)
        assert request is not None
        if request.status == "final":
            return
        transfers = (
            (
                await session.execute(
                    select(TonTransfer)
                    .where(TonTransfer.request_id == request_id)
                    .order_by(TonTransfer.position)
                )
            )
            .scalars()
            .all()
        )
        attempts = {
            a.id: a
            for a in (
                await session.execute(
                    select(Attempt).where(Attempt.id.in_([t.attempt_id for t in transfers]))
                )
            ).scalars()
        }
        payments = {
            p.id: p
            for p in (
                await session.execute(
                    select(Payment).where(Payment.id.in_([t.payment_id for t in transfers]))
                )
            ).scalars()
        }
        await move_attempts(
            session,
            [AttemptMove(a, "submitted", {}) for a in attempts.values() if a.status == "created"],
        )
        now = clock.now()
        shares = split_common_fee(request.common_fee or 0, len(transfers))
        confirmed_moves: list[AttemptMove] = []
        confirmed_payments: list[Payment] = []
        confirmed_rows: list[dict[str, Any]] = []
        confirmed_outcomes: list[Confirmed] = []
        entries: list[tuple[str, list[books.Line], str | None]] = []
        for t, share in zip(transfers, shares, strict=True):
            attempt = attempts[t.attempt_id]
            payment = payments[t.payment_id]
            outcome = outcomes.get(t.attempt_id)
            fee = share + (outcome.fee if outcome else 0)
            trace = {**t.trace, **outcome.trace} if outcome is not None else dict(t.trace)
            if outcome is not None and outcome.status == "confirmed":
                confirmed_rows.append(
                    {
                        "attempt_id": t.attempt_id,
                        "status": "confirmed",
                        "fee": fee,
                        "trace": trace,
                        "updated_at": now,
                    }
                )
                confirmed_moves.append(
                    AttemptMove(
                        attempt,
                        "confirmed",
                        {
                            "fee_amount": fee,
                            "fee_asset": "TON",
                            "details": {**attempt.details, **trace},
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
                confirmed_payments.append(payment)
                confirmed_outcomes.append(Confirmed(payment.id, fee, payment.created_at, now))
                signals.observe_confirmation("ton", (now - payment.created_at).total_seconds())
                continue
            t.fee = fee
            t.updated_at = now
            t.trace = trace
            code = (
                "not_sent"
                if t.status == "not_sent"
                else (
                    "bounced" if outcome is not None and outcome.status == "bounced" else "failed"
                )
            )
            reason = (
                outcome.reason if outcome is not None else None
            ) or "the wallet skipped the message"
            if t.status == "sent":
                t.status = "bounced"
            await move_attempt(
                session,
                attempt,
                "failed",
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
                )
            await record_outcome(session, payment.id, "failed", fee_paid=fee)
            await _retry_or_fail(ctx, session, payment, code, reason)
        await post_many(session, entries)
        await move_attempts(session, confirmed_moves)
        await move_payments(
            ctx.payments, session, confirmed_payments, "succeeded", actor="system:ton"
        )
        if confirmed_rows:
            await session.execute(update(TonTransfer), confirmed_rows)
        await record_confirmed(session, confirmed_outcomes)
        request.status = "final"
        request.updated_at = now
        crashpoint(ctx.settings, "ton.before_confirm")


async def _retry_or_fail(
    ctx: TonRailContext, session: AsyncSession, payment: Payment, code: str, reason: str
) -> None:
    """Back to the queue with backoff, or failed for good after the last attempt."""
    attempts = await _ton_attempts_failed(session, payment.id)
    if not await _ton_exhausted(ctx, session, payment.id):
        await ctx.payments.transition(session, payment, "queued", actor="system:ton")
        backoff = ctx.settings.ton_retry_backoff_s * 2 ** (attempts - 1)
        payment.locked_by = None
        payment.locked_until = clock.now() + timedelta(seconds=backoff)
        await session.execute(
            update(Payment)
            .where(Payment.id == payment.id)
            .values(locked_by=None, locked_until=payment.locked_until)
        )
        return
    if set(ctx.enabled) - {"ton"}:
        # TON failed after its retries: back to the queue unrouted, so the router falls back.
        await ctx.payments.transition(session, payment, "queued", actor="system:ton")
        await session.execute(
            update(Payment)
            .where(Payment.id == payment.id)
            .values(route=None, route_reason=None, locked_by=None, locked_until=None)
        )
        return
    await ctx.payments.transition(
        session,
        payment,
        "failed",
        actor="system:ton",
        failure_code=f"ton_{code}",
        failure_message=reason,
    )


async def _expire(ctx: TonRailContext, request_id: str) -> None:
    """Proven unprocessed after its validity: attempts expire, payouts go back to the queue."""
    async with _transaction(ctx) as session:
        result = await session.execute(
            update(TonRequest)
            .where(TonRequest.id == request_id, TonRequest.status.in_(("signed", "sent")))
            .values(status="expired", updated_at=clock.now())
        )
        assert isinstance(result, CursorResult)
        if result.rowcount != 1:
            return
        for attempt in await _attempts_of(session, request_id):
            if attempt.status == "created":
                await move_attempt(session, attempt, "submitted")
            if attempt.status in ("submitted", "unknown"):
                await move_attempt(
                    session,
                    attempt,
                    "expired",
                    error_code="expired",
                    error_message="not processed before its validity ended",
                )
            payment = await session.get(Payment, attempt.payment_id)
            assert payment is not None
            await session.execute(
                update(TonTransfer)
                .where(TonTransfer.attempt_id == attempt.id)
                .values(status="not_sent", updated_at=clock.now())
            )
            await _retry_or_fail(
                ctx, session, payment, "expired", "the request expired unprocessed"
            )
    log.warning("ton request expired unprocessed", request=request_id)


async def _mark_unknown(ctx: TonRailContext, request_id: str) -> None:
    """Past validity but not provably unprocessed: hold everything as `unknown`."""
    async with _transaction(ctx) as session:
        for attempt in await _attempts_of(session, request_id):
            if attempt.status == "created":
                await move_attempt(session, attempt, "submitted")
            if attempt.status == "submitted":
                await move_attempt(
                    session,
                    attempt,
                    "unknown",
                    error_code="unproven",
                    error_message="past validity and not provably unprocessed",
                )
    log.error("ton request outcome unknown", request=request_id)
