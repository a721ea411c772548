"""Posting journal entries: balanced lines in the caller's transaction, or nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.helpers import row_counts
from tonrail.db import Database, write_at_once
from tonrail.ledger import rules as books
from tonrail.ledger.models import LedgerLine
from tonrail.ledger.rules import Line
from tonrail.ledger.service import UnbalancedEntry, balance, check_books, entry_writes, post


async def test_post_writes_every_line_of_a_balanced_entry(db: Database) -> None:
    lines = books.payout_sent("TON", 5_000, 30, "TON", books.HOT_WALLET)
    async with db.transaction() as session:
        entry_id = await post(session, "payout.sent", lines, "pay_x")
    async with db.transaction() as session:
        rows = await session.execute(select(LedgerLine).where(LedgerLine.entry_id == entry_id))
        written = sorted((r.account, r.asset, r.amount) for r in rows.scalars())
        assert written == sorted((ln.account, ln.asset, ln.amount) for ln in lines)
        assert (await check_books(session)).ok
        assert await balance(session, books.HOT_WALLET, "TON") == -5_030


async def test_an_unbalanced_entry_is_refused_before_anything_is_written(db: Database) -> None:
    lopsided = [Line("asset:hot_wallet", "TON", 10), Line("expense:network_fees", "TON", -9)]
    before = await row_counts(db)
    with pytest.raises(UnbalancedEntry):
        async with db.transaction() as session:
            await post(session, "bad", lopsided)
    with pytest.raises(UnbalancedEntry):
        entry_writes("bad", lopsided, dialect=db.dialect)
    with pytest.raises(UnbalancedEntry):
        entry_writes("empty", [], dialect=db.dialect)
    assert await row_counts(db) == before


async def test_entry_writes_post_the_same_entry_in_one_write(db: Database) -> None:
    entry_id, writes = entry_writes(
        "payout.reserved", books.payout_reserved("acct_l", "USDT", 7), dialect=db.dialect
    )
    async with db.one_write() as conn:
        assert await write_at_once(conn, writes)
    async with db.transaction() as session:
        rows = await session.execute(
            select(LedgerLine.amount).where(LedgerLine.entry_id == entry_id)
        )
        assert sorted(rows.scalars()) == [-7, 7]
        assert (await check_books(session)).ok
