"""Counters that make the daily volume limit hold under concurrency."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, BigInt


class DailyVolume(Base):
    __tablename__ = "daily_volumes"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # UTC, YYYY-MM-DD
    used_usdt: Mapped[int] = mapped_column(BigInt, default=0)  # micro-USDT reserved
