"""SQL of the fee optimizer. Reads the TON rail's requests and transfers (read-only) for the
latency and the fees our own payouts really had; writes only its own tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from tonrail.fees.models import FeeDecisionRecord, FeeSample
from tonrail.payments.models import Payment
from tonrail.payments.states import PaymentStatus
from tonrail.rails.ton.models import TonRequest, TonTransfer
from tonrail.rails.ton.states import RequestStatus, TransferStatus

TRANSFERS_READ_MAX = 5_000  # newest confirmed transfers looked at for fee history
ARRIVALS_READ_MAX = 1_000  # newest payouts looked at for the arrival rate


async def latest_sample(session: AsyncSession) -> FeeSample | None:
    stmt = select(FeeSample).order_by(FeeSample.sampled_at.desc(), FeeSample.id.desc()).limit(1)
    return (await session.execute(stmt)).scalars().first()


async def latest_config_sample(session: AsyncSession) -> FeeSample | None:
    """The newest sample that read the config params (it carries their hash)."""
    stmt = (
        select(FeeSample)
        .where(FeeSample.config_hash.is_not(None))
        .order_by(FeeSample.sampled_at.desc(), FeeSample.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalars().first()


async def latest_config(session: AsyncSession) -> dict[str, object] | None:
    """The config params as last stored (stored only when they changed)."""
    stmt = (
        select(FeeSample.config)
        .where(FeeSample.config.is_not(None))
        .order_by(FeeSample.sampled_at.desc(), FeeSample.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalars().first()


async def samples_since(session: AsyncSession, since: datetime) -> Sequence[FeeSample]:
    stmt = select(FeeSample).where(FeeSample.sampled_at >= since).order_by(FeeSample.sampled_at)
    return (await session.execute(stmt)).scalars().all()


async def request_latencies_ms(session: AsyncSession, since: datetime) -> list[int]:
    """Our own requests done since `since`: signed -> seen processed (or final, which is
    the tracker's next step), in ms. An upper bound of inclusion latency, by the polling."""
    stmt = select(TonRequest.created_at, TonRequest.updated_at).where(
        TonRequest.status.in_((RequestStatus.PROCESSED, RequestStatus.FINAL)),
        TonRequest.updated_at >= since,
    )
    rows = (await session.execute(stmt)).all()
    return [max(0, int((done - signed).total_seconds() * 1000)) for signed, done in rows]


@dataclass(frozen=True, slots=True)
class PaidTransfer:
    asset: str
    fee: int  # nanoton booked for this payout, its share of the request included
    request_id: str
    request_fee: int | None  # the request's common fee
    request_size: int  # payouts in the request


async def paid_transfers(session: AsyncSession, since: datetime) -> list[PaidTransfer]:
    """Confirmed TON-rail payouts since `since`, oldest first, with their request's shape."""
    # The size of each request found, counted on the request_id index (a correlated count):
    # grouping every transfer ever made would read the whole table on every call.
    peer = aliased(TonTransfer)
    size = (
        select(func.count())
        .where(peer.request_id == TonTransfer.request_id)
        .correlate(TonTransfer)
        .scalar_subquery()
    )
    stmt = (
        select(
            TonTransfer.asset,
            TonTransfer.fee,
            TonTransfer.request_id,
            TonRequest.common_fee,
            size,
        )
        .join(TonRequest, TonRequest.id == TonTransfer.request_id)
        .where(
            TonTransfer.status == TransferStatus.CONFIRMED,
            TonTransfer.fee.is_not(None),
            TonTransfer.updated_at >= since,
        )
        .order_by(TonTransfer.updated_at.desc())
        .limit(TRANSFERS_READ_MAX)
    )
    rows = (await session.execute(stmt)).all()
    return [PaidTransfer(a, int(f), r, c, int(n)) for a, f, r, c, n in reversed(rows)]


async def queued_by_priority(session: AsyncSession) -> dict[str, int]:
    """Payouts waiting for the TON rail, by priority."""
    stmt = (
        select(Payment.priority, func.count())
        .where(
            Payment.direction == "out",
            Payment.status == PaymentStatus.QUEUED,
            (Payment.route.is_(None)) | (Payment.route == "ton"),
        )
        .group_by(Payment.priority)
    )
    return {p: int(n) for p, n in (await session.execute(stmt)).all()}


@dataclass(frozen=True, slots=True)
class Arrivals:
    counts: dict[tuple[str, str], int]  # (asset, priority) -> payouts created in the window
    oldest: datetime | None  # when the oldest of them was created


async def arrivals_since(session: AsyncSession, since: datetime) -> Arrivals:
    """Payouts created since `since` (the newest ARRIVALS_READ_MAX of them), whatever became
    of them, by asset and priority: one bounded read of the `created_at`-led index
    (ix_payments_list), so a busy minute costs no more than a quiet one."""
    newest = (
        select(Payment.asset, Payment.priority, Payment.created_at)
        .where(Payment.created_at > since, Payment.direction == "out")
        .order_by(Payment.created_at.desc())
        .limit(ARRIVALS_READ_MAX)
        .subquery()
    )
    stmt = select(
        newest.c.asset, newest.c.priority, func.count(), func.min(newest.c.created_at)
    ).group_by(newest.c.asset, newest.c.priority)
    counts: dict[tuple[str, str], int] = {}
    oldest: datetime | None = None
    for asset, priority, n, first in (await session.execute(stmt)).all():
        counts[(asset, priority)] = int(n)
        if first is not None and (oldest is None or first < oldest):
            oldest = first
    return Arrivals(counts, oldest)


async def upsert_decision(session: AsyncSession, values: dict[str, object]) -> None:
    """Insert the payout's decision, or replace it and count the revision."""
    await upsert_decisions(session, [values])


async def upsert_decisions(session: AsyncSession, rows: Sequence[dict[str, object]]) -> None:
    """`upsert_decision` for many payouts in one statement (executemany); every row must
    have the same keys."""
    if not rows:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(FeeDecisionRecord)
    changed = {k: stmt.excluded[k] for k in rows[0] if k != "payment_id"}
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["payment_id"],
            set_={**changed, "revisions": FeeDecisionRecord.revisions + 1},
        ),
        [{**r, "revisions": 1} for r in rows],
    )


async def recent_decisions(
    session: AsyncSession, account_id: str | None, limit: int
) -> Sequence[FeeDecisionRecord]:
    stmt = select(FeeDecisionRecord).order_by(
        FeeDecisionRecord.decided_at.desc(), FeeDecisionRecord.payment_id
    )
    if account_id is not None:
        stmt = stmt.join(Payment, Payment.id == FeeDecisionRecord.payment_id).where(
            Payment.account_id == account_id
        )
    return (await session.execute(stmt.limit(limit))).scalars().all()


async def decisions_for(
    session: AsyncSession, payment_ids: Sequence[str]
) -> dict[str, FeeDecisionRecord]:
    if not payment_ids:
        return {}
    stmt = select(FeeDecisionRecord).where(FeeDecisionRecord.payment_id.in_(list(payment_ids)))
    return {d.payment_id: d for d in (await session.execute(stmt)).scalars().all()}


@dataclass(frozen=True, slots=True)
class Savings:
    payouts: int  # with an outcome and both fees known
    fee_paid: int
    alone_fee: int


async def savings(session: AsyncSession, account_id: str | None, since: datetime) -> Savings:
    """What confirmed payouts paid against what each would have cost alone."""
    stmt = select(
        func.count(), func.sum(FeeDecisionRecord.fee_paid), func.sum(FeeDecisionRecord.alone_fee)
    ).where(
        FeeDecisionRecord.outcome == "confirmed",
        FeeDecisionRecord.fee_paid.is_not(None),
        FeeDecisionRecord.alone_fee.is_not(None),
        FeeDecisionRecord.outcome_at >= since,
    )
    if account_id is not None:
        stmt = stmt.join(Payment, Payment.id == FeeDecisionRecord.payment_id).where(
            Payment.account_id == account_id
        )
    n, paid, alone = (await session.execute(stmt)).one()
    return Savings(int(n or 0), int(paid or 0), int(alone or 0))
