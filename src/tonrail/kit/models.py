"""Worker liveness: each loop of each worker records when it last ran."""

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
