"""Every screening decision, kept: what was screened, by which provider, and the outcome."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, UTCDateTime


class ScreeningDecision(Base):
    __tablename__ = "screening_decisions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The payment screened; None when a payout was refused (blocked) and never written.
    payment_id: Mapped[str | None] = mapped_column(String(40), index=True)
    # The incoming transfer screened (stage deposit_credit), when one was.
    deposit_id: Mapped[str | None] = mapped_column(String(40), index=True)
    # payout_request | refund_request | deposit_credit | payment_credit
    stage: Mapped[str] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(200))
    # A backup-rail payer (stage payment_credit): what its provider told us.
    email: Mapped[str | None] = mapped_column(String(200))
    iban: Mapped[str | None] = mapped_column(String(40))
    provider: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(Text)
    reference: Mapped[str] = mapped_column(String(80))
    requested_by: Mapped[str | None] = mapped_column(String(80))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_screening_decisions_decided", "decided_at", "outcome"),)
