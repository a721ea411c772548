"""The daily retention pass: what is past its period is deleted (security events, sessions,
idempotency records) or pseudonymised (financial records, old audit entries); the rest is
untouched, the books keep their balances, the audit chain verifies. Batched, leased (a dead
worker's pass is taken over once its lease ends) and resumable (from the committed cursor)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.privacy.conftest import (
    PAYEE_EMAIL,
    PAYEE_IBAN,
    PAYEE_NAME,
    books,
    chain_ok,
    everything,
    settled_bank_payout,
)
from tonrail import clock
from tonrail.cli import app as cli
from tonrail.db import Database
from tonrail.payments.models import Attempt, Payment
from tonrail.privacy.models import RetentionRun
from tonrail.privacy.retention import RUN, plan, run_batch
from tonrail.security import audit_log
from tonrail.security.audit_log import AuditEntry
from tonrail.security.models import AdminSession, IdempotencyRecord, Lockout, SecurityFailure
from tonrail.settings import Settings, get_settings

RECENT_IBAN = "GB94BARC10201530093459"
DAY = timedelta(days=1)


@pytest.fixture
def ago() -> Iterator[list[timedelta]]:
    """The service's clock runs this far behind the real one (ago[0] = ... moves it)."""
    offset = [timedelta(0)]
    clock.set_clock(lambda: datetime.now(UTC) - offset[0])
    yield offset
    clock.set_clock(None)


async def _security_rows(db: Database, ip: str, n: int) -> None:
    now = clock.now()
    async with db.transaction() as session:
        for _ in range(n):
            session.add(
                SecurityFailure(subject_kind="ip", subject=ip, code="api_key_invalid", at=now)
            )
        session.add(
            AdminSession(
                sid_hash=f"{ip}-{now.timestamp()}".ljust(64, "0")[:64],
                admin_id="adm_1",
                created_at=now,
                expires_at=now + timedelta(hours=8),
                ended_at=now + timedelta(hours=1),
            )
        )
        session.add(
            Lockout(
                id=f"lock_{now.timestamp():.0f}",
                subject_kind="ip",
                subject=ip,
                reason="failures",
                failures=10,
                locked_at=now,
                unlocked_at=now + timedelta(hours=1),
                unlocked_by="admin:alice",
            )
        )
        session.add(
            IdempotencyRecord(
                account_id="acct_test",
                key=f"k-{ip}",
                request_fingerprint="0" * 64,
                status_code=201,
                response_body={"counterparty": ip},
                created_at=now,
            )
        )
        await audit_log.record(session, "admin:alice", "lockout.unlock", f"ip:{ip}", {"ip": ip})


async def _count(db: Database, model: Any, *where: Any) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_the_daily_pass_deletes_and_pseudonymises_what_is_past_its_period(
    db: Database,
    bank_app: Any,
    bank_settings: Settings,
    tmp_path: Path,
    ago: list[timedelta],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = bank_settings.model_copy(
        update={"retention_batch_size": 2, "retention_hour_utc": 0, "worker_lease_seconds": 30}
    )
    ago[0] = 8 * 365 * DAY
    old = await settled_bank_payout(db, bank_app, settings, tmp_path, PAYEE_IBAN, PAYEE_NAME, "B1")
    await _security_rows(db, "203.0.113.7", 3)
    ago[0] = 100 * DAY
    await _security_rows(db, "198.51.100.20", 1)
    ago[0] = timedelta(hours=12)
    recent = await settled_bank_payout(
        db, bank_app, settings, tmp_path, RECENT_IBAN, "Bob Recent", "B2"
    )
    await _security_rows(db, "192.0.2.99", 2)
    ago[0] = timedelta(0)
    balances = await books(db)

    async with db.transaction() as session:
        due = {d.step: d.rows for d in await plan(session, settings)}
    assert due["payments"] == 1 and due["attempts"] == 1
    assert due["security_failures"] == 4 and due["lockouts"] == 2 and due["admin_sessions"] == 2
    assert due["idempotency_records"] == 2  # not the one of 12 hours ago
    assert due["audit_log"] >= 1  # the unlock of eight years ago (and the old payout's own)
    audit_due = due["audit_log"]

    # The dry run from the command line reports the same and changes nothing.
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("RETENTION_HOUR_UTC", "0")
    get_settings.cache_clear()
    try:
        dry = await asyncio.to_thread(
            CliRunner().invoke, cli, ["privacy", "retention", "--dry-run"]
        )
    finally:
        get_settings.cache_clear()
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing changed" in dry.output
    line = next(ln for ln in dry.output.splitlines() if ln.startswith("security_failures "))
    assert line.split()[1:3] == ["security", "delete"] and line.split()[-1] == "4"
    assert await _count(db, SecurityFailure) == 6

    # Worker A takes the pass, handles one batch and dies holding the lease.
    assert await run_batch(db, settings, "worker-a") > 0
    assert await run_batch(db, settings, "worker-b") == 0  # the lease is A's
    # A's lease runs out: B goes on from the committed cursor and ends the pass.
    ago[0] = -timedelta(seconds=31)
    rounds = 0
    while await run_batch(db, settings, "worker-b"):
        rounds += 1
    assert rounds > 3  # batches of 2 rows
    async with db.transaction() as session:
        run = await session.get(RetentionRun, RUN)
        assert run is not None and run.finished_day is not None and run.locked_by is None
        report = run.report
    assert report["payments"]["count"] == 1 and report["security_failures"]["count"] == 4, report
    assert report["audit_log"]["count"] == audit_due
    # Once a day: the next call finds the day's pass done.
    assert await run_batch(db, settings, "worker-c") == 0

    # Deleted: security events, ended sessions, closed lockouts older than 90 days.
    assert await _count(db, SecurityFailure) == 2
    assert await _count(db, SecurityFailure, SecurityFailure.subject == "192.0.2.99") == 2
    assert await _count(db, AdminSession) == 1 and await _count(db, Lockout) == 1
    assert await _count(db, IdempotencyRecord) == 1
    async with db.transaction() as session:
        gone = await session.get(Payment, old)
        kept = await session.get(Payment, recent)
        assert gone is not None and kept is not None
        # The old payout lost its people, kept its money; the recent one is untouched.
        assert (gone.status, gone.amount, gone.asset) == ("succeeded", 20 * 10**9, "TON")
        assert gone.counterparty is not None and gone.counterparty.startswith("erased_")
        assert gone.metadata_["bank_iban"].startswith("erased_")
        assert gone.metadata_["bank_name"] == gone.metadata_["bank_iban"]
        assert gone.metadata_["contact"] == gone.metadata_["bank_iban"]
        assert kept.metadata_ == {
            "bank_iban": RECENT_IBAN,
            "bank_name": "Bob Recent",
            "contact": PAYEE_EMAIL,
        }
        attempt = (
            await session.execute(select(Attempt).where(Attempt.payment_id == old))
        ).scalar_one()
        assert attempt.details["creditor"]["iban"].startswith("erased_")
        unlocks = list(
            (
                await session.execute(
                    select(AuditEntry)
                    .where(AuditEntry.action == "lockout.unlock")
                    .order_by(AuditEntry.seq)
                )
            ).scalars()
        )
    # The unlock of eight years ago is redacted; those of 100 days and a day ago are not.
    assert [e.details["ip"] for e in unlocks] == [
        unlocks[0].details["ip"],
        "198.51.100.20",
        "192.0.2.99",
    ]
    assert unlocks[0].details["ip"].startswith("erased_") and unlocks[0].erased_by
    dump = await everything(db)
    assert PAYEE_IBAN not in dump and PAYEE_NAME not in dump and "203.0.113.7" not in dump
    assert RECENT_IBAN in dump and "198.51.100.20" in dump  # in the audit log: 7 years
    assert await books(db) == balances
    await chain_ok(db)
    async with db.transaction() as session:
        assert all(d.rows == 0 for d in await plan(session, settings) if d.period != "idempotency")
