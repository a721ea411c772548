"""Operator switches: maintenance refuses new payments; the CLI flips them with a trail."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.helpers import DEST, row_counts
from tonrail.cli import app
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.security.switches import all_switches
from tonrail.settings import get_settings


async def test_maintenance_refuses_new_payments(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    runner = CliRunner()
    on = await asyncio.to_thread(
        runner.invoke, app, ["ops", "maintenance", "--on", "--reason", "db upgrade"]
    )
    assert on.exit_code == 0, on.output
    before = await row_counts(db)
    for path, body in (
        ("/v1/payouts", {"amount": "1", "asset": "TON", "destination": DEST}),
        ("/v1/invoices", {"amount": "1", "asset": "TON"}),
    ):
        r = await client.post(path, json=body, headers=auth)
        assert r.status_code == 503 and r.json()["error"]["code"] == "maintenance"
    assert await row_counts(db) == before
    off = await asyncio.to_thread(runner.invoke, app, ["ops", "maintenance", "--off"])
    assert off.exit_code == 0
    r = await client.post("/v1/invoices", json={"amount": "1", "asset": "TON"}, headers=auth)
    assert r.status_code == 201
    paused = await asyncio.to_thread(runner.invoke, app, ["ops", "pause", "--reason", "x"])
    assert paused.exit_code == 0
    async with db.transaction() as session:
        assert await all_switches(session) == {"payments_paused": True, "maintenance": False}
        types = (
            (await session.execute(select(OutboxEvent.type).where(OutboxEvent.type.like("ops.%"))))
            .scalars()
            .all()
        )
    assert types == ["ops.maintenance.on", "ops.maintenance.off", "ops.payments_paused.on"]
    get_settings.cache_clear()
