"""Lockouts: a counterparty, API key or IP with too many failures is refused until unlocked."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Literal

from sqlalchemy import ColumnElement, bindparam, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.chain.address import counterparty_key
from tonrail.db import Database, Refusal
from tonrail.errors import NotFound, TonrailError
from tonrail.ids import new_id
from tonrail.security.models import Lockout, SecurityFailure

SubjectKind = Literal["counterparty", "api_key", "ip"]
SUBJECT_KINDS: tuple[SubjectKind, ...] = ("counterparty", "api_key", "ip")


class SubjectLocked(TonrailError):
    """423: the subject is locked after repeated failures; an admin must unlock it."""

    code = "subject_locked"
    status = 423


def _subjects(
    api_key_id: str | None, counterparty: str | None, ip: str | None
) -> list[tuple[SubjectKind, str]]:
    wanted: list[tuple[SubjectKind, str]] = []
    if api_key_id:
        wanted.append(("api_key", api_key_id))
    if counterparty:
        wanted.append(("counterparty", counterparty_key(counterparty)))
    if ip:
        wanted.append(("ip", ip))
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
    return Refusal(("lockout", kinds), partial(_locked, kinds), dict(wanted))


def _locked(kinds: tuple[SubjectKind, ...], prefix: str) -> ColumnElement[bool]:
    subject = Lockout.__table__.c.subject
    return exists().where(
        Lockout.unlocked_at.is_(None),
        or_(
            *(
                (Lockout.subject_kind == kind)
                & (Lockout.subject == bindparam(prefix + kind, type_=subject.type))
                for kind in kinds
            )
        ),
    )


async def check_not_locked(
    session: AsyncSession,
    api_key_id: str | None,
    counterparty: str | None,
    ip: str | None = None,
) -> None:
    """Raise SubjectLocked (`api_key_locked`, `counterparty_locked`, `ip_locked`) if any of
    the given subjects has an active lockout. Called before a payout is created."""
    wanted = _subjects(api_key_id, counterparty, ip)
    if not wanted:
        return
    rows = (
        await session.execute(
            select(Lockout.subject_kind, Lockout.subject).where(
                Lockout.unlocked_at.is_(None),
                or_(
                    *(
                        (Lockout.subject_kind == kind) & (Lockout.subject == subject)
                        for kind, subject in wanted
                    )
                ),
            )
        )
    ).all()
    if not rows:
        return
    locked = {kind for kind, _ in rows}
    for kind, param, what in (
        ("api_key", None, "this API key"),
        ("counterparty", "destination", "this destination"),
        ("ip", None, "requests from this address"),
    ):
        if kind in locked:
            raise SubjectLocked(
                f"{what} is locked after repeated failures; an administrator must unlock it "
                "(tonrail lockouts unlock)",
                param=param,
                code=f"{kind}_locked",
            )


async def record_security_failure(db: Database, kind: SubjectKind, subject: str, code: str) -> None:
    """Charge a failure to a subject (e.g. a refused request by IP); counted by the rules."""
    if kind == "counterparty":
        subject = counterparty_key(subject)
    async with db.transaction() as session:
        session.add(
            SecurityFailure(subject_kind=kind, subject=subject[:128], code=code, at=clock.now())
        )


async def lock(
    session: AsyncSession, kind: str, subject: str, failures: int, reason: str
) -> Lockout:
    """Lock a subject (the partial unique index keeps one active lock per subject)."""
    # A new row, field by field: alike other inserts in shape only.
    lockout = Lockout(
        id=new_id("lock"),
        subject_kind=kind,
        subject=subject,
        reason=reason,
        failures=failures,
        locked_at=clock.now(),
    )
    session.add(lockout)
    await session.flush()
    return lockout


async def active(session: AsyncSession) -> Sequence[Lockout]:
    return (
        (
            await session.execute(
                select(Lockout).where(Lockout.unlocked_at.is_(None)).order_by(Lockout.locked_at)
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
    stmt = select(Lockout).where(Lockout.unlocked_at.is_(None))
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
    now = clock.now()
    for row in rows:
        await session.execute(
            update(Lockout)
            .where(Lockout.id == row.id, Lockout.unlocked_at.is_(None))
            .values(unlocked_at=now, unlocked_by=actor)
        )
        row.unlocked_at, row.unlocked_by = now, actor
    return rows
