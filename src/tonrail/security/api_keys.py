"""API keys: created once (secret shown once), stored as a SHA-256 hash, scoped, revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.errors import AuthenticationFailed, InvalidRequest
from tonrail.ids import new_id
from tonrail.security import access_version
from tonrail.security.models import ApiKey

# privacy:admin is an operator's: GDPR export and erasure of any subject (docs/PRIVACY.md).
SCOPES = frozenset({"payments:read", "payments:write", "payouts:approve", "privacy:admin"})
DEFAULT_SCOPES = ("payments:read", "payments:write")
KEY_PREFIX = "trk_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its account and what it may do."""

    key_id: str
    account_id: str
    scopes: frozenset[str]
    expires_at: datetime | None = None  # a rolled key: refused from then on

    @property
    def identity(self) -> str:
        return f"key:{self.key_id}"


def hash_secret(secret: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is as strong as a slow one here.
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(
    session: AsyncSession, account_id: str, name: str, scopes: tuple[str, ...] = DEFAULT_SCOPES
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext secret, which is never stored."""
    unknown = set(scopes) - SCOPES
    if unknown:
        raise InvalidRequest(f"unknown scopes: {sorted(unknown)}", param="scopes")
    if not account_id or not name:
        raise InvalidRequest("account and name are required")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"),
        account_id=account_id,
        name=name,
        prefix=secret[:12],
        secret_hash=hash_secret(secret),
        scopes=sorted(scopes),
        created_at=clock.now(),
    )
    session.add(key)
    await session.flush()
    return key, secret


async def authenticate(session: AsyncSession, secret: str | None) -> Principal:
    """Resolve a presented secret to its principal or raise AuthenticationFailed."""
    if not secret:
        raise AuthenticationFailed(
            "missing API key: send it as 'Authorization: Bearer <key>'", code="api_key_missing"
        )
    key = (
        await session.execute(select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret)))
    ).scalar_one_or_none()
    if key is None or key.revoked_at is not None:
        raise AuthenticationFailed("invalid API key", code="api_key_invalid")
    if key.expires_at is not None and clock.now() >= key.expires_at:
        raise AuthenticationFailed(
            f"this API key expired at {key.expires_at.isoformat()}: it was rolled, use its "
            f"successor {key.successor_id or ''}".rstrip(),
            code="api_key_expired",
        )
    return Principal(
        key_id=key.id,
        account_id=key.account_id,
        scopes=frozenset(key.scopes),
        expires_at=key.expires_at,
    )


async def revoke_key(session: AsyncSession, key_id: str) -> bool:
    """Revoke a key; every API process refuses it within ACCESS_RECHECK_MS."""
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    revoked = bool(getattr(result, "rowcount", 0))
    if revoked:
        await access_version.bump(session)
    return revoked
