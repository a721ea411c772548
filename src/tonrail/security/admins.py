"""Admin users of the dashboard: argon2 passwords, roles, optional TOTP, lockout."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import BigInteger, Boolean, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tonrail import clock
from tonrail.db import Base, UTCDateTime
from tonrail.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from tonrail.ids import new_id

Role = Literal["viewer", "operator", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "approver", "admin")

# What each role may do besides looking. `admin` may do everything.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "view": frozenset(ROLES),
    "operate": frozenset(
        {"operator", "admin"}
    ),  # pause, maintenance, retry, cancel, unlock, alerts
    "approve": frozenset({"approver", "admin"}),  # approve or reject payouts over the threshold
    "administer": frozenset({"admin"}),  # admin users
}

MIN_PASSWORD = 12
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,39}$")
_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the timing the same.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0000")


class AdminUser(Base):
    __tablename__ = "admin_users"

    # Table columns: alike other tables in shape only.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(BigInteger, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped on password change, role change or disable: older sessions stop working.
    session_version: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class Admin:
    """An authenticated admin, as the dashboard sees it."""

    id: str
    username: str
    role: Role
    session_version: int

    def can(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]


def _admin(row: AdminUser) -> Admin:
    role: Role = row.role  # type: ignore[assignment]
    return Admin(row.id, row.username, role, row.session_version)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidRequest(
            f"the password needs at least {MIN_PASSWORD} characters", code="password_too_short"
        )


async def create_admin(
    session: AsyncSession, username: str, password: str, role: str, *, totp: bool = False
) -> tuple[Admin, str | None]:
    """Create an admin user; returns it and, with `totp`, the TOTP secret to enrol (shown once)."""
    username = username.strip().lower()
    if not USERNAME_RE.match(username):
        raise InvalidRequest(
            "username: 2-40 characters of a-z, 0-9, '.', '_', '-'", code="username_invalid"
        )
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}", code="role_invalid")
    check_password_strength(password)
    exists = await session.scalar(select(AdminUser.id).where(AdminUser.username == username))
    if exists:
        raise InvalidRequest(f"admin {username!r} already exists", code="admin_exists")
    secret = pyotp.random_base32() if totp else None
    row = AdminUser(
        id=new_id("adm"),
        username=username,
        password_hash=_hasher.hash(password),
        role=role,
        totp_secret=secret,
        disabled=False,
        failed_logins=0,
        session_version=1,
        created_at=clock.now(),
    )
    session.add(row)
    await session.flush()
    return _admin(row), secret


async def set_password(session: AsyncSession, username: str, password: str) -> None:
    check_password_strength(password)
    row = await _by_name(session, username)
    row.password_hash = _hasher.hash(password)
    row.session_version += 1
    row.failed_logins = 0
    row.locked_until = None


async def set_role(session: AsyncSession, username: str, role: str) -> None:
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}", code="role_invalid")
    row = await _by_name(session, username)
    row.role = role
    row.session_version += 1


async def set_disabled(session: AsyncSession, username: str, disabled: bool) -> None:
    row = await _by_name(session, username)
    row.disabled = disabled
    row.session_version += 1


async def list_admins(session: AsyncSession) -> list[AdminUser]:
    return list((await session.execute(select(AdminUser).order_by(AdminUser.username))).scalars())


async def _by_name(session: AsyncSession, username: str) -> AdminUser:
    row = await session.scalar(
        select(AdminUser).where(AdminUser.username == username.strip().lower())
    )
    if row is None:
        raise InvalidRequest(f"no admin {username!r}", code="admin_not_found")
    return row


async def authenticate(
    session: AsyncSession,
    username: str,
    password: str,
    totp_code: str | None,
    *,
    max_failures: int,
    lock_seconds: int,
) -> Admin:
    """Check a sign-in. Wrong credentials count; `max_failures` in a row lock the account."""
    now = clock.now()
    row = await session.scalar(
        select(AdminUser).where(AdminUser.username == username.strip().lower())
    )
    if row is None:
        _verify(_DUMMY_HASH, password)
        raise AuthenticationFailed("wrong username or password", code="login_failed")
    if row.locked_until is not None and row.locked_until > now:
        raise AuthenticationFailed(
            "too many failed sign-ins: this account is locked for a while", code="login_locked"
        )
    ok = _verify(row.password_hash, password)
    if ok and row.totp_secret:
        ok = bool(totp_code) and pyotp.TOTP(row.totp_secret).verify(
            (totp_code or "").strip(), valid_window=1
        )
    if not ok or row.disabled:
        row.failed_logins += 1
        if row.failed_logins >= max_failures:
            row.locked_until = now + timedelta(seconds=lock_seconds)
            row.failed_logins = 0
        code = "login_failed"
        message = "wrong username or password"
        if not ok and row.totp_secret and _verify(row.password_hash, password):
            code, message = "totp_invalid", "the one-time code is missing or wrong"
        raise AuthenticationFailed(message, code=code)
    row.failed_logins = 0
    row.locked_until = None
    row.last_login_at = now
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = _hasher.hash(password)
    return _admin(row)


async def load_admin(session: AsyncSession, admin_id: str, session_version: int) -> Admin | None:
    """The admin behind a session cookie, or None if it is gone, disabled or outdated."""
    row = await session.get(AdminUser, admin_id)
    if row is None or row.disabled or row.session_version != session_version:
        return None
    return _admin(row)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def with_permission(session: AsyncSession, username: str, permission: str) -> Admin:
    """The enabled admin `username` if their role has `permission` (a CLI action taken in
    their name, e.g. `tonrail accounts top-up --actor`); PermissionDenied otherwise."""
    row = await _by_name(session, username)
    admin = _admin(row)
    if row.disabled or not admin.can(permission):
        raise PermissionDenied(
            f"{admin.username} ({admin.role}{', disabled' if row.disabled else ''}) may not "
            f"{permission}; roles that may: {', '.join(sorted(PERMISSIONS[permission]))}",
            code="role_not_allowed",
        )
    return admin
