"""Tables the rails need: the circuit breaker of each rail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, BigInt, UTCDateTime


class RailHealth(Base):
    """One row per rail: its circuit breaker, shared by every worker process."""

    __tablename__ = "rail_health"

    rail: Mapped[str] = mapped_column(String(16), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    failures: Mapped[int] = mapped_column(BigInt)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
