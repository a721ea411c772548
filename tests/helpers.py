"""Small helpers the tests share: counting rows to prove that a refusal wrote nothing."""

from __future__ import annotations

from sqlalchemy import func, select

from tonrail.db import Database
from tonrail.models import metadata

DEST = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"
DEST_RAW = "0:b113a994b5024a16719f69139328eb759596c38a25f59028b146fecdc3621dfe"


async def row_counts(db: Database) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with db.transaction() as session:
        for table in metadata.sorted_tables:
            if table.name in ("api_keys",):
                continue
            counts[table.name] = int(
                (await session.execute(select(func.count()).select_from(table))).scalar_one()
            )
    return counts
