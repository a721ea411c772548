"""The pause switch holds the backup rails too: nothing is submitted while payments are paused
(not even an attempt a crash left `created`); polling what was already sent goes on."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select, update

from tests.helpers import DEST
from tonrail.db import Database
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.service import PaymentService
from tonrail.payments.transitions import move_payment, start_attempt
from tonrail.processing.backup_loop import BackupContext, backup_round
from tonrail.rails.base import AttemptView, PaymentView, PollResult, SubmitResult
from tonrail.rails.router import RoutingPolicy
from tonrail.security.switches import set_switch
from tonrail.settings import Settings


class RecordingRail:
    """A backup rail that records what it is asked to do and always accepts."""

    name = "stripe"

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.polled: list[str] = []

    async def prepare(self, payment: PaymentView, attempt: AttemptView) -> dict[str, Any]:
        return {}

    async def submit(self, payment: PaymentView, attempt: AttemptView) -> SubmitResult:
        self.submitted.append(attempt.idempotency_key)
        return SubmitResult("submitted", provider_ref=f"tr_{attempt.number}")

    async def poll(self, payment: PaymentView, attempt: AttemptView) -> PollResult:
        self.polled.append(attempt.idempotency_key)
        return PollResult("pending")


async def _pause(db: Database, on: bool) -> None:
    async with db.transaction() as session:
        await set_switch(session, "payments_paused", on, "admin:test", "test" if on else None)


async def test_paused_backup_rails_submit_nothing_until_resumed(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database, settings: Settings
) -> None:
    fake = RecordingRail()
    ctx = BackupContext(
        db, settings, PaymentService(db, settings), {"stripe": fake}, RoutingPolicy(), "w-1"
    )  # type: ignore[dict-item]
    ids = []
    for _ in range(2):
        r = await client.post(
            "/v1/payouts", json={"amount": "2", "asset": "TON", "destination": DEST}, headers=auth
        )
        ids.append(r.json()["id"])
    routed, crashed = ids
    async with db.transaction() as session:
        await session.execute(
            update(Payment).where(Payment.id.in_(ids)).values(route="stripe", route_reason="test")
        )
        # A worker died after creating this attempt and before submitting it.
        p = await session.get(Payment, crashed)
        assert p is not None
        await move_payment(session, p, "processing", actor="system:test")
        await start_attempt(session, p, "stripe")
    await _pause(db, True)
    for _ in range(3):
        await backup_round(ctx)
    assert fake.submitted == []
    async with db.transaction() as session:
        statuses = dict((await session.execute(select(Payment.id, Payment.status))).all())
        attempts = (await session.execute(select(Attempt.payment_id, Attempt.status))).all()
    assert statuses[routed] == "queued"
    assert attempts == [(crashed, "created")]

    await _pause(db, False)
    await backup_round(ctx)
    assert sorted(fake.submitted) == sorted([f"{crashed}:1", f"{routed}:1"])
    async with db.transaction() as session:
        attempts = (await session.execute(select(Attempt.payment_id, Attempt.status))).all()
    assert sorted(attempts) == sorted([(crashed, "submitted"), (routed, "submitted")])

    # Paused again: what was sent is still followed.
    await _pause(db, True)
    await backup_round(ctx)
    assert len(fake.polled) >= 2 and len(fake.submitted) == 2
