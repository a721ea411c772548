"""Every inbound provider event, stored before it is processed; unique per source."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, BigInt, JsonDoc, StatusText, UTCDateTime
from tonrail.processing.states import EventStatus


class ProviderEvent(Base):
    __tablename__ = "provider_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(96))
    # The provider object the event is about (PaymentIntent, order, payout batch...).
    object_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    status: Mapped[EventStatus] = mapped_column(StatusText(EventStatus, 16))
    outcome: Mapped[str | None] = mapped_column(Text)
    process_count: Mapped[int] = mapped_column(BigInt, default=0)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_provider_events_source_external"),
        Index("ix_provider_events_status", "status", "received_at"),
    )
