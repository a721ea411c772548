"""Double-entry journal: an entry groups lines; per asset, the lines of an entry sum to zero."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, BigInt, UTCDateTime


class JournalEntry(Base):
    __tablename__ = "journal_entries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str | None] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(48))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


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
