"""Failures per subject (counterparty, API key, IP) inside the monitoring window, and
locking a subject the moment its failures reach ALERT_SUSPICIOUS_FAILURES.

One count serves both readers: the alert evaluator's snapshot (monitoring/snapshot.py),
and the places where a payment's attempt fails (processing/outcomes.py), which call
`lock_if_suspicious` in the transaction that records the failure. So the payout after the
tenth failure is already refused (`counterparty_locked`, `api_key_locked`), not only after
the evaluator's next run; the evaluator stays as the net for anything charged elsewhere.

A payment counts once, at its latest failed attempt: the rail's own retries of a payout (a
bounce is retried up to TON_MAX_ATTEMPTS) are not more failures of the subject. Failures
before a subject's last unlock inside the window no longer count, nor do attempts our own
jetton wallet refused for too little TON attached (OWN_FAILURE_CODES: our doing).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.chain.address import counterparty_key
from tonrail.payments.models import Attempt, Payment
from tonrail.security import lockouts
from tonrail.security.models import Lockout, SecurityFailure
from tonrail.settings import Settings
from tonrail.states import OWN_FAILURE_CODES, AttemptStatus

log = structlog.get_logger(__name__)

ROW_CAP = 10_000  # failure rows read per kind and window (the snapshot's bound)

Subject = tuple[str, str]  # (kind, subject)


def payment_subjects(counterparty: str | None, requested_by: str | None) -> list[Subject]:
    """The subjects a failed payment is charged to: its counterparty (in one spelling) and
    the API key that asked for it."""
    found: list[Subject] = []
    if counterparty:
        found.append(("counterparty", counterparty_key(counterparty)))
    if requested_by and requested_by.startswith("key:"):
        found.append(("api_key", requested_by[4:]))
    return found


async def subject_failures(
    session: AsyncSession, since: datetime, only: Collection[Subject] | None = None
) -> dict[Subject, int]:
    """Failures per subject since `since` (of the `only` subjects, when given)."""
    unlocks: dict[Subject, datetime] = {}
    for kind, subject, at in await session.execute(
        select(Lockout.subject_kind, Lockout.subject, func.max(Lockout.unlocked_at))
        .where(Lockout.unlocked_at >= since)
        .group_by(Lockout.subject_kind, Lockout.subject)
    ):
        if at is not None:
            unlocks[(kind, subject)] = at
    events: list[tuple[str, str, datetime]] = []
    rows = await session.execute(
        select(Payment.counterparty, Payment.requested_by, func.max(Attempt.updated_at))
        .join(Payment, Payment.id == Attempt.payment_id)
        .where(
            Attempt.updated_at >= since,
            Attempt.status == AttemptStatus.FAILED,
            # Our own jetton wallet refusing too little TON is not the subject's failure.
            Attempt.error_code.is_(None) | Attempt.error_code.not_in(OWN_FAILURE_CODES),
        )
        .group_by(Payment.id, Payment.counterparty, Payment.requested_by)
        .limit(ROW_CAP)
    )
    for counterparty, requested_by, at in rows:
        events.extend(
            (kind, subject, at) for kind, subject in payment_subjects(counterparty, requested_by)
        )
    stmt = select(SecurityFailure.subject_kind, SecurityFailure.subject, SecurityFailure.at).where(
        SecurityFailure.at >= since
    )
    if only is not None:
        stmt = stmt.where(SecurityFailure.subject.in_({subject for _, subject in only}))
    events.extend(await session.execute(stmt.limit(ROW_CAP)))
    counts: dict[Subject, int] = {}
    for kind, subject, at in events:
        if only is not None and (kind, subject) not in only:
            continue
        cutoff = unlocks.get((kind, subject))
        if cutoff is not None and at <= cutoff:
            continue  # an admin unlocked the subject after this failure
        counts[(kind, subject)] = counts.get((kind, subject), 0) + 1
    return counts


async def lock_if_suspicious(
    session: AsyncSession, settings: Settings, payments: Sequence[Payment]
) -> list[Lockout]:
    """After attempts of `payments` failed in this transaction: lock each of their subjects
    whose failures reach the threshold. Returns the locks made."""
    threshold = settings.alert_suspicious_failures
    subjects = sorted(
        {s for p in payments for s in payment_subjects(p.counterparty, p.requested_by)}
    )
    if threshold <= 0 or not subjects:
        return []
    now = clock.now()
    for kind, subject in subjects:  # in one order: two workers never wait on each other
        await lockouts.take_turn(session, kind, subject)
        await lockouts.close_expired(session, now, kind, subject)
    window = settings.monitoring_window_seconds
    counts = await subject_failures(session, now - timedelta(seconds=window), subjects)
    made = []
    for kind, subject in subjects:
        failures = counts.get((kind, subject), 0)
        if failures < threshold:
            continue
        lock = await lockouts.lock(
            session,
            kind,
            subject,
            failures,
            f"{failures} failures in {window} s",
            settings.lockout_seconds,
        )
        if lock is not None:
            log.warning("subject locked", kind=kind, subject=subject, failures=failures)
            made.append(lock)
    return made
