"""Worker liveness (each loop of each worker records when it last ran) and the leases of
loops one worker at a time runs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, BigInt, UTCDateTime


class WorkerHeartbeat(Base):
    __tablename__ = "worker_heartbeats"

    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    loop: Mapped[str] = mapped_column(String(48), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed: Mapped[int] = mapped_column(BigInt, default=0)


class LoopLease(Base):
    """Which worker runs a loop that only one worker at a time should run (kit/loop_lease.py):
    `locked_by` holds it until `locked_until`; a stopping worker hands it back at once
    (worker.py: `release_leases`, as every lease)."""

    __tablename__ = "loop_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
