"""Writing outbox events (in the caller's transaction)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.db import Write, insert_row
from tonrail.events.models import OutboxEvent
from tonrail.ids import new_id
from tonrail.json_text import RenderedJson

OUTBOX: Table = OutboxEvent.__table__  # type: ignore[assignment]


def emit(
    session: AsyncSession,
    type_: str,
    account_id: str,
    payload: dict[str, Any],
    payment_id: str | None = None,
) -> OutboxEvent:
    """Queue an event; it commits or rolls back with the state change that caused it."""
    # A new row, field by field: alike other inserts in shape only.
    event = OutboxEvent(
        id=new_id("evt"),
        type=type_,
        account_id=account_id,
        payment_id=payment_id,
        payload=payload,
        created_at=clock.now(),
    )
    session.add(event)
    return event


def event_write(
    type_: str,
    account_id: str,
    payload: dict[str, Any] | RenderedJson,
    payment_id: str | None = None,
) -> Write:
    """The same event as a Write, for a caller that writes with `write_at_once` (`payload`
    may be already rendered: `json_text.RenderedJson`)."""
    return insert_row(
        OUTBOX,
        {
            "id": new_id("evt"),
            "type": type_,
            "account_id": account_id,
            "payment_id": payment_id,
            "payload": payload,
            "created_at": clock.now(),
        },
    )
