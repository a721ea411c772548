"""The hash-chained audit log: appends link, tampering and removal are found, no forks."""

from __future__ import annotations

import asyncio

from sqlalchemy import delete, update
from typer.testing import CliRunner

from tonrail.db import Database
from tonrail.security import audit_log
from tonrail.security.audit_log import AuditEntry


async def _fill(db: Database, n: int) -> None:
    for i in range(n):
        async with db.transaction() as session:
            await audit_log.record(session, "admin:alice", "ops.pause", f"s{i}", {"i": i})


async def test_an_intact_chain_verifies(db: Database) -> None:
    await _fill(db, 5)
    async with db.transaction() as session:
        result = await audit_log.verify(session)
    assert result.ok and result.entries == 5


async def test_a_changed_entry_breaks_the_chain_there(db: Database) -> None:
    await _fill(db, 5)
    async with db.transaction() as session:
        await session.execute(
            update(AuditEntry).where(AuditEntry.seq == 3).values(actor="admin:mallory")
        )
    async with db.transaction() as session:
        result = await audit_log.verify(session)
    assert not result.ok and result.first_bad_seq == 3 and result.entries == 2


async def test_removed_entries_are_found(db: Database) -> None:
    await _fill(db, 5)
    async with db.transaction() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    async with db.transaction() as session:
        assert (await audit_log.verify(session)).first_bad_seq == 2
    async with db.transaction() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.seq >= 2))
    async with db.transaction() as session:
        result = await audit_log.verify(session)
    assert not result.ok and result.problem == "entries after the last one were removed"


async def test_concurrent_appends_never_fork(db: Database) -> None:
    async def one(i: int) -> None:
        async with db.transaction() as session:
            await audit_log.record(session, "system", "probe", str(i), {})

    await asyncio.gather(*(one(i) for i in range(30)))
    async with db.transaction() as session:
        result = await audit_log.verify(session)
    assert result.ok and result.entries == 30


def test_cli_audit_verify(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tonrail.cli import app
    from tonrail.migrate import upgrade
    from tonrail.settings import get_settings

    url = f"sqlite+aiosqlite:///{tmp_path / 'a.sqlite3'}"
    upgrade(url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("TONRAIL_ADMIN_PASSWORD", "a long enough password")
    get_settings.cache_clear()
    runner = CliRunner()
    created = runner.invoke(app, ["admin", "create", "alice", "--role", "admin"])
    assert created.exit_code == 0, created.output
    assert "created alice (admin)" in created.output
    again = runner.invoke(app, ["admin", "create", "alice"])
    assert again.exit_code == 2 and "admin_exists" in again.output
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "intact: 1 entries" in ok.output

    async def tamper() -> None:
        db = Database(url)
        async with db.transaction() as session:
            await session.execute(update(AuditEntry).values(subject="someone-else"))
        await db.dispose()

    asyncio.run(tamper())
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1 and "BROKEN at entry 1" in broken.output
    get_settings.cache_clear()
