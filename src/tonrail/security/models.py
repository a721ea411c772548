"""API keys (stored hashed), idempotency records of POST requests, security failures,
lockouts, the access version every process watches, and dashboard sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, BigInt, JsonDoc, UTCDateTime


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(16))  # shown to humans to tell keys apart
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    scopes: Mapped[list[str]] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A rolled key works until expires_at (the overlap), then is refused; successor_id is
    # the key that replaced it (security/key_rotation.py).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    successor_id: Mapped[str | None] = mapped_column(String(40))
    # Optional limits, set at creation (api_keys.KeyLimits); NULL: no limit.
    max_payout_usdt: Mapped[int | None] = mapped_column(BigInt)
    max_daily_usdt: Mapped[int | None] = mapped_column(BigInt)
    allowed_assets: Mapped[list[str] | None] = mapped_column(JsonDoc)
    allowed_destinations: Mapped[list[str] | None] = mapped_column(JsonDoc)  # raw forms


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method+path+body
    status_code: Mapped[int] = mapped_column(BigInt)
    response_body: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("account_id", "key", name="uq_idempotency_account_key"),)


class SecurityFailure(Base):
    """A refused or failed action charged to a subject (counterparty, API key or IP)."""

    __tablename__ = "security_failures"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_security_failures_subject", "subject_kind", "subject", "at"),)


class Lockout(Base):
    """A counterparty, API key or IP refused until an admin unlocks it or it expires."""

    __tablename__ = "lockouts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(BigInt)
    locked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    unlocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unlocked_by: Mapped[str | None] = mapped_column(String(80))
    # LOCKOUT_SECONDS after locked_at; None = until an admin unlocks it. An expired lock is
    # closed (unlocked_at = expires_at) before the subject is locked again.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # At most one open lock per subject.
        Index(
            "uq_lockouts_active",
            "subject_kind",
            "subject",
            unique=True,
            sqlite_where=text("unlocked_at IS NULL"),
            postgresql_where=text("unlocked_at IS NULL"),
        ),
    )


class AccessVersion(Base):
    """One row counting changes to who may call: a key revoked, a subject locked or unlocked.

    Every API process reads it at most every ACCESS_RECHECK_MS and, when it moved, forgets
    the keys and lockouts it remembered (security/access.py)."""

    __tablename__ = "access_version"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    version: Mapped[int] = mapped_column(BigInt)


class AdminSession(Base):
    """A dashboard sign-in: the cookie's `sid` works while its row is open (signing out,
    or a new password, role or disable, ends it on the server)."""

    __tablename__ = "admin_sessions"

    sid_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of sid
    admin_id: Mapped[str] = mapped_column(String(40), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
