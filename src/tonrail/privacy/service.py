"""GDPR requests about one subject: export every record about it, or erase it
(pseudonymise its personal fields; amounts, states and the books stay as they are)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql import ColumnElement

from tonrail import clock
from tonrail.errors import Conflict
from tonrail.ledger.models import JournalEntry, LedgerLine
from tonrail.payments.models import Payment
from tonrail.payments.states import TERMINAL_PAYMENT_STATES
from tonrail.privacy.inventory import PLACES, Place
from tonrail.privacy.subjects import Pseudonymiser, Subject, mentions, new_pseudonym
from tonrail.security import audit_log
from tonrail.security.audit_log import REDACTED_KEY, AuditEntry
from tonrail.security.models import Lockout


def _attribute(model: type[Any], name: str) -> InstrumentedAttribute[Any]:
    attribute: InstrumentedAttribute[Any] = getattr(model, name)
    return attribute


def _searched(place: Place, subject: Subject) -> ColumnElement[bool]:
    """Rows whose text may name the subject (LIKE is a superset: `_` matches any character;
    `mentions` decides)."""
    terms: list[ColumnElement[bool]] = []
    for name in place.columns + place.documents:
        column = _attribute(place.model, name)
        text = func.lower(column if name in place.columns else cast(column, Text))
        terms += [text.like(f"%{spelling.lower()}%") for spelling in subject.spellings]
    return or_(*terms)


async def _matching(session: AsyncSession, place: Place, subject: Subject) -> list[Any]:
    rows = (await session.execute(select(place.model).where(_searched(place, subject)))).scalars()
    names = place.columns + place.documents
    return [r for r in rows if any(mentions(subject, getattr(r, n)) for n in names)]


async def _audit_matching(session: AsyncSession, subject: Subject) -> list[AuditEntry]:
    terms: list[ColumnElement[bool]] = []
    for spelling in subject.spellings:
        like = f"%{spelling.lower()}%"
        terms.append(func.lower(AuditEntry.subject).like(like))
        terms.append(func.lower(cast(AuditEntry.details, Text)).like(like))
    rows = (await session.execute(select(AuditEntry).where(or_(*terms)))).scalars()
    return [e for e in rows if mentions(subject, e.subject) or mentions(subject, e.details)]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def row_dict(row: Any) -> dict[str, Any]:
    """A row as JSON-ready data, by column name."""
    return {c.name: _plain(getattr(row, key)) for key, c in _columns(type(row))}


def _columns(model: type[Any]) -> Sequence[tuple[str, Any]]:
    mapper: Any = model.__mapper__
    return [(attr.key, attr.columns[0]) for attr in mapper.column_attrs]


async def _found(session: AsyncSession, subject: Subject) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for place in PLACES:
        rows = await _matching(session, place, subject)
        if rows:
            found[place.table] = rows
    return found


def _payment_ids(found: dict[str, list[Any]]) -> set[str]:
    ids: set[str] = set()
    for place in PLACES:
        if place.payment_column is None:
            continue
        for row in found.get(place.table, []):
            value = getattr(row, place.payment_column)
            if value:
                ids.add(str(value))
    return ids


async def export_subject(session: AsyncSession, subject: Subject) -> dict[str, Any]:
    """Every record about `subject`: the rows naming it, the audit entries naming it, and the
    ledger entries of its payments (amounts only: the books name no people)."""
    found = await _found(session, subject)
    payments = sorted(_payment_ids(found))
    entries = list(
        (
            await session.execute(
                select(JournalEntry)
                .where(JournalEntry.payment_id.in_(payments))
                .order_by(JournalEntry.created_at, JournalEntry.id)
            )
        ).scalars()
    )
    lines = list(
        (
            await session.execute(
                select(LedgerLine)
                .where(LedgerLine.entry_id.in_([e.id for e in entries]))
                .order_by(LedgerLine.id)
            )
        ).scalars()
    )
    records = {table: [row_dict(r) for r in rows] for table, rows in found.items()}
    audit = await _audit_matching(session, subject)
    if audit:
        records["audit_log"] = [row_dict(e) for e in audit]
    if entries:
        records["journal_entries"] = [row_dict(e) for e in entries]
        records["ledger_lines"] = [row_dict(ln) for ln in lines]
    return {
        "subject": {"kind": subject.kind, "value": subject.value},
        "generated_at": clock.now().isoformat(),
        "payments": payments,
        "records": records,
    }


async def erase_subject(session: AsyncSession, subject: Subject, actor: str) -> dict[str, Any]:
    """Pseudonymise every personal field naming `subject`, in the caller's transaction, and
    audit it. Refused (409) while a payment of the subject is open or a lockout holds it:
    what is still moving money, or held for fraud, keeps its data until it ends."""
    found = await _found(session, subject)
    payments = _payment_ids(found)
    open_ids = sorted(
        (
            await session.execute(
                select(Payment.id).where(
                    Payment.id.in_(payments), Payment.status.not_in(TERMINAL_PAYMENT_STATES)
                )
            )
        ).scalars()
    )
    if open_ids:
        raise Conflict(
            f"the subject has open payments ({', '.join(open_ids[:10])}): erase it once they end",
            param="subject",
            code="subject_has_open_payment",
        )
    locked = [r for r in found.get(Lockout.__tablename__, []) if r.unlocked_at is None]
    if locked:
        raise Conflict(
            "the subject is locked out: unlock it (or let the lock expire) before erasing it",
            param="subject",
            code="subject_locked",
        )
    pseudonymise = Pseudonymiser(subject, new_pseudonym())
    counts: dict[str, int] = {}
    for place in PLACES:
        rows = found.get(place.table, [])
        for row in rows:
            for name in place.columns + place.documents:
                value = getattr(row, name)
                if value is not None:
                    setattr(row, name, pseudonymise(value))
        if rows:
            counts[place.table] = len(rows)
    redacted = await _audit_matching(session, subject)
    details = {
        "kind": subject.kind,
        "pseudonym": pseudonymise.pseudonym,
        "rows": counts,
        "payments": len(payments),
        REDACTED_KEY: sorted(e.seq for e in redacted),
    }
    erasure = await audit_log.record(
        session, actor, "privacy.erase", pseudonymise.pseudonym, details
    )
    await audit_log.redact(session, redacted, erasure, pseudonymise)
    if redacted:
        counts["audit_log"] = len(redacted)
    await session.flush()
    return {
        "kind": subject.kind,
        "pseudonym": pseudonymise.pseudonym,
        "rows": counts,
        "payments": len(payments),
        "audit_seq": erasure.seq,
    }
