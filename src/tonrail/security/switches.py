"""Operator switches: `payments_paused` stops all signing; `maintenance` refuses new work."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ColumnElement, String, Text, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tonrail import clock
from tonrail.db import Base, Refusal, UTCDateTime
from tonrail.errors import InvalidRequest, ServiceUnavailable
from tonrail.events.service import emit

SWITCHES = ("payments_paused", "maintenance")


class OpsSwitch(Base):
    __tablename__ = "ops_switches"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(String(80))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


async def is_on(session: AsyncSession, name: str) -> bool:
    row = await session.get(OpsSwitch, name)
    return bool(row and row.enabled)


async def set_switch(
    session: AsyncSession, name: str, enabled: bool, actor: str, reason: str | None = None
) -> None:
    """Flip a switch (in the caller's transaction), with an outbox event for the audit trail."""
    if name not in SWITCHES:
        raise InvalidRequest(f"unknown switch {name!r}; known: {', '.join(SWITCHES)}")
    row = await session.get(OpsSwitch, name, with_for_update=True)
    now = clock.now()
    if row is None:
        session.add(
            OpsSwitch(name=name, enabled=enabled, reason=reason, changed_by=actor, changed_at=now)
        )
    else:
        row.enabled, row.reason, row.changed_by, row.changed_at = enabled, reason, actor, now
    emit(
        session,
        f"ops.{name}.{'on' if enabled else 'off'}",
        "system",
        {"switch": name, "enabled": enabled, "actor": actor, "reason": reason},
    )


async def all_switches(session: AsyncSession) -> dict[str, bool]:
    rows = (await session.execute(select(OpsSwitch))).scalars().all()
    state = dict.fromkeys(SWITCHES, False)
    state.update({r.name: r.enabled for r in rows})
    return state


def switch_refusal(name: str) -> Refusal:
    """`is_on(name)` as SQL, for a write that refuses itself (`db.write_at_once`) while the
    switch is on."""
    return Refusal(("switch_on",), _switch_on, {"name": name})


def _switch_on(prefix: str) -> ColumnElement[bool]:
    name = bindparam(prefix + "name", type_=OpsSwitch.__table__.c.name.type)
    return exists().where(OpsSwitch.name == name, OpsSwitch.enabled.is_(True))


async def refuse_in_maintenance(session: AsyncSession) -> None:
    """New payments are refused (503 `maintenance`) while maintenance mode is on."""
    if await is_on(session, "maintenance"):
        raise ServiceUnavailable(
            "tonrail is in maintenance mode: no new payments are accepted; retry later",
            code="maintenance",
        )
