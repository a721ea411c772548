"""The snapshot behind `payout_unknown`: TON attempts in `unknown` only (a backup rail's is
resolved by polling its provider), on both databases."""

from __future__ import annotations

import httpx

from tonrail import clock
from tonrail.db import Database
from tonrail.monitoring.snapshot import build_snapshot
from tonrail.payments.models import Payment
from tonrail.payments.transitions import move_attempt, start_attempt
from tonrail.settings import Settings

PAYEE = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"


async def unknown_attempt_on(
    db: Database, client: httpx.AsyncClient, auth: dict[str, str], rail: str
) -> str:
    r = await client.post(
        "/v1/payouts", json={"amount": "1", "asset": "TON", "destination": PAYEE}, headers=auth
    )
    assert r.status_code == 201, r.text
    pid = str(r.json()["id"])
    async with db.transaction() as session:
        payment = await session.get(Payment, pid)
        assert payment is not None
        attempt = await start_attempt(session, payment, rail, {})
        await move_attempt(session, attempt, "submitted", provider_ref=f"ref-{rail}")
        await move_attempt(session, attempt, "unknown")
    return pid


async def test_only_ton_attempts_count_as_unknown_payouts(
    db: Database, client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    await unknown_attempt_on(db, client, auth, "stripe")
    async with db.transaction() as session:
        assert (await build_snapshot(session, settings, clock.now())).unknown_payouts == (0, [])
    ton = await unknown_attempt_on(db, client, auth, "ton")
    async with db.transaction() as session:
        assert (await build_snapshot(session, settings, clock.now())).unknown_payouts == (1, [ton])
