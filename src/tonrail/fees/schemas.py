"""API shapes of the fee optimizer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class FeeDecisionOut(BaseModel):
    """What the fee optimizer decided for a payout, and what then happened (nanoton)."""

    decided_at: datetime
    revisions: int = Field(description="how often the decision was re-taken while queued")
    congestion_pct: float | None = Field(description="null: congestion was not known")
    send_at: datetime = Field(description="not sent before this (later than queued: held)")
    send_by: datetime = Field(description="in a sent request by this time")
    batch_window_ms: int
    batch_max: int
    jetton_attach_nanoton: int = Field(description="TON attached to a jetton transfer")
    divert_reason: str | None = Field(description="set: the payout should use a backup rail")
    expected_fee_nanoton: int | None
    alone_fee_nanoton: int | None = Field(description="the fee had it been sent alone")
    reasons: list[str]
    outcome: str | None = Field(description="confirmed | failed | diverted, once known")
    fee_paid_nanoton: int | None
    confirm_ms: int | None = Field(description="from queued to confirmed")
