"""The audit chain over content digests: redacted entries still verify, entries written before
the digest (hashed over their content) still verify and can be redacted, and redaction cannot
be faked to hide a change."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update

from tests.privacy.conftest import chain_ok
from tonrail.db import Database
from tonrail.privacy.subjects import Pseudonymiser, parse_subject
from tonrail.security import audit_log
from tonrail.security.audit_log import GENESIS, REDACTED_KEY, AuditEntry, AuditHead, entry_hash

EMAIL = "grace@example.org"


async def _legacy_first_entry(db: Database) -> None:
    """An entry as written before migration 0016p: hashed over its subject and details."""
    at = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    details = {"email": EMAIL}
    digest = entry_hash(1, at, "admin:alice", "merchant.contact", EMAIL, details, GENESIS)
    async with db.transaction() as session:
        session.add(
            AuditEntry(
                seq=1,
                at=at,
                actor="admin:alice",
                action="merchant.contact",
                subject=EMAIL,
                details=details,
                prev_hash=GENESIS,
                hash=digest,
            )
        )
        session.add(AuditHead(id=1, seq=1, hash=digest))


async def _erase(db: Database, seqs: list[int]) -> AuditEntry:
    subject = parse_subject(EMAIL)
    pseudonymise = Pseudonymiser(subject, "erased_test")
    async with db.transaction() as session:
        erasure = await audit_log.record(
            session, "cli", "privacy.erase", "erased_test", {REDACTED_KEY: seqs}
        )
        entries = [e for e in [await session.get(AuditEntry, s) for s in seqs] if e is not None]
        await audit_log.redact(session, entries, erasure, pseudonymise)
        return erasure


async def _verify(db: Database) -> audit_log.Verification:
    async with db.transaction() as session:
        return await audit_log.verify(session)


async def test_old_and_new_entries_verify_before_and_after_redaction(db: Database) -> None:
    await _legacy_first_entry(db)
    async with db.transaction() as session:
        await audit_log.record(session, "admin:bob", "payout.note", EMAIL, {"to": EMAIL, "n": 1})
        await audit_log.record(session, "admin:bob", "ops.pause", None, {})
    assert await chain_ok(db) == 3
    await _erase(db, [1, 2])
    assert await chain_ok(db) == 4
    async with db.transaction() as session:
        rows = [await session.get(AuditEntry, s) for s in (1, 2)]
    assert [(e.subject, e.details) for e in rows if e] == [
        ("erased_test", {"email": "erased_test"}),
        ("erased_test", {"to": "erased_test", "n": 1}),
    ]


async def test_a_redaction_no_erasure_lists_is_tampering(db: Database) -> None:
    async with db.transaction() as session:
        for i in range(3):
            await audit_log.record(session, "admin:bob", "payout.note", EMAIL, {"i": i})
    erasure = await _erase(db, [1])
    # Someone rewrites entry 2 and marks it redacted by the erasure, which never listed it.
    async with db.transaction() as session:
        await session.execute(
            update(AuditEntry)
            .where(AuditEntry.seq == 2)
            .values(details={"i": 99}, erased_by=erasure.seq)
        )
    result = await _verify(db)
    assert not result.ok and result.first_bad_seq == 2
    assert result.problem == "redacted without an erasure entry listing it"


async def test_a_redacted_entry_keeps_its_other_fields_under_the_chain(db: Database) -> None:
    async with db.transaction() as session:
        await audit_log.record(session, "admin:bob", "payout.note", EMAIL, {})
        await audit_log.record(session, "admin:bob", "ops.pause", None, {})
    await _erase(db, [1])
    async with db.transaction() as session:
        await session.execute(
            update(AuditEntry).where(AuditEntry.seq == 1).values(actor="admin:mallory")
        )
    result = await _verify(db)
    assert not result.ok and result.first_bad_seq == 1
    assert result.problem == "content changed after it was written"


async def test_a_changed_subject_of_an_entry_not_redacted_is_found(db: Database) -> None:
    async with db.transaction() as session:
        await audit_log.record(session, "admin:bob", "payout.note", EMAIL, {})
    async with db.transaction() as session:
        await session.execute(
            update(AuditEntry).where(AuditEntry.seq == 1).values(subject="someone@else.org")
        )
    result = await _verify(db)
    assert not result.ok and result.first_bad_seq == 1
