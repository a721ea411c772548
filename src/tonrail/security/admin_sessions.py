"""Dashboard sessions on the server: a signed cookie works only while its row is open.

Signing out ends the row, so a copy of the cookie (a shared machine, a leaked header) stops
working at once, although its signature and expiry are still valid. A new password, role or
disable ends every session of the admin (their `session_version`, admins.py).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.security.models import AdminSession


def _hash(sid: str) -> str:
    # The sid is random (128 bits) and stored hashed: a database reader cannot present it.
    return hashlib.sha256(sid.encode()).hexdigest()


async def start(session: AsyncSession, admin_id: str, sid: str, expires_at: datetime) -> None:
    """Open a session; the admin's sessions that ended or expired before now are deleted."""
    now = clock.now()
    await session.execute(
        delete(AdminSession).where(
            AdminSession.admin_id == admin_id,
            or_(AdminSession.ended_at.is_not(None), AdminSession.expires_at <= now),
        )
    )
    session.add(
        AdminSession(sid_hash=_hash(sid), admin_id=admin_id, created_at=now, expires_at=expires_at)
    )


async def is_open(session: AsyncSession, admin_id: str, sid: str) -> bool:
    """Whether the session `sid` of `admin_id` was started, has not ended nor expired."""
    return bool(
        await session.scalar(
            select(
                exists().where(
                    AdminSession.sid_hash == _hash(sid),
                    AdminSession.admin_id == admin_id,
                    AdminSession.ended_at.is_(None),
                    AdminSession.expires_at > clock.now(),
                )
            )
        )
    )


async def end(session: AsyncSession, sid: str) -> bool:
    """End a session (sign-out); False if it was not open."""
    result = await session.execute(
        update(AdminSession)
        .where(AdminSession.sid_hash == _hash(sid), AdminSession.ended_at.is_(None))
        .values(ended_at=clock.now())
    )
    return bool(getattr(result, "rowcount", 0))
