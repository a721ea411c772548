"""The treasury's table: one multisig order per payout paid from the treasury."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, BigInt, StatusText, UTCDateTime


class OrderStatus(StrEnum):
    """signed -> proposed -> executed -> confirmed; or failed (never moved money)."""

    SIGNED = "signed"  # the hot wallet's new_order request is stored, maybe sent
    PROPOSED = "proposed"  # the order contract holds our order; approvers approve
    EXECUTED = "executed"  # K approvals: the multisig sent the payout's message
    CONFIRMED = "confirmed"  # the payee's side succeeded; payout and books final
    FAILED = "failed"  # proven never to pay: seqno taken, request or order expired


class OrderPurpose(StrEnum):
    PAYOUT = "payout"  # pays one payout from the treasury
    TOPUP = "topup"  # refills the hot wallet's float


class TreasuryOrder(Base):
    """A multisig order (a payout, or a hot wallet top-up) and the hot wallet's request that
    proposes it, stored before the request is ever sent (a re-send is the same message)."""

    __tablename__ = "treasury_orders"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    purpose: Mapped[OrderPurpose] = mapped_column(StatusText(OrderPurpose, 16))
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"), unique=True)
    asset: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInt)  # minor units the order's message carries
    multisig: Mapped[str] = mapped_column(String(80))
    order_seqno: Mapped[int] = mapped_column(BigInt)
    order_address: Mapped[str] = mapped_column(String(80))
    order_hash: Mapped[str] = mapped_column(String(64))  # hex hash of the order cell
    message_hash: Mapped[str] = mapped_column(String(64))  # the payout message's body hash
    expiration_date: Mapped[int] = mapped_column(BigInt)
    proposal_value: Mapped[int] = mapped_column(BigInt)  # nanoton from the hot wallet
    query_seq: Mapped[int] = mapped_column(BigInt)
    valid_until: Mapped[int] = mapped_column(BigInt)
    boc: Mapped[str] = mapped_column(Text)
    msg_hash_norm: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[OrderStatus] = mapped_column(StatusText(OrderStatus, 16))
    approvals: Mapped[int] = mapped_column(BigInt, default=0)
    threshold: Mapped[int] = mapped_column(BigInt, default=0)
    send_count: Mapped[int] = mapped_column(BigInt, default=0)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A copy refused as already executed (exit code 36): the request landed, never re-sent.
    landed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payout_tx_hash: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # One order per seqno: two workers proposing at once cannot both take it.
        UniqueConstraint("multisig", "order_seqno", name="uq_treasury_orders_seqno"),
        Index("ix_treasury_orders_status_locked", "status", "locked_until"),
    )
