"""API keys: created once (secret shown once), stored as a SHA-256 hash, scoped, revocable."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.chain.address import counterparty_key, parse_address, raw_form
from tonrail.errors import (
    AuthenticationFailed,
    InvalidRequest,
    KeyLimitExceeded,
    PermissionDenied,
    ServiceUnavailable,
)
from tonrail.ids import new_id
from tonrail.money import format_minor, parse_minor
from tonrail.security import access_version
from tonrail.security.models import ApiKey

# privacy:admin is an operator's: GDPR export and erasure of any subject (docs/PRIVACY.md).
SCOPES = frozenset({"payments:read", "payments:write", "payouts:approve", "privacy:admin"})
DEFAULT_SCOPES = ("payments:read", "payments:write")
KEY_PREFIX = "trk_"
KEY_IDENTITY = "key:"  # how a key appears as requester (`Principal.identity`)


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """Optional limits of one API key, set when it is created; None: no limit. Amounts are
    micro-USDT equivalents (as the daily volume limit counts them); destinations are raw
    addresses (`wc:hex`, upper case)."""

    max_payout_usdt: int | None = None
    max_daily_usdt: int | None = None
    assets: frozenset[str] | None = None
    destinations: frozenset[str] | None = None

    @classmethod
    def parse(
        cls,
        max_payout: str | None = None,
        max_daily: str | None = None,
        assets: Iterable[str] = (),
        destinations: Iterable[str] = (),
    ) -> KeyLimits:
        """Limits as an operator writes them: USDT amounts in major units, asset names,
        TON addresses in any form."""
        amounts = []
        for text, param in ((max_payout, "max_payout"), (max_daily, "max_daily")):
            minor = None if text is None else parse_minor(text, "USDT", param=param)
            if minor is not None and minor <= 0:
                raise InvalidRequest(f"{param} must be above zero", param=param)
            amounts.append(minor)
        wanted = frozenset(a.strip().upper() for a in assets)
        unknown = wanted - {"TON", "USDT"}
        if unknown:
            raise InvalidRequest(f"unknown payout assets: {sorted(unknown)}", param="assets")
        allowed = frozenset(
            raw_form(parse_address(d.strip(), "destinations")).upper() for d in destinations
        )
        return cls(amounts[0], amounts[1], wanted or None, allowed or None)

    def check(self, asset: str, usdt: int, destination: str | None, *, valued: bool) -> None:
        """Refuse a payout beyond these limits (the per-day one is counted by the write:
        limits/service.py); `destination` None: a refund, which goes back to the payer.
        `valued` False: no fresh rate gave `usdt` (rates.py), so a USDT limit cannot be
        checked now: 503 `rate_stale` (the caller retries) rather than a payout unchecked."""
        if self.assets is not None and asset not in self.assets:
            raise PermissionDenied(
                f"this API key may pay out only {', '.join(sorted(self.assets))}",
                param="asset",
                code="key_asset_not_allowed",
            )
        if (
            destination is not None
            and self.destinations is not None
            and counterparty_key(destination).upper() not in self.destinations
        ):
            raise PermissionDenied(
                "this API key may pay out only to the destinations on its allow-list",
                param="destination",
                code="key_destination_not_allowed",
            )
        if not valued and (self.max_payout_usdt is not None or self.max_daily_usdt is not None):
            raise ServiceUnavailable(
                f"no fresh {asset} rate to value this payout against this API key's USDT "
                "limits; retry later",
                param="asset",
                code="rate_stale",
            )
        if self.max_payout_usdt is not None and usdt > self.max_payout_usdt:
            raise KeyLimitExceeded(
                f"this API key may pay out at most {format_minor(self.max_payout_usdt, 'USDT')} "
                "USDT (equivalent) at a time",
                param="amount",
                code="key_payout_limit_exceeded",
            )
        if self.max_daily_usdt is not None and usdt > self.max_daily_usdt:
            raise KeyLimitExceeded(
                f"this API key's daily payout limit of "
                f"{format_minor(self.max_daily_usdt, 'USDT')} USDT (UTC day) would be exceeded",
                param="amount",
                code="key_daily_limit_exceeded",
            )

    def describe(self) -> dict[str, Any]:
        """The limits as the key's details show them (None: no limit)."""
        usdt = {"max_payout_usdt": self.max_payout_usdt, "max_daily_usdt": self.max_daily_usdt}
        return {
            **{k: None if v is None else format_minor(v, "USDT") for k, v in usdt.items()},
            "assets": None if self.assets is None else sorted(self.assets),
            "destinations": None if self.destinations is None else sorted(self.destinations),
        }


NO_LIMITS = KeyLimits()


def limits_of(key: ApiKey) -> KeyLimits:
    return KeyLimits(
        key.max_payout_usdt,
        key.max_daily_usdt,
        None if key.allowed_assets is None else frozenset(key.allowed_assets),
        None if key.allowed_destinations is None else frozenset(key.allowed_destinations),
    )


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its account, what it may do and its limits."""

    key_id: str
    account_id: str
    scopes: frozenset[str]
    expires_at: datetime | None = None  # a rolled key: refused from then on
    limits: KeyLimits = field(default=NO_LIMITS)

    @property
    def identity(self) -> str:
        return f"{KEY_IDENTITY}{self.key_id}"


def hash_secret(secret: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is as strong as a slow one here.
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(
    session: AsyncSession,
    account_id: str,
    name: str,
    scopes: tuple[str, ...] = DEFAULT_SCOPES,
    limits: KeyLimits = NO_LIMITS,
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
        max_payout_usdt=limits.max_payout_usdt,
        max_daily_usdt=limits.max_daily_usdt,
        allowed_assets=None if limits.assets is None else sorted(limits.assets),
        allowed_destinations=None if limits.destinations is None else sorted(limits.destinations),
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
        limits=limits_of(key),
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
