"""Posting to the ledger (inside the caller's transaction) and checking the books."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.db import Write, insert_row
from tonrail.ids import new_id
from tonrail.ledger.models import JournalEntry, LedgerLine
from tonrail.ledger.rules import Line, imbalance

JOURNAL_ENTRIES: Table = JournalEntry.__table__  # type: ignore[assignment]
LEDGER_LINES: Table = LedgerLine.__table__  # type: ignore[assignment]


class UnbalancedEntry(ValueError):
    """Raised before anything is written when the lines of an entry do not balance."""


def _entry_rows(
    kind: str, lines: Sequence[Line], payment_id: str | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not lines:
        raise UnbalancedEntry("an entry needs lines")
    off = imbalance(lines)
    if off:
        raise UnbalancedEntry(f"entry {kind} does not balance: {off}")
    entry_id = new_id("je")
    entry = {"id": entry_id, "payment_id": payment_id, "kind": kind, "created_at": clock.now()}
    rows = [
        {"entry_id": entry_id, "account": ln.account, "asset": ln.asset, "amount": ln.amount}
        for ln in lines
    ]
    return entry, rows


def entry_writes(
    kind: str, lines: Sequence[Line], payment_id: str | None = None
) -> tuple[str, list[Write]]:
    """One balanced journal entry as Writes (the entry, then one row per line) for a caller
    that writes with `write_at_once`; returns the entry id and the writes.

    Raises UnbalancedEntry before anything is built when the lines do not balance."""
    entry, rows = _entry_rows(kind, lines, payment_id)
    return entry["id"], [
        insert_row(JOURNAL_ENTRIES, entry),
        *(insert_row(LEDGER_LINES, row) for row in rows),
    ]


async def post(
    session: AsyncSession, kind: str, lines: Sequence[Line], payment_id: str | None = None
) -> str:
    """Post one balanced journal entry in the session's transaction; returns its id."""
    entry, rows = _entry_rows(kind, lines, payment_id)
    await session.execute(insert(JOURNAL_ENTRIES).values(entry))
    await session.execute(insert(LEDGER_LINES), rows)  # all lines in one executemany
    return str(entry["id"])


async def post_many(
    session: AsyncSession, entries: Sequence[tuple[str, Sequence[Line], str | None]]
) -> list[str]:
    """`post` for many entries (kind, lines, payment id) in two statements (the entries, then
    every line); all are checked before anything is written. Returns the entry ids."""
    built = [_entry_rows(kind, lines, payment_id) for kind, lines, payment_id in entries]
    if not built:
        return []
    await session.execute(insert(JOURNAL_ENTRIES), [entry for entry, _ in built])
    await session.execute(insert(LEDGER_LINES), [row for _, rows in built for row in rows])
    return [str(entry["id"]) for entry, _ in built]


async def balance(session: AsyncSession, account: str, asset: str) -> int:
    stmt = select(func.coalesce(func.sum(LedgerLine.amount), 0)).where(
        LedgerLine.account == account, LedgerLine.asset == asset
    )
    return int((await session.execute(stmt)).scalar_one())


@dataclass
class BooksReport:
    entries: int = 0
    lines: int = 0
    unbalanced_entries: list[tuple[str, str, int]] = field(default_factory=list)
    totals_by_asset: dict[str, int] = field(default_factory=dict)
    balances: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.unbalanced_entries and not any(self.totals_by_asset.values())


async def check_books(session: AsyncSession) -> BooksReport:
    """Verify every entry balances per asset and the whole ledger sums to zero per asset."""
    report = BooksReport()
    report.entries = int((await session.execute(select(func.count(JournalEntry.id)))).scalar_one())
    report.lines = int((await session.execute(select(func.count(LedgerLine.id)))).scalar_one())
    bad = await session.execute(
        select(LedgerLine.entry_id, LedgerLine.asset, func.sum(LedgerLine.amount))
        .group_by(LedgerLine.entry_id, LedgerLine.asset)
        .having(func.sum(LedgerLine.amount) != 0)
    )
    report.unbalanced_entries = [(e, a, int(s)) for e, a, s in bad.all()]
    totals = await session.execute(
        select(LedgerLine.asset, func.sum(LedgerLine.amount)).group_by(LedgerLine.asset)
    )
    report.totals_by_asset = {a: int(s) for a, s in totals.all()}
    rows = await session.execute(
        select(LedgerLine.account, LedgerLine.asset, func.sum(LedgerLine.amount))
        .group_by(LedgerLine.account, LedgerLine.asset)
        .order_by(LedgerLine.account, LedgerLine.asset)
    )
    report.balances = {(acc, a): int(s) for acc, a, s in rows.all()}
    return report
