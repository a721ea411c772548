"""Provider webhooks: verify, store first (unique on source + event id), then process.

Processing never trusts the event's payload for money: it asks the rail for the current
state of the object (`poll`), so events may arrive twice and in any order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tonrail import clock
from tonrail.db import Database
from tonrail.errors import NotFound, ServiceUnavailable
from tonrail.ids import new_id
from tonrail.payments.attempts import attempt_view, payment_view
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.service import PaymentService
from tonrail.processing.models import ProviderEvent
from tonrail.processing.outcomes import attempt_by_ref, record_poll
from tonrail.processing.payer_screening import screen_payer
from tonrail.processing.states import EventStatus
from tonrail.rails.backup import ProviderEventIn
from tonrail.rails.registry import BackupRail
from tonrail.states import PollStatus

log = structlog.get_logger(__name__)


class ProviderWebhooks:
    """Receives Stripe and PayPal webhooks for the configured rails."""

    def __init__(self, db: Database, payments: PaymentService, rails: Mapping[str, BackupRail]):
        self.db = db
        self.payments = payments
        self.rails = rails

    async def receive(self, source: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """Verify and store the event, then process it; a duplicate is acknowledged as such."""
        rail = self.rails.get(source)
        if rail is None:
            raise NotFound(f"the {source} rail is not configured", code="rail_not_configured")
        event = await rail.verify_webhook(body, headers)
        event_id, duplicate = await self.store(event)
        outcome = await self.process(event_id)
        return {
            "received": True,
            "id": event.external_id,
            "duplicate": duplicate,
            "outcome": outcome,
        }

    async def catch_up_stripe(self, limit: int = 100) -> dict[str, int]:
        """Store and process Stripe's recent events from its API: webhooks that never
        arrived are handled like late deliveries; those already stored are duplicates."""
        rail = self.rails.get("stripe")
        if rail is None:
            raise NotFound("the stripe rail is not configured", code="rail_not_configured")
        counts = {"events": 0, "new": 0}
        for event in await rail.recent_events(limit):  # type: ignore[attr-defined]
            event_id, duplicate = await self.store(event)
            counts["events"] += 1
            counts["new"] += 0 if duplicate else 1
            await self.process(event_id)
        return counts

    async def catch_up_new(self) -> int:
        """`catch_up_stripe` for the worker's `stripe_catch_up` loop: how many were new."""
        return (await self.catch_up_stripe())["new"]

    async def store(self, event: ProviderEventIn) -> tuple[str, bool]:
        """Insert the event once; returns (our id, whether it was already stored)."""
        try:
            async with self.db.transaction() as session:
                existing = await self._find(session, event.source, event.external_id)
                if existing is not None:
                    return existing.id, True
                # A new row, field by field: alike other inserts in shape only.
                row = ProviderEvent(
                    id=new_id("pev"),
                    source=event.source,
                    external_id=event.external_id,
                    type=event.type,
                    object_ref=event.object_ref,
                    payload=event.payload,
                    status=EventStatus.RECEIVED,
                    process_count=0,
                    received_at=clock.now(),
                )
                session.add(row)
                await session.flush()
                return row.id, False
        except IntegrityError:
            # The same event raced in through another request, which stored it first.
            async with self.db.transaction() as session:
                existing = await self._find(session, event.source, event.external_id)
                assert existing is not None
                return existing.id, True

    async def process(self, event_id: str) -> str:
        """Bring the attempt the event is about up to date with the provider."""
        async with self.db.transaction() as session:
            row = await session.get(ProviderEvent, event_id)
            assert row is not None
            if row.status in (EventStatus.PROCESSED, EventStatus.IGNORED):
                return row.outcome or row.status
            attempt = (
                await attempt_by_ref(session, row.source, row.object_ref)
                if row.object_ref
                else None
            )
            if attempt is None:
                row.status = EventStatus.IGNORED
                row.outcome = "no_matching_attempt"
                row.process_count += 1
                row.processed_at = clock.now()
                return "no_matching_attempt"
            payment = await session.get(Payment, attempt.payment_id)
            assert payment is not None
            pview, aview, attempt_id = payment_view(payment), attempt_view(attempt), attempt.id
        rail = self.rails[row.source]
        try:
            result = await rail.poll(pview, aview)
        except Exception as exc:
            log.warning(
                "webhook.poll_failed",
                provider_event=row.external_id,
                payment_id=pview.id,
                error=repr(exc),
            )
            await self._finish(row.id, EventStatus.RECEIVED, f"poll_failed: {type(exc).__name__}")
            raise ServiceUnavailable(
                f"{row.source} could not be reached to confirm event {row.external_id}; "
                "it is stored and will be processed on redelivery",
                code="provider_unavailable",
            ) from exc
        # An invoice's payer is screened before the transaction (a provider may be slow).
        screened = (
            await screen_payer(
                self.payments,
                pview.direction,
                pview.asset,
                pview.amount,
                row.source,
                result.details,
            )
            if result.status == PollStatus.CONFIRMED
            else None
        )
        async with self.db.transaction() as session:
            locked = await session.get(Attempt, attempt_id, with_for_update=True)
            assert locked is not None
            outcome = await record_poll(session, self.payments, locked, result, screened=screened)
            event = await session.get(ProviderEvent, event_id, with_for_update=True)
            assert event is not None
            event.status = EventStatus.PROCESSED
            event.outcome = outcome
            event.process_count += 1
            event.processed_at = clock.now()
        return outcome

    async def _finish(self, event_id: str, status: EventStatus, outcome: str) -> None:
        async with self.db.transaction() as session:
            event = await session.get(ProviderEvent, event_id, with_for_update=True)
            assert event is not None
            event.status = status
            event.outcome = outcome
            event.process_count += 1
            event.processed_at = clock.now()

    @staticmethod
    async def _find(session: Any, source: str, external_id: str) -> ProviderEvent | None:
        stmt = select(ProviderEvent).where(
            ProviderEvent.source == source, ProviderEvent.external_id == external_id
        )
        result: ProviderEvent | None = (await session.execute(stmt)).scalar_one_or_none()
        return result
