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


async def test_books_through_an_lt_leave_out_later_entries_and_find_straddling_ones(
    db: Database,
) -> None:
    from tonrail.ledger.service import balance_through, straddling_first_lt

    async with db.transaction() as session:
        # A deposit at lt 100, a payout sent at 200 whose bounce came back at 400, another
        # payout at 300, an opening balance no transaction explains.
        await post(session, "deposit", books.receipt_unapplied("TON", 1_000), lts=(100, 100))
        await post(session, "payout.fee", books.network_fee(70), lts=(200, 400))
        await post(
            session,
            "payout.sent",
            books.payout_sent("TON", 50, 5, "TON", books.HOT_WALLET),
            lts=(300, 300),
        )
        await post(
            session,
            "opening",
            [Line(books.HOT_WALLET, "TON", 7), Line("equity:owner_funding", "TON", -7)],
        )
        with pytest.raises(ValueError):
            await post(session, "bad", books.network_fee(1), lts=(5, 4))
    async with db.transaction() as session:
        through = [
            await balance_through(session, books.HOT_WALLET, "TON", lt)
            for lt in (
                99,
                100,
                299,
                300,
                400,
            )
        ]
        assert through == [7, 1_007, 1_007, 952, 882]
        assert await balance(session, books.HOT_WALLET, "TON") == 882
        # The payout bounced back at 400 straddles every lt from 200 to 399, no other.
        assert [
            await straddling_first_lt(session, books.HOT_WALLET, lt) for lt in (199, 200, 350, 400)
        ] == [None, 200, 200, None]
        assert await straddling_first_lt(session, books.PAYOUTS_PAYABLE, 350) is None
