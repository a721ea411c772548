"""Double-entry journal: an entry groups lines; per asset, the lines of an entry sum to zero."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, false
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, BigInt, UTCDateTime


class JournalEntry(Base):
    __tablename__ = "journal_entries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str | None] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(48))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # What the entry books of the hot wallet's transactions on chain (deposits, payouts,
    # treasury proposals and top-ups): the lt of the first and of the last transaction whose
    # effect it books; None for entries no transaction explains (reservations, an opening
    # balance). Reconciliation compares the books with the chain up to an lt by them.
    chain_first_lt: Mapped[int | None] = mapped_column(BigInt)
    chain_lt: Mapped[int | None] = mapped_column(BigInt, index=True)


class LedgerLine(Base):
    __tablename__ = "ledger_lines"

    # Table columns: alike other tables in shape only.
    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    account: Mapped[str] = mapped_column(String(96))
    asset: Mapped[str] = mapped_column(String(8))
    # Signed minor units: debit positive, credit negative.
    amount: Mapped[int] = mapped_column(BigInt)

    # Covers balance(): an account's sum is read from the index alone.
    __table_args__ = (Index("ix_ledger_lines_account_asset_amount", "account", "asset", "amount"),)


COVERED = "ck_account_balances_covered"


class AccountBalance(Base):
    """What each merchant account may still pay out, per asset: the negated sum of its
    `liability:merchant:<id>` lines, kept by every post to that account (ledger/service.py)
    so a payout's hold is one conditional statement, not a sum read and then a check."""

    __tablename__ = "account_balances"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    asset: Mapped[str] = mapped_column(String(8), primary_key=True)
    available: Mapped[int] = mapped_column(BigInt)  # minor units
    # The last change had to happen whatever the balance (a credit, a fee charged after
    # the fact, the house account's hold); a covered hold sets it false, and the database
    # then refuses a balance below zero.
    overdraft_allowed: Mapped[bool] = mapped_column(Boolean, server_default=false())

    __table_args__ = (CheckConstraint("available >= 0 OR overdraft_allowed", name="covered"),)
