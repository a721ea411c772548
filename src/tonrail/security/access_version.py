"""The access version: one counter in the database, moved by every change to who may call.

Revoking a key, locking a subject and unlocking one bump it in the same transaction as the
change. Each API process reads it (one primary-key row) at most every ACCESS_RECHECK_MS and
forgets what it remembered about keys and lockouts when it moved (`security/access.py`), so
such a change holds in every process within that time, without a query per request.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.security.models import AccessVersion

ROW = 1


async def bump(session: AsyncSession) -> None:
    """Move the version on (the row is created on first use, so a wiped table works too)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    new = insert(AccessVersion).values(id=ROW, version=1)
    await session.execute(
        new.on_conflict_do_update(
            index_elements=["id"], set_={"version": AccessVersion.version + 1}
        )
    )


async def current(session: AsyncSession) -> int:
    """The version now (0 before the first change)."""
    value = await session.scalar(select(AccessVersion.version).where(AccessVersion.id == ROW))
    return int(value or 0)
