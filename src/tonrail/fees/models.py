"""Tables of the fee optimizer: network samples and the decision taken for each payout."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, BigInt, JsonDoc, UTCDateTime


class FeeSample(Base):
    """One look at the network. A None signal was not available; `unavailable` says why."""

    __tablename__ = "fee_samples"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    sampled_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    latency_ms: Mapped[int | None] = mapped_column(BigInt)  # p90 of our own recent requests
    latency_count: Mapped[int] = mapped_column(BigInt)
    queue_size: Mapped[int | None] = mapped_column(BigInt)  # outbound message queue
    api_calls: Mapped[int] = mapped_column(BigInt)  # toncenter tries during the sample
    api_errors: Mapped[int] = mapped_column(BigInt)
    api_rate_limited: Mapped[int] = mapped_column(BigInt)
    congestion_raw_bp: Mapped[int | None] = mapped_column(BigInt)  # basis points of 100 %
    congestion_bp: Mapped[int | None] = mapped_column(BigInt)  # smoothed
    # estimateFee of the hot wallet's external message (nanoton), by representative request
    fee_ton_single: Mapped[int | None] = mapped_column(BigInt)
    fee_usdt_single: Mapped[int | None] = mapped_column(BigInt)
    fee_ton_batch: Mapped[int | None] = mapped_column(BigInt)
    batch_size: Mapped[int] = mapped_column(BigInt)
    config_hash: Mapped[str | None] = mapped_column(String(64))
    config: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)  # params 20/21/24/25, on change
    unavailable: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)

    __table_args__ = (
        # The Fees page's congestion and fee-estimate charts (and the Overview's congestion
        # chart), read from the index alone.
        Index(
            "ix_fee_samples_sampled_fees",
            "sampled_at",
            "congestion_bp",
            "congestion_raw_bp",
            "fee_ton_single",
            "fee_ton_batch",
            "batch_size",
        ),
    )


class FeeDecisionRecord(Base):
    """The optimizer's latest decision for a payout, its inputs, and what then happened."""

    __tablename__ = "fee_decisions"

    payment_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revisions: Mapped[int] = mapped_column(BigInt, default=1)
    priority: Mapped[str] = mapped_column(String(8))
    asset: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInt)
    target_seconds: Mapped[int] = mapped_column(BigInt)
    congestion_bp: Mapped[int | None] = mapped_column(BigInt)
    inputs: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    send_at: Mapped[datetime] = mapped_column(UTCDateTime)
    send_by: Mapped[datetime] = mapped_column(UTCDateTime)
    batch_window_ms: Mapped[int] = mapped_column(BigInt)
    batch_max: Mapped[int] = mapped_column(BigInt)
    jetton_attach_nanoton: Mapped[int] = mapped_column(BigInt)
    divert_reason: Mapped[str | None] = mapped_column(String(64))
    expected_fee: Mapped[int | None] = mapped_column(BigInt)  # nanoton, in the expected batch
    alone_fee: Mapped[int | None] = mapped_column(BigInt)  # nanoton, had it gone alone
    reasons: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    # confirmed | failed | diverted, once known
    outcome: Mapped[str | None] = mapped_column(String(16))
    fee_paid: Mapped[int | None] = mapped_column(BigInt)  # nanoton
    confirm_ms: Mapped[int | None] = mapped_column(BigInt)  # queued -> confirmed
    outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Fees paid and saved over a time range (the Fees page, the status' savings), index only.
    __table_args__ = (
        Index(
            "ix_fee_decisions_outcome_at", "outcome_at", "outcome", "asset", "fee_paid", "alone_fee"
        ),
    )
