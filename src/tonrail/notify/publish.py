"""Publishing the outbox: each new event gets the data merchants receive (the payment as
the API returns it) and one delivery per enabled endpoint of its account that subscribed to
its type, in one transaction; a crash before the commit leaves the event to be published
again, and the unique (endpoint, event) pair keeps it to one delivery each.

Per payment, events are published in order: an event waits while an earlier one of the
same payment is unpublished (held by another worker's lease, say). This relies on a
payment's sequence numbers following its commits, which holds for status moves: their
compare-and-set updates of the payment row serialize them."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import structlog
from sqlalchemy import exists, select
from sqlalchemy.orm import aliased

from tonrail import clock
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ids import new_id
from tonrail.kit.claims import claim
from tonrail.kit.faults import crashpoint
from tonrail.notify.models import WebhookDelivery, WebhookEndpoint
from tonrail.notify.schemas import EVENT_FAMILIES, subscribed
from tonrail.notify.states import DeliveryStatus, EndpointStatus
from tonrail.payments.service import PaymentService
from tonrail.settings import Settings

log = structlog.get_logger(__name__)

# The payment kinds whose events carry the payment object as their data.
PAYMENT_FAMILIES = ("payout", "invoice")


async def publish_round(
    db: Database, settings: Settings, payments: PaymentService, worker_id: str
) -> int:
    """Publish up to WORKER_BATCH_SIZE events, oldest first; returns how many."""
    earlier = aliased(OutboxEvent)
    behind_another = (
        exists()
        .where(
            earlier.payment_id == OutboxEvent.payment_id,
            earlier.published_at.is_(None),
            earlier.seq < OutboxEvent.seq,
        )
        .correlate(OutboxEvent)
    )
    async with db.transaction() as session:
        events = await claim(
            session,
            OutboxEvent,
            OutboxEvent.published_at.is_(None) & ~behind_another,
            worker_id=worker_id,
            lease_seconds=settings.worker_lease_seconds,
            limit=settings.worker_batch_size,
            order_by=(OutboxEvent.seq,),
        )
        if not events:
            return 0
        accounts = {e.account_id for e in events}
        endpoints: dict[str, list[WebhookEndpoint]] = defaultdict(list)
        for endpoint in (
            await session.execute(
                select(WebhookEndpoint).where(
                    WebhookEndpoint.account_id.in_(accounts),
                    WebhookEndpoint.status == EndpointStatus.ENABLED,
                    WebhookEndpoint.deleted_at.is_(None),
                )
            )
        ).scalars():
            endpoints[endpoint.account_id].append(endpoint)
        now = clock.now()
        held: set[str] = set()  # payments whose event could not be read: later ones wait too
        published = 0
        for event in sorted(events, key=lambda e: e.seq):
            family = event.type.split(".", 1)[0]
            data: dict[str, Any] | None = None
            if event.payment_id is not None and event.payment_id in held:
                continue
            if event.payment_id is not None and family in PAYMENT_FAMILIES:
                try:
                    async with session.begin_nested():
                        data = await payments.view(session, event.payment_id)
                except Exception:
                    # One unreadable payment must not stop the outbox: this event keeps
                    # its lease and is tried again when it ends; the others go on.
                    log.exception("publishing an event failed", event_id=event.id)
                    held.add(event.payment_id)
                    continue
            published += 1
            event.data = data if data is not None else dict(event.payload)
            event.published_at = now
            event.locked_by = event.locked_until = None
            if family not in EVENT_FAMILIES:
                continue  # operators' events (ops.*, deposit.*, hot_wallet.*) stay internal
            for endpoint in endpoints.get(event.account_id, []):
                if subscribed(endpoint.enabled_events, event.type):
                    session.add(
                        WebhookDelivery(
                            id=new_id("whd"),
                            endpoint_id=endpoint.id,
                            event_id=event.id,
                            event_seq=event.seq,
                            event_type=event.type,
                            payment_id=event.payment_id,
                            status=DeliveryStatus.PENDING,
                            attempts=0,
                            next_attempt_at=now,
                            created_at=now,
                        )
                    )
        crashpoint(settings, "webhooks.before_publish_commit")
        return published
