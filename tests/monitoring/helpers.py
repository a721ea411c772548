"""Making payments and attempt outcomes the way the rails record them."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.helpers import DEST
from tonrail import clock
from tonrail.db import Database
from tonrail.ids import new_id
from tonrail.payments.models import Payment
from tonrail.payments.transitions import move_attempt, move_payment, start_attempt
from tonrail.settings import Settings


async def payout(
    db: Database,
    *,
    status: str = "queued",
    counterparty: str = DEST,
    key: str = "key_x",
    created_at: datetime | None = None,
    target: int = 60,
    amount: int = 1_000_000_000,
) -> str:
    now = created_at or clock.now()
    pid = new_id("pay")
    async with db.transaction() as session:
        session.add(
            Payment(
                id=pid,
                account_id="acct_test",
                direction="out",
                status=status,
                asset="TON",
                amount=amount,
                usdt_equivalent=amount // 200,
                rate="5",
                rate_at=now,
                counterparty=counterparty,
                priority="normal",
                target_confirmation_seconds=target,
                metadata_={},
                requested_by=f"key:{key}",
                created_at=now,
                updated_at=now,
            )
        )
    return pid


async def attempt_outcome(
    db: Database,
    payment_id: str,
    outcome: str,
    *,
    rail: str = "ton",
    error_code: str | None = None,
    fee: int | None = None,
) -> None:
    """Start an attempt, submit it, and confirm or fail it (as a rail does)."""
    async with db.transaction() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        attempt = await start_attempt(session, payment, rail)
        await move_attempt(session, attempt, "submitted", provider_ref=new_id("ref"))
        values: dict[str, object] = {}
        if fee is not None:
            values.update(fee_amount=fee, fee_asset="TON")
        if outcome == "failed":
            values.update(error_code=error_code or "bounced", error_message="bounced")
        await move_attempt(session, attempt, outcome, **values)


async def finish(db: Database, settings: Settings, payment_id: str, status: str) -> None:
    """Take a queued payout through processing to `status` with the payment service."""

    async with db.transaction() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        await move_payment(session, payment, "processing", actor="test")
        await move_payment(
            session,
            payment,
            status,
            actor="test",
            failure_code="bounced" if status == "failed" else None,
        )


def later(seconds: float) -> datetime:
    return clock.now() + timedelta(seconds=seconds)
