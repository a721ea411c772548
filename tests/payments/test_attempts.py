"""Attempts: numbering, one live attempt at most (enforced by the database too), moves."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.kit.test_claims import _queued_payouts
from tonrail import clock
from tonrail.db import Database
from tonrail.errors import Conflict, IllegalTransition
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.transitions import move_attempt, start_attempt


async def test_numbering_and_single_live_attempt(db: Database) -> None:
    [pid] = await _queued_payouts(db, 1)
    async with db.transaction() as session:
        payment = await session.get(Payment, pid)
        assert payment is not None
        first = await start_attempt(session, payment, "ton")
        assert (first.number, first.idempotency_key, first.status) == (1, f"{pid}:1", "created")
        with pytest.raises(Conflict) as err:
            await start_attempt(session, payment, "stripe")
        assert err.value.code == "attempt_live"
        await move_attempt(session, first, "submitted", provider_ref="hash1")
        await move_attempt(session, first, "unknown")
        with pytest.raises(Conflict):
            await start_attempt(session, payment, "stripe")
        await move_attempt(session, first, "failed", error_code="bounced")
        second = await start_attempt(session, payment, "stripe")
        assert second.number == 2
        with pytest.raises(IllegalTransition):
            await move_attempt(session, first, "confirmed")


async def test_database_refuses_a_second_live_attempt(db: Database) -> None:
    [pid] = await _queued_payouts(db, 1)
    now = clock.now()

    def row(n: int) -> Attempt:
        return Attempt(
            id=f"att_{n}",
            payment_id=pid,
            number=n,
            rail="ton",
            status="submitted",
            idempotency_key=f"{pid}:{n}",
            details={},
            created_at=now,
            updated_at=now,
        )

    async with db.transaction() as session:
        session.add(row(1))
    with pytest.raises(Exception, match=r"(?i)unique"):
        async with db.transaction() as session:
            session.add(row(2))
    async with db.transaction() as session:
        rows = (await session.execute(select(Attempt))).scalars().all()
    assert [a.number for a in rows] == [1]
