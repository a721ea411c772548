"""Who may call, as each API process remembers it: authenticated keys and the lockouts of
addresses and keys, both forgotten when the access version moves (`access_version.py`).

The version is read at most every ACCESS_RECHECK_MS (one primary-key row; one reader at a
time, the others wait for its answer), so a key revoked, a subject locked or an unlock
made by any process (the CLI, another API process, the alert evaluator) holds here within
that time. A change made by this process holds at its next request (`forget`). Lockouts
carry their expiry, so an expired lock stops refusing on time without any change.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from tonrail import clock
from tonrail.db import Database
from tonrail.security import access_version
from tonrail.security.api_keys import Principal, hash_secret
from tonrail.security.lockouts import in_force
from tonrail.security.models import Lockout

# Kinds of lockouts checked on every request; counterparty locks are checked by the payout
# writes themselves (SQL), dashboard_ip locks by the sign-in.
REQUEST_KINDS = ("ip", "api_key")


@dataclass
class _Seen:
    version: int = -1
    checked_at: datetime | None = None
    # (kind, subject) -> expiry (None: until unlocked)
    locks: dict[tuple[str, str], datetime | None] = field(default_factory=dict)


class AccessCache:
    """Authenticated keys (at most `ttl_seconds` each, API_KEY_CACHE_SECONDS; 0 = off) and
    the lockouts in force, both as fresh as `recheck_ms` (ACCESS_RECHECK_MS)."""

    def __init__(
        self, db: Database, ttl_seconds: float, recheck_ms: int, max_entries: int = 10_000
    ):
        self.db = db
        self.ttl = ttl_seconds
        self.recheck = timedelta(milliseconds=recheck_ms)
        self.max_entries = max_entries
        self._principals: dict[str, tuple[Principal, float]] = {}
        self._seen = _Seen()
        self._reading: asyncio.Lock | None = None

    async def refresh(self) -> None:
        """Read the access version if it is due; forget everything when it moved."""
        if not self._due(clock.now()):
            return
        if self._reading is None:
            self._reading = asyncio.Lock()
        async with self._reading:
            now = clock.now()
            if not self._due(now):
                return  # another request read it while this one waited
            async with self.db.transaction() as session:
                version = await access_version.current(session)
                if version != self._seen.version:
                    rows = await session.execute(
                        select(Lockout.subject_kind, Lockout.subject, Lockout.expires_at).where(
                            in_force(now), Lockout.subject_kind.in_(REQUEST_KINDS)
                        )
                    )
                    locks = {(kind, subject): expires for kind, subject, expires in rows}
                    self._principals.clear()
                    self._seen = _Seen(version, now, locks)
                    return
            self._seen.checked_at = now

    def _due(self, now: datetime) -> bool:
        last = self._seen.checked_at
        # A clock moved backwards (tests) counts as due, never as fresh forever.
        return last is None or now < last or now - last >= self.recheck

    def forget(self) -> None:
        """This process changed access (e.g. locked an address): read it all at once."""
        self._seen.checked_at = None

    def locked(self, kind: str, subject: str | None) -> bool:
        """Whether a lockout of `kind` on `subject` is in force (as of the last refresh)."""
        if not subject or (kind, subject) not in self._seen.locks:
            return False
        expires = self._seen.locks[(kind, subject)]
        return expires is None or clock.now() < expires

    @property
    def version(self) -> int:
        """The access version as last read: pass it to `remember`."""
        return self._seen.version

    def principal(self, secret: str) -> Principal | None:
        if self.ttl <= 0:
            return None
        hit = self._principals.get(hash_secret(secret))
        if hit is None:
            return None
        principal, expires = hit
        if principal.expires_at is not None:
            expires = min(expires, principal.expires_at.timestamp())  # a rolled key, on time
        if clock.now().timestamp() >= expires:
            self._principals.pop(hash_secret(secret), None)
            return None
        return principal

    def remember(self, secret: str, principal: Principal, version: int) -> None:
        """Keep a key authenticated while the access version was `version`; a key read
        before a change that this process has seen since is not kept."""
        if self.ttl <= 0 or version != self._seen.version:
            return
        if len(self._principals) >= self.max_entries:
            self._principals.clear()  # simple and bounded; a miss only costs one query
        self._principals[hash_secret(secret)] = (principal, clock.now().timestamp() + self.ttl)
