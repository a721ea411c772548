"""API keys: created once (secret shown once), stored as a SHA-256 hash, scoped, revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.errors import AuthenticationFailed, InvalidRequest
from tonrail.ids import new_id
from tonrail.security.models import ApiKey

SCOPES = frozenset({"payments:read", "payments:write", "payouts:approve"})
DEFAULT_SCOPES = ("payments:read", "payments:write")
KEY_PREFIX = "trk_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its account and what it may do."""

    key_id: str
    account_id: str
    scopes: frozenset[str]

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
    return Principal(key_id=key.id, account_id=key.account_id, scopes=frozenset(key.scopes))


async def revoke_key(session: AsyncSession, key_id: str) -> bool:
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    return bool(getattr(result, "rowcount", 0))


class PrincipalCache:
    """Authenticated keys, remembered for a few seconds per process.

    Saves a database transaction on every request. The price is stated: a key revoked
    elsewhere keeps working in this process for at most `ttl_seconds` (API_KEY_CACHE_SECONDS;
    0 turns the cache off). Only successes are cached, so a new key works at once.
    """

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000):
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, secret: str) -> Principal | None:
        if self.ttl <= 0:
            return None
        hit = self._entries.get(hash_secret(secret))
        if hit is None:
            return None
        principal, expires = hit
        if clock.now().timestamp() >= expires:
            self._entries.pop(hash_secret(secret), None)
            return None
        return principal

    def put(self, secret: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # simple and bounded; a miss only costs one query
        self._entries[hash_secret(secret)] = (principal, clock.now().timestamp() + self.ttl)
