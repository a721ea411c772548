"""The retention job's state: one row, leased by the worker that runs today's pass."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, JsonDoc, UTCDateTime


class RetentionRun(Base):
    """Where the daily pass stands: the day it serves, each step's cursor and count (so a
    crash resumes at the last committed batch), and the worker holding it."""

    __tablename__ = "retention_runs"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[str | None] = mapped_column(String(10))  # the pass under way (UTC day)
    finished_day: Mapped[str | None] = mapped_column(String(10))  # the last pass completed
    # step -> [time ISO, primary key] of the last row pseudonymised (kept across days)
    cursors: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    # step -> {"count": rows handled in this pass, "done": bool}
    report: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
