"""The retention job: once a day, delete or pseudonymise what is past its period
(RETENTION_* settings, docs/PRIVACY.md). Batched (RETENTION_BATCH_SIZE rows a transaction),
resumable (each batch commits with its step's cursor), leased (one worker at a time holds the
`retention_runs` row; a dead worker's lease runs out and another goes on from the cursor).

Never touched: the ledger (journal entries and lines name merchants and amounts only),
amounts, assets, states, ids and times of financial records. Financial rows past
RETENTION_FINANCIAL_DAYS keep all of that and lose their people (scrub.py); old audit entries
are redacted through the chain's content digest, so `tonrail audit verify` still passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from tonrail import clock
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.kit.faults import crashpoint
from tonrail.monitoring.models import Alert, AlertDelivery, AlertEvent, SecurityReport
from tonrail.notify.models import WebhookAttempt
from tonrail.payments.models import Attempt, Payment, Refund
from tonrail.payments.states import FINAL_ATTEMPT_STATES, TERMINAL_PAYMENT_STATES
from tonrail.privacy.inventory import PLACES, Place
from tonrail.privacy.models import RetentionRun
from tonrail.privacy.scrub import scrub
from tonrail.privacy.subjects import new_pseudonym
from tonrail.processing.models import ProviderEvent
from tonrail.processing.states import EventStatus
from tonrail.rails.ton.models import TonDeposit, TonTransfer
from tonrail.security import audit_log, idempotency
from tonrail.security.audit_log import ERASURE_ACTIONS, REDACTED_KEY, AuditEntry
from tonrail.security.models import AdminSession, IdempotencyRecord, Lockout, SecurityFailure
from tonrail.settings import Settings
from tonrail.states import RefundStatus

RUN = "retention"
Period = Literal["financial", "security", "idempotency"]
Cutoffs = dict[Period, datetime]


def cutoffs(settings: Settings, now: datetime) -> Cutoffs:
    """Rows older than these are past their period, by retention class."""
    return {
        "financial": now - timedelta(days=settings.retention_financial_days),
        "security": now - timedelta(days=settings.retention_security_days),
        "idempotency": idempotency.expiry_cutoff(settings.idempotency_ttl_hours),
    }


def due_day(settings: Settings, now: datetime) -> str:
    """The UTC day whose pass is due: a day's pass starts at RETENTION_HOUR_UTC."""
    return (now - timedelta(hours=settings.retention_hour_utc)).date().isoformat()


@dataclass(frozen=True)
class Deletion:
    """Rows of a table deleted once past their period (security class)."""

    name: str
    period: Period
    model: type[Any]
    past: Callable[[datetime], ColumnElement[bool]]

    async def due(self, session: AsyncSession, cutoff: datetime, cursor: Any) -> int:
        return int(
            await session.scalar(
                select(func.count()).select_from(self.model).where(self.past(cutoff))
            )
            or 0
        )

    async def run(
        self, session: AsyncSession, cutoff: datetime, cursor: Any, batch: int
    ) -> tuple[int, Any]:
        pk = self.model.__mapper__.primary_key[0]
        doomed = (
            select(pk).where(self.past(cutoff)).limit(batch).with_for_update(skip_locked=True)
        ).scalar_subquery()
        result: Any = await session.execute(
            delete(self.model).where(pk.in_(doomed)).execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0), cursor


@dataclass(frozen=True)
class Pseudonymisation:
    """Rows of a table whose personal columns are scrubbed once past their period, oldest
    first from the step's cursor (time, primary key): the rows stay, their people go."""

    name: str
    period: Period
    place: Place
    time_column: str
    ended: Callable[[], ColumnElement[bool]] | None = None

    def _where(self, cutoff: datetime, cursor: Any) -> ColumnElement[bool]:
        model = self.place.model
        time = getattr(model, self.time_column)
        pk = model.__mapper__.primary_key[0]
        terms = [time < cutoff]
        if self.ended is not None:
            terms.append(self.ended())
        if cursor:
            at, key = datetime.fromisoformat(cursor[0]), cursor[1]
            terms.append(or_(time > at, and_(time == at, pk > key)))
        return and_(*terms)

    async def due(self, session: AsyncSession, cutoff: datetime, cursor: Any) -> int:
        query = select(func.count()).select_from(self.place.model)
        return int(await session.scalar(query.where(self._where(cutoff, cursor))) or 0)

    async def run(
        self, session: AsyncSession, cutoff: datetime, cursor: Any, batch: int
    ) -> tuple[int, Any]:
        model = self.place.model
        time = getattr(model, self.time_column)
        pk = model.__mapper__.primary_key[0]
        rows = list(
            (
                await session.execute(
                    select(model)
                    .where(self._where(cutoff, cursor))
                    .order_by(time, pk)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            ).scalars()
        )
        for row in rows:
            pseudonym = new_pseudonym()
            for name in self.place.columns + self.place.documents:
                value = getattr(row, name)
                if value is not None:
                    setattr(row, name, scrub(value, pseudonym))
        if rows:
            last = rows[-1]
            cursor = [getattr(last, self.time_column).isoformat(), getattr(last, pk.key)]
        return len(rows), cursor


@dataclass(frozen=True)
class AuditRedaction:
    """Audit entries past the financial period: subject and details scrubbed through the
    chain's digest, listed by a `privacy.retention` entry (security/audit_log.py)."""

    name: str = "audit_log"
    period: Period = "financial"

    def _where(self, cutoff: datetime, cursor: Any) -> ColumnElement[bool]:
        return and_(
            AuditEntry.at < cutoff,
            AuditEntry.erased_by.is_(None),
            AuditEntry.action.not_in(ERASURE_ACTIONS),
            AuditEntry.seq > int(cursor or 0),
        )

    async def due(self, session: AsyncSession, cutoff: datetime, cursor: Any) -> int:
        query = select(func.count()).select_from(AuditEntry).where(self._where(cutoff, cursor))
        return int(await session.scalar(query) or 0)

    async def run(
        self, session: AsyncSession, cutoff: datetime, cursor: Any, batch: int
    ) -> tuple[int, Any]:
        entries = list(
            (
                await session.execute(
                    select(AuditEntry)
                    .where(self._where(cutoff, cursor))
                    .order_by(AuditEntry.seq)
                    .limit(batch)
                )
            ).scalars()
        )
        if not entries:
            return 0, cursor
        seqs = [e.seq for e in entries]
        erasure = await audit_log.record(
            session, "system:retention", "privacy.retention", None, {REDACTED_KEY: seqs}
        )
        pseudonym = new_pseudonym()
        await audit_log.redact(session, entries, erasure, lambda v: scrub(v, pseudonym))
        return len(entries), seqs[-1]


def _place(model: type[Any]) -> Place:
    return next(p for p in PLACES if p.model is model)


Step = Deletion | Pseudonymisation | AuditRedaction

STEPS: tuple[Step, ...] = (
    Deletion(
        "idempotency_records",
        "idempotency",
        IdempotencyRecord,
        lambda cutoff: IdempotencyRecord.created_at < cutoff,
    ),
    Deletion(
        "admin_sessions",
        "security",
        AdminSession,
        lambda cutoff: func.coalesce(AdminSession.ended_at, AdminSession.expires_at) < cutoff,
    ),
    Deletion("security_failures", "security", SecurityFailure, lambda c: SecurityFailure.at < c),
    Deletion(
        "lockouts",
        "security",
        Lockout,
        lambda cutoff: or_(
            Lockout.unlocked_at < cutoff,
            and_(Lockout.unlocked_at.is_(None), Lockout.expires_at < cutoff),
        ),
    ),
    Deletion(
        "webhook_attempts", "security", WebhookAttempt, lambda c: WebhookAttempt.attempted_at < c
    ),
    Deletion(
        "security_reports", "security", SecurityReport, lambda c: SecurityReport.created_at < c
    ),
    Pseudonymisation(
        "alerts", "security", _place(Alert), "resolved_at", lambda: Alert.resolved_at.is_not(None)
    ),
    Pseudonymisation("alert_events", "security", _place(AlertEvent), "at"),
    Pseudonymisation("alert_deliveries", "security", _place(AlertDelivery), "created_at"),
    Pseudonymisation(
        "payments",
        "financial",
        _place(Payment),
        "completed_at",
        lambda: Payment.status.in_(TERMINAL_PAYMENT_STATES),
    ),
    Pseudonymisation(
        "attempts",
        "financial",
        _place(Attempt),
        "updated_at",
        lambda: Attempt.status.in_(FINAL_ATTEMPT_STATES),
    ),
    Pseudonymisation(
        "refunds",
        "financial",
        _place(Refund),
        "updated_at",
        lambda: Refund.status != RefundStatus.PENDING,
    ),
    Pseudonymisation("ton_transfers", "financial", _place(TonTransfer), "updated_at"),
    Pseudonymisation("ton_deposits", "financial", _place(TonDeposit), "created_at"),
    Pseudonymisation(
        "provider_events",
        "financial",
        _place(ProviderEvent),
        "received_at",
        lambda: ProviderEvent.status != EventStatus.RECEIVED,
    ),
    # Published or not: an event seven years old is history either way.
    Pseudonymisation("outbox_events", "financial", _place(OutboxEvent), "created_at"),
    AuditRedaction(),
)


@dataclass(frozen=True)
class DueRow:
    step: str
    period: Period
    action: str  # delete | pseudonymise
    older_than: datetime
    rows: int


async def plan(session: AsyncSession, settings: Settings) -> list[DueRow]:
    """What a pass would do now, step by step (the dry run): nothing is written."""
    now = clock.now()
    limits = cutoffs(settings, now)
    run = await session.get(RetentionRun, RUN)
    cursors = dict(run.cursors) if run is not None else {}
    out = []
    for step in STEPS:
        cutoff = limits[step.period]
        rows = await step.due(session, cutoff, cursors.get(step.name))
        action = "delete" if isinstance(step, Deletion) else "pseudonymise"
        out.append(DueRow(step.name, step.period, action, cutoff, rows))
    return out


async def _hold(session: AsyncSession, worker_id: str, lease_seconds: float) -> RetentionRun | None:
    """Take or extend the lease of the run row in this transaction; None if another holds it."""
    now = clock.now()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(RetentionRun)
        .values(name=RUN, cursors={}, report={})
        .on_conflict_do_nothing(index_elements=["name"])
    )
    result: Any = await session.execute(
        update(RetentionRun)
        .where(
            RetentionRun.name == RUN,
            or_(
                RetentionRun.locked_until.is_(None),
                RetentionRun.locked_until < now,
                RetentionRun.locked_by == worker_id,
            ),
        )
        .values(locked_by=worker_id, locked_until=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:
        return None
    return await session.get(RetentionRun, RUN, populate_existing=True, with_for_update=True)


async def run_batch(db: Database, settings: Settings, worker_id: str) -> int:
    """One batch of today's pass (in one transaction with its cursor); how many rows it
    handled, 0 when the pass is done, not due, or held by another worker."""
    now = clock.now()
    day = due_day(settings, now)
    async with db.transaction() as session:
        run = await session.get(RetentionRun, RUN)
        if run is not None and run.finished_day == day:
            return 0
        run = await _hold(session, worker_id, settings.worker_lease_seconds)
        if run is None:
            return 0
        handled = await _next_batch(session, settings, run, day, now)
        crashpoint(settings, "privacy.before_batch_commit")
    crashpoint(settings, "privacy.after_batch_commit")
    return handled


async def _next_batch(
    session: AsyncSession, settings: Settings, run: RetentionRun, day: str, now: datetime
) -> int:
    """The first unfinished step's next batch; the pass ends (and is audited) when none is
    left."""
    if run.day != day:
        run.day, run.report, run.started_at = day, {}, now
    report = {k: dict(v) for k, v in (run.report or {}).items()}
    cursors = dict(run.cursors or {})
    limits = cutoffs(settings, now)
    for step in STEPS:
        done = report.get(step.name, {"count": 0, "done": False})
        if done["done"]:
            continue
        batch = settings.retention_batch_size
        handled, cursors[step.name] = await step.run(
            session, limits[step.period], cursors.get(step.name), batch
        )
        report[step.name] = {"count": done["count"] + handled, "done": handled < batch}
        # New objects each time: JSON columns see a change only by assignment, and an
        # autoflush may have written the previous dicts already.
        run.report = {name: dict(v) for name, v in report.items()}
        run.cursors = dict(cursors)
        if handled:
            return handled
    run.finished_day, run.finished_at = day, now
    run.locked_by, run.locked_until = None, None
    totals = {name: v["count"] for name, v in report.items() if v["count"]}
    await audit_log.record(session, "system:retention", "privacy.retention_pass", day, totals)
    return 0
