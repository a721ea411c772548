"""The append-only, hash-chained audit log of operator and system actions.

Each entry's hash covers its own fields and the previous entry's hash, so changing or deleting
any entry breaks every later link: `tonrail audit verify` walks the chain and names the first
broken entry. Appends are serialized by locking the single `audit_head` row (PostgreSQL) or by
SQLite's write lock, so the chain never forks under concurrent writers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, Text, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tonrail import clock
from tonrail.db import Base, BigInt, JsonDoc, UTCDateTime

GENESIS = "0" * 64


class AuditEntry(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(80))  # "admin:alice", "cli", "system"
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str | None] = mapped_column(String(128), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """One row: the last entry's number and hash (the lock that orders appends)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInt)
    hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)


def entry_hash(
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str | None,
    details: dict[str, Any],
    prev_hash: str,
) -> str:
    body = json.dumps(
        [seq, at.isoformat(timespec="microseconds"), actor, action, subject, details, prev_hash],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


async def record(
    session: AsyncSession,
    actor: str,
    action: str,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry in the caller's transaction: it commits with the action it records."""
    details = json.loads(json.dumps(details or {}, default=str))
    head = await session.get(AuditHead, 1, with_for_update=True)
    if head is None:
        # The first append (or after a wipe): create the head row race-free, then lock it.
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        await session.execute(
            insert(AuditHead).values(id=1, seq=0, hash=GENESIS).on_conflict_do_nothing()
        )
        head = await session.get(AuditHead, 1, with_for_update=True, populate_existing=True)
        assert head is not None
    at = clock.now()
    seq = head.seq + 1
    digest = entry_hash(seq, at, actor, action, subject, details, head.hash)
    # A new row, field by field: alike other inserts in shape only.
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        details=details,
        prev_hash=head.hash,
        hash=digest,
    )
    session.add(entry)
    head.seq, head.hash = seq, digest
    await session.flush()
    return entry


@dataclass(frozen=True)
class Verification:
    entries: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str | None = None


async def verify(session: AsyncSession, batch: int = 5000) -> Verification:
    """Walk the chain from the first entry; report the first entry that does not link."""
    prev, expected_seq, count, last = GENESIS, 1, 0, 0
    while True:
        rows = (
            (
                await session.execute(
                    select(AuditEntry)
                    .where(AuditEntry.seq > last)
                    .order_by(AuditEntry.seq)
                    .limit(batch)
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            break
        for e in rows:
            if e.seq != expected_seq:
                return Verification(count, False, expected_seq, "entry missing")
            if e.prev_hash != prev:
                return Verification(count, False, e.seq, "does not link to the previous entry")
            digest = entry_hash(e.seq, e.at, e.actor, e.action, e.subject, e.details, e.prev_hash)
            if digest != e.hash:
                return Verification(count, False, e.seq, "content changed after it was written")
            prev, expected_seq, count, last = e.hash, e.seq + 1, count + 1, e.seq
    head = await session.get(AuditHead, 1)
    if head is not None and (head.seq != last or head.hash != prev):
        return Verification(count, False, last + 1, "entries after the last one were removed")
    return Verification(count, True)


async def recent(
    session: AsyncSession, limit: int = 50, action_prefix: str | None = None
) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if action_prefix:
        query = query.where(AuditEntry.action.startswith(action_prefix))
    return list((await session.execute(query)).scalars())
