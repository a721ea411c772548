"""Lockouts: a counterparty, API key or IP with too many failures is refused until the lock
expires (LOCKOUT_SECONDS) or an admin unlocks it.

What each lock refuses (docs/monitoring.md, "Lockouts"):
- `ip`: every API v1 request from that client address, before its key is looked at;
- `api_key`: every API v1 request made with that key;
- `counterparty`: payouts to that address (single and batch), in any spelling;
- `dashboard_ip`: dashboard sign-in from that client address. Sign-in failures are their own
  bucket, so an office's mistyped passwords never lock the merchants' API calls behind the
  same address, nor the reverse.

Failures charged in the request path (`charge_failure`: a refused API key, a refused
sign-in) lock the subject in the same transaction as the failure that reaches
ALERT_SUSPICIOUS_FAILURES, so the next request is already refused. Failed payments lock
their counterparty and API key the same way, where their attempt fails
(monitoring/suspicious.py: `lock_if_suspicious`); the alert evaluator (monitoring/jobs.py)
locks through `lock` too, as the net for failures charged without a lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Literal

from sqlalchemy import ColumnElement, and_, bindparam, exists, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.chain.address import counterparty_key
from tonrail.db import Database, Refusal
from tonrail.errors import NotFound, TonrailError
from tonrail.ids import new_id
from tonrail.security import access_version
from tonrail.security.models import Lockout, SecurityFailure

SubjectKind = Literal["counterparty", "api_key", "ip", "dashboard_ip"]
SUBJECT_KINDS: tuple[SubjectKind, ...] = ("counterparty", "api_key", "ip", "dashboard_ip")
EXPIRED_BY = "system:expired"
# pg_advisory_xact_lock(namespace, hashtext(subject)): failures of one subject take turns.
_SUBJECT_LOCK_NAMESPACE = 0x7472_6C6B  # "trlk"


class SubjectLocked(TonrailError):
    """423: the subject is locked after repeated failures, until it expires or is unlocked."""

    code = "subject_locked"
    status = 423


def in_force(now: datetime) -> ColumnElement[bool]:
    """Lockouts that refuse at `now`: not unlocked and not expired."""
    return and_(
        Lockout.unlocked_at.is_(None), or_(Lockout.expires_at.is_(None), Lockout.expires_at > now)
    )


def _subjects(
    api_key_id: str | None,
    counterparty: str | None,
    ip: str | None,
    dashboard_ip: str | None = None,
) -> list[tuple[SubjectKind, str]]:
    wanted: list[tuple[SubjectKind, str]] = []
    if api_key_id:
        wanted.append(("api_key", api_key_id))
    if counterparty:
        wanted.append(("counterparty", counterparty_key(counterparty)))
    if ip:
        wanted.append(("ip", ip))
    if dashboard_ip:
        wanted.append(("dashboard_ip", dashboard_ip))
    return wanted


def lockout_refusal(
    api_key_id: str | None, counterparty: str | None, ip: str | None = None
) -> Refusal | None:
    """`check_not_locked` as SQL, for a write that refuses itself (`db.write_at_once`) while
    one of the subjects is locked; None when there is no subject. The caller runs
    `check_not_locked` after a refusal to learn which one."""
    wanted = _subjects(api_key_id, counterparty, ip)
    if not wanted:
        return None
    kinds = tuple(kind for kind, _ in wanted)
    values: dict[str, object] = {**dict(wanted), "now": clock.now()}
    return Refusal(("lockout", kinds), partial(_locked, kinds), values)


def _locked(kinds: tuple[SubjectKind, ...], prefix: str) -> ColumnElement[bool]:
    subject = Lockout.__table__.c.subject
    now = bindparam(prefix + "now", type_=Lockout.__table__.c.expires_at.type)
    return exists().where(
        Lockout.unlocked_at.is_(None),
        or_(Lockout.expires_at.is_(None), Lockout.expires_at > now),
        or_(
            *(
                (Lockout.subject_kind == kind)
                & (Lockout.subject == bindparam(prefix + kind, type_=subject.type))
                for kind in kinds
            )
        ),
    )


def refusal_of(kind: str) -> SubjectLocked:
    """The 423 error for a locked subject of `kind` (`ip_locked`, `api_key_locked`, ...)."""
    what, param = {
        "api_key": ("this API key", None),
        "counterparty": ("this destination", "destination"),
        "ip": ("requests from this address", None),
        "dashboard_ip": ("sign-in from this address", None),
    }[kind]
    return SubjectLocked(
        f"{what} is locked after repeated failures, until the lock expires or an "
        "administrator unlocks it (tonrail lockouts unlock)",
        param=param,
        code=f"{kind}_locked",
    )


async def check_not_locked(
    session: AsyncSession,
    api_key_id: str | None,
    counterparty: str | None,
    ip: str | None = None,
    *,
    dashboard_ip: str | None = None,
) -> None:
    """Raise SubjectLocked (`api_key_locked`, `counterparty_locked`, `ip_locked`,
    `dashboard_ip_locked`) if any of the given subjects has a lockout in force."""
    wanted = _subjects(api_key_id, counterparty, ip, dashboard_ip)
    if not wanted:
        return
    rows = (
        await session.execute(
            select(Lockout.subject_kind, Lockout.subject).where(
                in_force(clock.now()),
                or_(
                    *(
                        (Lockout.subject_kind == kind) & (Lockout.subject == subject)
                        for kind, subject in wanted
                    )
                ),
            )
        )
    ).all()
    locked = {kind for kind, _ in rows}
    for kind in ("api_key", "counterparty", "ip", "dashboard_ip"):
        if kind in locked:
            raise refusal_of(kind)


async def take_turn(session: AsyncSession, kind: str, subject: str) -> None:
    """PostgreSQL: failures of one subject take turns until their transactions end, so two
    at once each count the other (an exact threshold). SQLite serializes writers already."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:subject))"),
            {"namespace": _SUBJECT_LOCK_NAMESPACE, "subject": f"{kind}:{subject}"},
        )


async def charge_failure(
    db: Database,
    kind: SubjectKind,
    subject: str,
    code: str,
    *,
    threshold: int,
    window_seconds: int,
    lock_seconds: int,
) -> bool:
    """Charge a failure to a subject (e.g. a refused API key to the client's address) and,
    when it makes `threshold` failures inside the window since the subject's last unlock,
    lock the subject in the same transaction. Returns whether the subject is locked now."""
    if kind == "counterparty":
        subject = counterparty_key(subject)
    subject = subject[:128]
    async with db.transaction() as session:
        await take_turn(session, kind, subject)
        now = clock.now()
        session.add(SecurityFailure(subject_kind=kind, subject=subject, code=code, at=now))
        await session.flush()
        if threshold <= 0:
            return False
        await close_expired(session, now, kind, subject)
        mine = (Lockout.subject_kind == kind) & (Lockout.subject == subject)
        if await session.scalar(select(exists().where(mine, Lockout.unlocked_at.is_(None)))):
            return True
        last_unlock = await session.scalar(select(func.max(Lockout.unlocked_at)).where(mine))
        counted = select(func.count()).where(
            SecurityFailure.subject_kind == kind,
            SecurityFailure.subject == subject,
            SecurityFailure.at >= now - timedelta(seconds=window_seconds),
        )
        if last_unlock is not None:
            counted = counted.where(SecurityFailure.at > last_unlock)  # unlocked: start again
        failures = int(await session.scalar(counted) or 0)
        if failures < threshold:
            return False
        reason = f"{failures} failures in {window_seconds} s"
        await lock(session, kind, subject, failures, reason, lock_seconds)
        return True


async def close_expired(
    session: AsyncSession, now: datetime, kind: str | None = None, subject: str | None = None
) -> None:
    """Close expired lockouts (of one subject, or all): unlocked at their expiry by
    `system:expired`, so the subject can be locked again and older failures stop counting."""
    stmt = (
        update(Lockout)
        .where(
            Lockout.unlocked_at.is_(None),
            Lockout.expires_at.is_not(None),
            Lockout.expires_at <= now,
        )
        .values(unlocked_at=Lockout.expires_at, unlocked_by=EXPIRED_BY)
        .execution_options(synchronize_session=False)
    )
    if kind is not None and subject is not None:
        stmt = stmt.where(Lockout.subject_kind == kind, Lockout.subject == subject)
    await session.execute(stmt)


async def lock(
    session: AsyncSession,
    kind: str,
    subject: str,
    failures: int,
    reason: str,
    lock_seconds: int = 0,
) -> Lockout | None:
    """Lock a subject for `lock_seconds` (0 = until unlocked); None if it is locked already
    (the partial unique index keeps one open lock per subject). Every API process sees the
    lock within ACCESS_RECHECK_MS (the access version moves with it)."""
    now = clock.now()
    await close_expired(session, now, kind, subject)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    lock_id = new_id("lock")
    # A new row, field by field: alike other inserts in shape only.
    inserted = (
        await session.execute(
            insert(Lockout)
            .values(
                id=lock_id,
                subject_kind=kind,
                subject=subject,
                reason=reason,
                failures=failures,
                locked_at=now,
                expires_at=now + timedelta(seconds=lock_seconds) if lock_seconds > 0 else None,
            )
            .on_conflict_do_nothing()
            .returning(Lockout.id)
        )
    ).first()
    if inserted is None:
        return None
    await access_version.bump(session)
    return await session.get(Lockout, lock_id)


async def active(session: AsyncSession) -> Sequence[Lockout]:
    """Lockouts in force, oldest first."""
    return (
        (
            await session.execute(
                select(Lockout).where(in_force(clock.now())).order_by(Lockout.locked_at)
            )
        )
        .scalars()
        .all()
    )


async def unlock(session: AsyncSession, target: str, actor: str) -> list[Lockout]:
    """Unlock by lockout id, or by subject (`kind:subject` or a bare subject)."""
    kind, _, subject = (
        target.partition(":")
        if target.split(":", 1)[0] in SUBJECT_KINDS
        else (
            "",
            "",
            target,
        )
    )
    now = clock.now()
    stmt = select(Lockout).where(in_force(now))
    if target.startswith("lock_"):
        stmt = stmt.where(Lockout.id == target)
    elif kind:
        key = counterparty_key(subject) if kind == "counterparty" else subject
        stmt = stmt.where(Lockout.subject_kind == kind, Lockout.subject == key)
    else:
        stmt = stmt.where(
            or_(Lockout.subject == subject, Lockout.subject == counterparty_key(subject))
        )
    rows = list((await session.execute(stmt)).scalars())
    if not rows:
        raise NotFound(f"no active lockout matches {target!r}", code="lockout_not_found")
    for row in rows:
        await session.execute(
            update(Lockout)
            .where(Lockout.id == row.id, Lockout.unlocked_at.is_(None))
            .values(unlocked_at=now, unlocked_by=actor)
        )
        row.unlocked_at, row.unlocked_by = now, actor
    await access_version.bump(session)
    return rows
