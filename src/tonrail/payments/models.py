"""Tables of the payments domain: payments, their attempts and approvals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, BigInt, JsonDoc, StatusText, UTCDateTime
from tonrail.payments.states import LIVE_ATTEMPT_STATES, AttemptStatus, PaymentStatus
from tonrail.states import RefundStatus


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    direction: Mapped[str] = mapped_column(String(3))
    status: Mapped[PaymentStatus] = mapped_column(StatusText(PaymentStatus, 24))
    asset: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInt)
    # The amount in micro-USDT used for limits, with the rate applied and when it was read.
    usdt_equivalent: Mapped[int] = mapped_column(BigInt)
    rate: Mapped[str] = mapped_column(String(40))
    rate_at: Mapped[datetime] = mapped_column(UTCDateTime)
    volume_day: Mapped[str | None] = mapped_column(String(10))
    counterparty: Mapped[str | None] = mapped_column(String(128), index=True)
    reference: Mapped[str | None] = mapped_column(String(64), unique=True)
    priority: Mapped[str] = mapped_column(String(8))
    target_confirmation_seconds: Mapped[int] = mapped_column(BigInt)
    description: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JsonDoc, default=dict)
    requested_by: Mapped[str] = mapped_column(String(80))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(Text)
    # Why a queued payment is not moving (e.g. the hot wallet lacks funds); cleared when it does.
    hold_reason: Mapped[str | None] = mapped_column(String(64))
    # The rail the router chose for the next attempt, and why (None: not routed yet).
    route: Mapped[str | None] = mapped_column(String(16))
    route_reason: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Worker lease: who holds this payment and until when (see kit/claims.py).
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_payments_account_created", "account_id", "created_at", "id"),
        Index("ix_payments_status_locked", "status", "locked_until"),
        # Payments that ended in a time range: covers success rate, volume, confirmation time.
        # Migration 0009 lists these columns again: frozen history keeps its own copy.
        Index(
            "ix_payments_completed_at",
            "completed_at",
            "status",
            "direction",
            "asset",
            "amount",
            "usdt_equivalent",
            "created_at",
        ),
        # The dashboard's payment list, newest first: its filters are read from the index.
        Index("ix_payments_list", "created_at", "id", "status", "direction", "asset", "amount"),
    )


# The partial index's predicate is SQL text: it names the live statuses from the rules.
_LIVE = "status IN ({})".format(", ".join(f"'{s}'" for s in sorted(LIVE_ATTEMPT_STATES)))


class Attempt(Base):
    __tablename__ = "attempts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    number: Mapped[int] = mapped_column(BigInt)
    rail: Mapped[str] = mapped_column(String(16))
    status: Mapped[AttemptStatus] = mapped_column(StatusText(AttemptStatus, 16))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    provider_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    fee_amount: Mapped[int | None] = mapped_column(BigInt)
    fee_asset: Mapped[str | None] = mapped_column(String(8))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("payment_id", "number", name="uq_attempts_payment_number"),
        # At most one live attempt per payment, enforced by the database itself.
        Index(
            "uq_attempts_one_live",
            "payment_id",
            unique=True,
            sqlite_where=text(_LIVE),
            postgresql_where=text(_LIVE),
        ),
        # Attempts that changed in a time range: covers the fees paid by rail and asset.
        Index("ix_attempts_updated_at", "updated_at", "rail", "fee_asset", "fee_amount"),
        # Attempts started in a time range, by rail and status (the Backup payments page).
        Index("ix_attempts_created_at", "created_at", "rail", "status", "payment_id"),
        # Payments by rail, and failed attempts in a time range (dashboard Payments, Errors).
        Index("ix_attempts_rail_payment", "rail", "payment_id"),
        Index("ix_attempts_status_updated", "status", "updated_at", "rail"),
    )


class Approval(Base):
    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    approver: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("payment_id", "approver", name="uq_approvals_payer"),)


class Refund(Base):
    """Money of an invoice given back to whoever paid it, carried by a payout (`payout_id`)
    through the payout pipeline: limits, approvals, exactly once."""

    __tablename__ = "refunds"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64))
    invoice_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    payout_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"), unique=True)
    # The deposit whose payer is paid back (TON), when the refund names one.
    deposit_id: Mapped[str | None] = mapped_column(String(40))
    rail: Mapped[str] = mapped_column(String(16))
    asset: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInt)
    destination: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[RefundStatus] = mapped_column(StatusText(RefundStatus, 16))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
