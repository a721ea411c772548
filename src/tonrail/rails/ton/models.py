"""Tables of the TON rail: signed highload requests, their transfers, counters, deposits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, BigInt, JsonDoc, StatusText, UTCDateTime
from tonrail.rails.ton.states import (
    DepositStatus,
    RequestStatus,
    RotationState,
    SweepRecovery,
    TransferStatus,
)


class TonRequest(Base):
    """One signed external message to the hot wallet, stored before it is ever sent."""

    __tablename__ = "ton_requests"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    wallet: Mapped[str] = mapped_column(String(80))
    query_seq: Mapped[int] = mapped_column(BigInt)
    query_id: Mapped[int] = mapped_column(BigInt)
    chain_created_at: Mapped[int] = mapped_column(BigInt)
    valid_until: Mapped[int] = mapped_column(BigInt)
    boc: Mapped[str] = mapped_column(Text)
    msg_hash_norm: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[RequestStatus] = mapped_column(StatusText(RequestStatus, 16))
    send_count: Mapped[int] = mapped_column(BigInt, default=0)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ext_tx_hash: Mapped[str | None] = mapped_column(String(64))
    ext_lt: Mapped[int | None] = mapped_column(BigInt)  # lt of the transaction of ext_tx_hash
    transfer_tx_hash: Mapped[str | None] = mapped_column(String(64))
    common_fee: Mapped[int | None] = mapped_column(BigInt)  # nanoton shared by the transfers
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("wallet", "query_seq", name="uq_ton_requests_wallet_seq"),
        Index("ix_ton_requests_status_locked", "status", "locked_until"),
    )


class TonTransfer(Base):
    """One payout inside a request: what was signed, and what the chain did with it."""

    __tablename__ = "ton_transfers"

    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id"), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("ton_requests.id"), index=True)
    payment_id: Mapped[str] = mapped_column(String(40), index=True)
    position: Mapped[int] = mapped_column(BigInt)
    asset: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInt)
    destination: Mapped[str] = mapped_column(String(80))  # raw form of the payee
    message_to: Mapped[str] = mapped_column(String(80))  # raw: payee, or our jetton wallet
    message_value: Mapped[int] = mapped_column(BigInt)  # nanoton the out message carries
    bounce: Mapped[bool] = mapped_column(Boolean)
    body_hash: Mapped[str] = mapped_column(String(64))
    jetton_query_id: Mapped[int | None] = mapped_column(BigInt)
    status: Mapped[TransferStatus] = mapped_column(StatusText(TransferStatus, 16))
    out_msg_hash: Mapped[str | None] = mapped_column(String(64))
    fee: Mapped[int | None] = mapped_column(BigInt)  # nanoton, all of it, once final
    trace: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_ton_transfers_request_position", "request_id", "position"),
        # The fee optimizer's history: confirmed transfers of the last window.
        Index("ix_ton_transfers_status_updated", "status", "updated_at"),
    )


class TonQueryCounter(Base):
    """Next query sequence number per hot wallet; query_id = query_id_for(seq)."""

    __tablename__ = "ton_query_counters"

    wallet: Mapped[str] = mapped_column(String(80), primary_key=True)
    next_seq: Mapped[int] = mapped_column(BigInt)


class TonWalletCursor(Base):
    """How far the deposit watcher has read a wallet's transactions (lt, hash)."""

    __tablename__ = "ton_wallet_cursors"

    wallet: Mapped[str] = mapped_column(String(80), primary_key=True)
    last_lt: Mapped[int] = mapped_column(BigInt)
    last_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A rotation swept the wallet: what reaches it is booked on the retired hot wallets.
    # Set by the sweep's booking holding this row (processing/wallet_rotation.py).
    retired: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class TonDeposit(Base):
    """Every incoming transfer the watcher saw, matched to an invoice or not."""

    __tablename__ = "ton_deposits"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    wallet: Mapped[str] = mapped_column(String(80))
    tx_hash: Mapped[str] = mapped_column(String(64), unique=True)
    lt: Mapped[int] = mapped_column(BigInt)
    asset: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInt)
    sender: Mapped[str | None] = mapped_column(String(80))
    comment: Mapped[str | None] = mapped_column(Text)
    payment_id: Mapped[str | None] = mapped_column(String(40), index=True)
    status: Mapped[DepositStatus] = mapped_column(StatusText(DepositStatus, 16))
    resolution: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TonOwnAccount(Base):
    """An account of ours on chain (the hot wallet, its USDT jetton wallet), recorded by the
    worker that runs the TON rail, so the API can refuse a payout addressed to ourselves."""

    __tablename__ = "ton_own_accounts"

    address: Mapped[str] = mapped_column(String(80), primary_key=True)  # raw, upper-case hex
    role: Mapped[str] = mapped_column(String(16))  # hot_wallet | jetton_wallet
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TonWalletRotation(Base):
    """A hot wallet rotation (processing/wallet_rotation.py): its state, both wallets, and the
    sweep, a highload request of the old wallet stored here (not in `ton_requests`, which
    the payout tracker follows on the wallet it signs with) before it is ever sent."""

    __tablename__ = "ton_wallet_rotations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[RotationState] = mapped_column(StatusText(RotationState, 16))
    # "open" while the rotation is open, NULL once switched or canceled: unique, so two
    # operators cannot start two rotations at once (NULLs never collide)
    open_marker: Mapped[str | None] = mapped_column(String(8), unique=True)
    old_wallet: Mapped[str] = mapped_column(String(80), index=True)  # raw, as ton_requests
    old_public_key: Mapped[str] = mapped_column(String(64))
    new_wallet: Mapped[str] = mapped_column(String(80))
    new_public_key: Mapped[str] = mapped_column(String(64))
    new_key_file: Mapped[str] = mapped_column(Text)  # the new envelope until the switch
    # the sweep: what was signed (amounts in nanoton / USDT micro-units) and its message
    sweep_ton: Mapped[int | None] = mapped_column(BigInt)
    sweep_usdt: Mapped[int | None] = mapped_column(BigInt)
    sweep_query_seq: Mapped[int | None] = mapped_column(BigInt)
    sweep_query_id: Mapped[int | None] = mapped_column(BigInt)
    sweep_created_at: Mapped[int | None] = mapped_column(BigInt)
    sweep_valid_until: Mapped[int | None] = mapped_column(BigInt)
    sweep_boc: Mapped[str | None] = mapped_column(Text)
    sweep_msg_hash: Mapped[str | None] = mapped_column(String(64))
    sweep_send_count: Mapped[int] = mapped_column(BigInt, default=0)
    # A copy refused as already executed (exit code 36): the sweep landed, never re-sent.
    sweep_landed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sweep_fee: Mapped[int | None] = mapped_column(BigInt)  # nanoton, once confirmed
    sweep_entry_id: Mapped[str | None] = mapped_column(String(40))  # the journal entry
    actor: Mapped[str] = mapped_column(String(80))
    error: Mapped[str | None] = mapped_column(Text)  # why the sweep failed, once booked
    # a way out of a failed sweep one operator asked for, waiting for another's approval
    # (processing/rotation_recovery.py); cleared once approved
    recovery: Mapped[SweepRecovery | None] = mapped_column(StatusText(SweepRecovery, 16))
    recovery_requested_by: Mapped[str | None] = mapped_column(String(80))
    recovery_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
