"""The append-only, hash-chained audit log of operator and system actions.

Each entry's hash covers its own fields and the previous entry's hash, so changing or deleting
any entry breaks every later link: `tonrail audit verify` walks the chain and names the first
broken entry. Appends are serialized by locking the single `audit_head` row (PostgreSQL) or by
SQLite's write lock, so the chain never forks under concurrent writers.

Erasure (privacy/, docs/PRIVACY.md): an entry's hash covers a digest of its subject and
details (`content_digest`), not the text itself, so their personal data can be pseudonymised
later while the chain over the digests still verifies. A redacted entry names the later
`privacy.*` entry that redacted it (`erased_by`), and that entry lists it: a row marked
redacted without such an entry is reported as tampering. Entries written before the digest
existed (`content_digest` NULL) hash their content directly; once redacted, only their link
can be checked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
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
    # sha256 of [subject, details] as written; the hash covers it (NULL: an older entry)
    content_digest: Mapped[str | None] = mapped_column(String(64))
    # The seq of the privacy.* entry that pseudonymised this one's subject and details
    erased_by: Mapped[int | None] = mapped_column(BigInt)


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


ERASURE_ACTIONS = frozenset({"privacy.erase", "privacy.retention"})
REDACTED_KEY = "redacted_seqs"  # in an erasure entry's details: the entries it redacted


def content_digest(subject: str | None, details: dict[str, Any]) -> str:
    """What the chain keeps of an entry's subject and details (the text may be erased)."""
    return _sha256([subject, details])


def digest_hash(
    seq: int, at: datetime, actor: str, action: str, digest: str, prev_hash: str
) -> str:
    """The hash of an entry written with a content digest."""
    return _sha256(
        ["v2", seq, at.isoformat(timespec="microseconds"), actor, action, digest, prev_hash]
    )


def _sha256(value: list[Any]) -> str:
    body = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
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
    content = content_digest(subject, details)
    digest = digest_hash(seq, at, actor, action, content, head.hash)
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
        content_digest=content,
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
    # redacted entry -> the erasure entry it names, until that entry is seen to list it
    awaiting: dict[int, int] = {}
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
            problem = _entry_problem(e, awaiting)
            if problem is not None:
                return Verification(count, False, e.seq, problem)
            prev, expected_seq, count, last = e.hash, e.seq + 1, count + 1, e.seq
    if awaiting:
        seq = min(awaiting)
        return Verification(count, False, seq, "redacted without an erasure entry listing it")
    head = await session.get(AuditHead, 1)
    if head is not None and (head.seq != last or head.hash != prev):
        return Verification(count, False, last + 1, "entries after the last one were removed")
    return Verification(count, True)


def _entry_problem(e: AuditEntry, awaiting: dict[int, int]) -> str | None:
    """What is wrong with one entry of the chain (its link is checked by the caller)."""
    if e.erased_by is not None:
        if e.erased_by <= e.seq:
            return "redacted without an erasure entry listing it"
        awaiting[e.seq] = e.erased_by
    if e.content_digest is None:
        if e.erased_by is None:
            digest = entry_hash(e.seq, e.at, e.actor, e.action, e.subject, e.details, e.prev_hash)
            if digest != e.hash:
                return "content changed after it was written"
    else:
        if digest_hash(e.seq, e.at, e.actor, e.action, e.content_digest, e.prev_hash) != e.hash:
            return "content changed after it was written"
        if e.erased_by is None and content_digest(e.subject, e.details) != e.content_digest:
            return "content changed after it was written"
    if e.action in ERASURE_ACTIONS:
        for seq in e.details.get(REDACTED_KEY, []):
            if awaiting.get(seq) == e.seq:
                del awaiting[seq]
    return None


async def redact(
    session: AsyncSession,
    entries: list[AuditEntry],
    erasure: AuditEntry,
    pseudonymise: Callable[[Any], Any],
) -> None:
    """Pseudonymise the subject and details of `entries` (older than `erasure`, which lists
    their seqs under REDACTED_KEY); their hashes and digests stay, so the chain verifies."""
    listed = set(erasure.details.get(REDACTED_KEY, []))
    for entry in entries:
        if entry.seq not in listed or entry.seq >= erasure.seq:
            raise ValueError(f"audit entry {entry.seq} is not listed by erasure {erasure.seq}")
        entry.subject = pseudonymise(entry.subject)
        entry.details = pseudonymise(entry.details)
        entry.erased_by = erasure.seq
    await session.flush()


async def recent(
    session: AsyncSession, limit: int = 50, action_prefix: str | None = None
) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if action_prefix:
        query = query.where(AuditEntry.action.startswith(action_prefix))
    return list((await session.execute(query)).scalars())
