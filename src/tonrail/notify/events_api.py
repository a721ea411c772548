"""GET /v1/events: the account's published events (what its endpoints were sent), so a
merchant can catch up after downtime. Newest first, cursor `starting_after`, filters by
type (or `family.*`) and payment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tonrail.db import Database
from tonrail.errors import InvalidRequest, NotFound
from tonrail.events.models import OutboxEvent
from tonrail.notify.schemas import EventOut, check_patterns
from tonrail.settings import Settings


@dataclass(frozen=True)
class EventsQuery:
    account_id: str
    limit: int
    starting_after: str | None
    type: str | None
    payment_id: str | None


def event_out(e: OutboxEvent) -> dict[str, Any]:
    return EventOut(
        id=e.id, type=e.type, created_at=e.created_at, payment_id=e.payment_id, data=e.data or {}
    ).model_dump(mode="json")


async def list_events(db: Database, settings: Settings, q: EventsQuery) -> dict[str, Any]:
    if not 1 <= q.limit <= settings.page_max_limit:
        raise InvalidRequest(
            f"limit must be between 1 and {settings.page_max_limit}", param="limit"
        )
    stmt = select(OutboxEvent).where(
        OutboxEvent.account_id == q.account_id, OutboxEvent.published_at.is_not(None)
    )
    if q.type is not None:
        pattern = check_patterns([q.type], param="type")[0]
        if pattern.endswith(".*"):
            stmt = stmt.where(OutboxEvent.type.startswith(pattern[:-1], autoescape=True))
        elif pattern != "*":
            stmt = stmt.where(OutboxEvent.type == pattern)
    if q.payment_id is not None:
        stmt = stmt.where(OutboxEvent.payment_id == q.payment_id)
    async with db.transaction() as session:
        if q.starting_after is not None:
            cursor = (
                await session.execute(
                    select(OutboxEvent.seq, OutboxEvent.account_id).where(
                        OutboxEvent.id == q.starting_after
                    )
                )
            ).one_or_none()
            if cursor is None or cursor.account_id != q.account_id:
                raise InvalidRequest(
                    f"starting_after {q.starting_after!r} is not one of your events",
                    param="starting_after",
                    code="cursor_invalid",
                )
            stmt = stmt.where(OutboxEvent.seq < cursor.seq)
        rows = list(
            (await session.execute(stmt.order_by(OutboxEvent.seq.desc()).limit(q.limit + 1)))
            .scalars()
            .all()
        )
    return {
        "object": "list",
        "data": [event_out(e) for e in rows[: q.limit]],
        "has_more": len(rows) > q.limit,
    }


async def get_event(db: Database, account_id: str, event_id: str) -> dict[str, Any]:
    async with db.transaction() as session:
        row = (
            await session.execute(select(OutboxEvent).where(OutboxEvent.id == event_id))
        ).scalar_one_or_none()
        if row is None or row.account_id != account_id or row.published_at is None:
            raise NotFound(f"no event {event_id!r}", param="id")
        return event_out(row)
