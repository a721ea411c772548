"""Counters that make the daily volume limit hold under concurrency."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, String, text
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, BigInt

# A row written before the limit was recorded (migration 0013) carries no limit of its own.
NO_LIMIT = 2**63 - 1
WITHIN_LIMIT = "ck_daily_volumes_within_limit"


class DailyVolume(Base):
    __tablename__ = "daily_volumes"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # UTC, YYYY-MM-DD
    used_usdt: Mapped[int] = mapped_column(BigInt, default=0)  # micro-USDT reserved
    # The limit in force at the last reservation: the database itself refuses a total above
    # it, so a reservation can be one statement that fails instead of a read and a check.
    limit_usdt: Mapped[int] = mapped_column(BigInt, server_default=text(str(NO_LIMIT)))

    __table_args__ = (CheckConstraint("used_usdt <= limit_usdt", name="within_limit"),)


KEY_WITHIN_LIMIT = "ck_key_daily_volumes_within_limit"


class KeyDailyVolume(Base):
    """The daily volume of one API key with a per-day limit (`tonrail keys create
    --max-per-day`): the same counter as `DailyVolume`, per key."""

    __tablename__ = "key_daily_volumes"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # UTC, YYYY-MM-DD
    used_usdt: Mapped[int] = mapped_column(BigInt, default=0)
    limit_usdt: Mapped[int] = mapped_column(BigInt)

    __table_args__ = (CheckConstraint("used_usdt <= limit_usdt", name="within_limit"),)
