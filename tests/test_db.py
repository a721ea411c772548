"""`write_at_once`: several writes as one atomic write (one statement on PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from tests.helpers import row_counts
from tonrail.db import Database, Write, insert_row, write_at_once
from tonrail.events.models import OutboxEvent
from tonrail.events.service import event_write
from tonrail.limits.models import DailyVolume
from tonrail.security.switches import set_switch, switch_refusal


async def _events(db: Database) -> list[str]:
    async with db.transaction() as session:
        rows = await session.execute(select(OutboxEvent.type).order_by(OutboxEvent.seq))
        return list(rows.scalars())


async def test_writes_run_in_the_given_order(db: Database) -> None:
    writes = [event_write(f"test.{n}", "acct_t", {"n": n}) for n in (3, 1, 2)]
    async with db.one_write() as conn:
        assert await write_at_once(conn, writes) is True
    # seq is assigned as each row is inserted: the order of the writes, not of the SQL text
    assert await _events(db) == ["test.3", "test.1", "test.2"]


async def test_a_failing_write_fails_them_all(db: Database) -> None:
    first = event_write("test.first", "acct_t", {})
    again = event_write("test.again", "acct_t", {})
    duplicate = Write(again.key, again.template, {**again.values, "id": first.values["id"]})
    before = await row_counts(db)
    with pytest.raises(IntegrityError):
        async with db.one_write() as conn:
            await write_at_once(conn, [first, event_write("test.second", "acct_t", {}), duplicate])
    assert await row_counts(db) == before


async def test_a_refusal_that_holds_writes_nothing(db: Database) -> None:
    refusals = [switch_refusal("maintenance")]
    async with db.one_write() as conn:
        assert await write_at_once(conn, [event_write("test.open", "acct_t", {})], refusals)
    async with db.transaction() as session:
        await set_switch(session, "maintenance", True, "test")
    before = await row_counts(db)
    async with db.one_write() as conn:
        refused = await write_at_once(conn, [event_write("test.closed", "acct_t", {})], refusals)
    assert refused is False
    assert await row_counts(db) == before
    assert "test.closed" not in await _events(db)


async def test_a_left_out_column_gets_its_python_default(db: Database) -> None:
    row = {"day": "2026-01-02", "limit_usdt": 10}  # used_usdt has default=0 in the model
    async with db.one_write() as conn:
        assert await write_at_once(conn, [insert_row(DailyVolume.__table__, row)])
    async with db.transaction() as session:
        assert (await session.execute(select(DailyVolume.used_usdt))).scalar_one() == 0


async def test_a_broken_connection_is_not_handed_out_again(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("the one-statement path runs on PostgreSQL's driver")
    async with db.one_write() as conn:
        assert await write_at_once(conn, [event_write("test.before", "acct_t", {})])
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    async with db.transaction() as session:  # a server restart, as the pool sees it
        await session.execute(text(f"SELECT pg_terminate_backend(pid) {others}"))
    for _ in range(100):  # termination is asynchronous: wait until the backends are gone
        async with db.transaction() as session:
            if not (await session.execute(text(f"SELECT count(*) {others}"))).scalar_one():
                break
        await asyncio.sleep(0.05)
    with pytest.raises(Exception):  # whatever the driver raises for a dead socket
        async with db.one_write() as conn:
            await write_at_once(conn, [event_write("test.lost", "acct_t", {})])
    async with db.one_write() as conn:
        assert await write_at_once(conn, [event_write("test.after", "acct_t", {})])
    assert await _events(db) == ["test.before", "test.after"]
