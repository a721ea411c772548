"""Posting to the ledger (inside the caller's transaction) and checking the books."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn

from sqlalchemy import Table, bindparam, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import FromClause
from sqlalchemy.sql.dml import Insert, Update

from tonrail import clock
from tonrail.db import Write, insert_row
from tonrail.errors import InsufficientBalance
from tonrail.ids import new_id
from tonrail.ledger.models import COVERED, AccountBalance, JournalEntry, LedgerLine
from tonrail.ledger.rules import Line, balance_changes, imbalance
from tonrail.money import format_minor

JOURNAL_ENTRIES: Table = JournalEntry.__table__  # type: ignore[assignment]
LEDGER_LINES: Table = LedgerLine.__table__  # type: ignore[assignment]


class UnbalancedEntry(ValueError):
    """Raised before anything is written when the lines of an entry do not balance."""


# (first, last): the lts of the hot wallet's transactions an entry books (ledger/models.py).
ChainLts = tuple[int, int]


def _entry_rows(
    kind: str, lines: Sequence[Line], payment_id: str | None, lts: ChainLts | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not lines:
        raise UnbalancedEntry("an entry needs lines")
    off = imbalance(lines)
    if off:
        raise UnbalancedEntry(f"entry {kind} does not balance: {off}")
    entry_id = new_id("je")
    if lts is not None and not 0 < lts[0] <= lts[1]:
        raise ValueError(f"entry {kind}: chain lts {lts} are not first <= last")
    entry = {
        "id": entry_id,
        "payment_id": payment_id,
        "kind": kind,
        "created_at": clock.now(),
        "chain_first_lt": lts[0] if lts is not None else None,
        "chain_lt": lts[1] if lts is not None else None,
    }
    rows = [
        {"entry_id": entry_id, "account": ln.account, "asset": ln.asset, "amount": ln.amount}
        for ln in lines
    ]
    return entry, rows


# ------------------------------------------------------------------ account balances
# Every post keeps `account_balances` equal to the merchant lines it writes. A `covered`
# post (a payout or refund of an account that is not the house) must find the balance:
# in a session, a conditional UPDATE that refuses by changing nothing; in a one-statement
# write, an upsert the row's CHECK fails. Concurrent holds serialize on the row lock
# (PostgreSQL) or the write lock (SQLite), so the balance never goes below zero.
_BALANCE_COLUMNS = ("account_id", "asset", "available", "overdraft_allowed")


def _balance_upsert(dialect: str, prefix: str, source: FromClause | None = None) -> Insert:
    table: Table = AccountBalance.__table__  # type: ignore[assignment]
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    binds = [bindparam(prefix + c, type_=table.c[c].type) for c in _BALANCE_COLUMNS]
    new = (
        insert_(table).values(dict(zip(_BALANCE_COLUMNS, binds, strict=True)))
        if source is None
        else insert_(table).from_select(list(_BALANCE_COLUMNS), select(*binds).select_from(source))
    )
    return new.on_conflict_do_update(
        index_elements=["account_id", "asset"],
        set_={
            "available": table.c.available + new.excluded.available,
            "overdraft_allowed": new.excluded.overdraft_allowed,
        },
    )


def _hold_template(prefix: str, source: FromClause | None = None) -> Update:
    # Values are named hold_*: an UPDATE would take a parameter named as a column for SET.
    table: Table = AccountBalance.__table__  # type: ignore[assignment]
    hold = (
        update(table)
        .where(
            table.c.account_id == bindparam(prefix + "hold_account", type_=table.c.account_id.type),
            table.c.asset == bindparam(prefix + "hold_asset", type_=table.c.asset.type),
        )
        .values(
            available=table.c.available
            + bindparam(prefix + "hold_change", type_=table.c.available.type),
            overdraft_allowed=False,
        )
    )
    return hold if source is None else hold.where(exists(select(1).select_from(source)))


def _balance_values(account_id: str, asset: str, change: int, covered: bool) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "asset": asset,
        "available": change,
        "overdraft_allowed": not (covered and change < 0),
    }


def is_balance_violation(exc: IntegrityError) -> bool:
    """Whether a failed statement failed on an account balance's CHECK (both databases)."""
    return COVERED in str(exc.orig)


def insufficient(asset: str, available: int, needed: int) -> NoReturn:
    raise InsufficientBalance(
        f"the account's available balance of {format_minor(max(available, 0), asset)} "
        f"{asset} does not cover {format_minor(needed, asset)} {asset}",
        param="amount",
    )


_UPSERTS: dict[str, Insert] = {}


async def _keep_balances(
    session: AsyncSession, changes: dict[tuple[str, str], int], covered: bool
) -> None:
    dialect = session.get_bind().dialect.name
    upsert = _UPSERTS.get(dialect)
    if upsert is None:
        upsert = _UPSERTS[dialect] = _balance_upsert(dialect, "")
    for (account_id, asset), change in changes.items():
        if covered and change < 0:
            held = await session.execute(
                update(AccountBalance)
                .where(
                    AccountBalance.account_id == account_id,
                    AccountBalance.asset == asset,
                    AccountBalance.available >= -change,
                )
                .values(available=AccountBalance.available + change, overdraft_allowed=False)
                .returning(AccountBalance.available)
            )
            if held.first() is None:
                insufficient(asset, await available(session, account_id, asset), -change)
            continue
        await session.execute(upsert, _balance_values(account_id, asset, change, covered))


async def has_balance(conn: AsyncSession | AsyncConnection, account_id: str, asset: str) -> bool:
    """Whether the account ever had a balance of `asset` (its row exists; never deleted)."""
    found = await conn.execute(
        select(AccountBalance.available).where(
            AccountBalance.account_id == account_id, AccountBalance.asset == asset
        )
    )
    return found.first() is not None


async def available(session: AsyncSession, account_id: str, asset: str) -> int:
    """The account's available balance of `asset` (0 when nothing was ever posted)."""
    found = await session.scalar(
        select(AccountBalance.available).where(
            AccountBalance.account_id == account_id, AccountBalance.asset == asset
        )
    )
    return int(found or 0)


def entry_writes(
    kind: str,
    lines: Sequence[Line],
    payment_id: str | None = None,
    *,
    dialect: str,
    covered: bool = False,
) -> tuple[str, list[Write]]:
    """One balanced journal entry as Writes (the entry, one row per line, then the account
    balances it changes) for a caller that writes with `write_at_once`; returns the entry
    id and the writes. With `covered`, a balance the entry would take below zero fails the
    write (IntegrityError; ask `is_balance_violation`), and the caller makes sure the
    balance's row exists first (`has_balance`; rows are never deleted).

    Raises UnbalancedEntry before anything is built when the lines do not balance."""
    entry, rows = _entry_rows(kind, lines, payment_id)
    writes = [insert_row(JOURNAL_ENTRIES, entry), *(insert_row(LEDGER_LINES, row) for row in rows)]
    for (account_id, asset), change in balance_changes(lines).items():
        if covered and change < 0:
            # An upsert cannot hold: both databases check the row it would insert first.
            hold = {"hold_account": account_id, "hold_asset": asset, "hold_change": change}
            writes.append(Write("account_hold", _hold_template, hold, contended=True))
            continue
        values = _balance_values(account_id, asset, change, covered)
        writes.append(
            Write(
                ("account_balance", dialect),
                partial(_balance_upsert, dialect),
                values,
                contended=True,
                # Here the row may go below zero (overdraft_allowed): no limit to pass.
                adds=("available",),
            )
        )
    return entry["id"], writes


async def post(
    session: AsyncSession,
    kind: str,
    lines: Sequence[Line],
    payment_id: str | None = None,
    *,
    covered: bool = False,
    lts: ChainLts | None = None,
) -> str:
    """Post one balanced journal entry in the session's transaction; returns its id.

    With `covered`, an account balance the entry would take below zero raises
    InsufficientBalance (nothing of the entry is written; the transaction stays usable).
    `lts`: the first and last lt of the hot wallet's transactions the entry books."""
    entry, rows = _entry_rows(kind, lines, payment_id, lts)
    await _keep_balances(session, balance_changes(lines), covered)
    await session.execute(insert(JOURNAL_ENTRIES).values(entry))
    await session.execute(insert(LEDGER_LINES), rows)  # all lines in one executemany
    return str(entry["id"])


async def post_many(
    session: AsyncSession,
    entries: Sequence[tuple[str, Sequence[Line], str | None]],
    *,
    covered: bool = False,
    lts: ChainLts | None = None,
    balances_last: bool = False,
) -> list[str]:
    """`post` for many entries (kind, lines, payment id) in two statements (the entries, then
    every line) and one change per account balance; all are checked before anything is
    written. Returns the entry ids. `lts` (as for `post`) applies to every entry.

    `balances_last`: the balances change after the entries and lines are inserted, so their
    rows (which every concurrent post to the same accounts waits for) stay locked for less
    of the transaction; an InsufficientBalance then leaves the entries written, for a
    caller that rolls back on it (as the payout batch does)."""
    built = [_entry_rows(kind, lines, payment_id, lts) for kind, lines, payment_id in entries]
    if not built:
        return []
    changes = balance_changes([ln for _, lines, _ in entries for ln in lines])
    if not balances_last:
        await _keep_balances(session, changes, covered)
    await session.execute(insert(JOURNAL_ENTRIES), [entry for entry, _ in built])
    await session.execute(insert(LEDGER_LINES), [row for _, rows in built for row in rows])
    if balances_last:
        await _keep_balances(session, changes, covered)
    return [str(entry["id"]) for entry, _ in built]


async def balance(session: AsyncSession, account: str, asset: str) -> int:
    stmt = select(func.coalesce(func.sum(LedgerLine.amount), 0)).where(
        LedgerLine.account == account, LedgerLine.asset == asset
    )
    return int((await session.execute(stmt)).scalar_one())


async def balance_through(session: AsyncSession, account: str, asset: str, lt: int) -> int:
    """`balance` restricted to what the chain had done by `lt`: without the entries that
    book a transaction after it (`chain_lt > lt`); entries without lts always count. The
    whole balance (from its index) less the few recent entries, in one statement: one
    snapshot of the books, whatever commits meanwhile."""
    line = (LedgerLine.account == account) & (LedgerLine.asset == asset)
    whole = select(func.coalesce(func.sum(LedgerLine.amount), 0)).where(line)
    later = select(func.coalesce(func.sum(LedgerLine.amount), 0)).where(
        line,
        LedgerLine.entry_id.in_(select(JournalEntry.id).where(JournalEntry.chain_lt > lt)),
    )
    stmt = select(whole.scalar_subquery() - later.scalar_subquery())
    return int((await session.execute(stmt)).scalar_one())


async def straddling_first_lt(session: AsyncSession, account: str, lt: int) -> int | None:
    """The earliest first lt of the entries touching `account` that book transactions on
    both sides of `lt` (first <= lt < last); None when no entry straddles it."""
    found = await session.execute(
        select(func.min(JournalEntry.chain_first_lt)).where(
            JournalEntry.chain_lt > lt,
            JournalEntry.chain_first_lt <= lt,
            JournalEntry.id.in_(select(LedgerLine.entry_id).where(LedgerLine.account == account)),
        )
    )
    value = found.scalar_one_or_none()
    return int(value) if value is not None else None


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
