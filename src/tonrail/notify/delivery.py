"""Sending deliveries: leased claims of due deliveries, one signed POST each (Standard
Webhooks), every attempt stored, then delivered / retried on the schedule / failed.

- 2xx: delivered. 410 Gone: failed, and the endpoint is disabled. Anything else, a timeout
  (WEBHOOK_TIMEOUT_SECONDS, the whole request) or a refused address: tried again on the
  schedule (schedule.py) until it runs out.
- Per endpoint and payment, one delivery at a time, in event order: a delivery waits while
  an earlier event of the same payment is pending for the same endpoint.
- At least once: the lease outlives the request, so two workers do not send the same
  delivery; a worker that dies after sending and before recording leaves it to be sent
  again once its lease ends (the receiver de-duplicates on `webhook-id`, the event id).
- An endpoint failing for WEBHOOK_DISABLE_AFTER_SECONDS (no 2xx since its first failure)
  is disabled; monitoring raises `webhook_endpoint_disabled` for it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import exists, func, select
from sqlalchemy.orm import aliased

import tonrail
from tonrail import clock
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ids import new_id
from tonrail.kit.claims import claim
from tonrail.kit.faults import crashpoint
from tonrail.notify import signing
from tonrail.notify.destinations import DestinationRefused, target
from tonrail.notify.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tonrail.notify.schedule import retry_delay
from tonrail.notify.states import DeliveryStatus, DisabledReason, EndpointStatus
from tonrail.settings import Settings

RESPONSE_BYTES = 1024  # how much of an answer is kept with its attempt
USER_AGENT = f"tonrail-webhooks/{tonrail.__version__}"


@dataclass(frozen=True)
class Message:
    """What one delivery sends: to whom, signed with which secrets, which bytes."""

    delivery_id: str
    url: str
    secrets: tuple[str, ...]
    event_id: str
    body: bytes


@dataclass(frozen=True)
class Outcome:
    delivery_id: str
    at: datetime
    latency_ms: int
    status: int | None
    body: str | None
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def message_body(event: OutboxEvent) -> bytes:
    """The Standard Webhooks payload `{type, timestamp, data}`, the same bytes every time."""
    payload = {
        "type": event.type,
        "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": event.data if event.data is not None else {},
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> tuple[str, ...]:
    """The endpoint's secret, and its previous one while the rotation overlap lasts."""
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        return (endpoint.secret, endpoint.previous_secret)
    return (endpoint.secret,)


def lease_seconds(settings: Settings) -> float:
    """Longer than a whole round can take (every request timing out, WEBHOOK_CONCURRENCY at
    a time), so no other worker sends a claimed delivery meanwhile."""
    waves = -(-settings.worker_batch_size // max(settings.webhook_concurrency, 1))
    return settings.worker_lease_seconds + settings.webhook_timeout_seconds * (waves + 1)


async def _claim_due(db: Database, settings: Settings, worker_id: str) -> list[Message]:
    now = clock.now()
    earlier = aliased(WebhookDelivery)
    behind_another = (
        exists()
        .where(
            earlier.endpoint_id == WebhookDelivery.endpoint_id,
            earlier.payment_id == WebhookDelivery.payment_id,
            earlier.status == DeliveryStatus.PENDING,
            earlier.event_seq < WebhookDelivery.event_seq,
        )
        .correlate(WebhookDelivery)
    )
    live = select(WebhookEndpoint.id).where(
        WebhookEndpoint.status == EndpointStatus.ENABLED, WebhookEndpoint.deleted_at.is_(None)
    )
    async with db.transaction() as session:
        due = await claim(
            session,
            WebhookDelivery,
            (WebhookDelivery.status == DeliveryStatus.PENDING)
            & (WebhookDelivery.next_attempt_at <= now)
            & WebhookDelivery.endpoint_id.in_(live)
            & ~behind_another,
            worker_id=worker_id,
            lease_seconds=lease_seconds(settings),
            limit=settings.worker_batch_size,
            order_by=(WebhookDelivery.event_seq,),
        )
        if not due:
            return []
        endpoints = {
            e.id: e
            for e in (
                await session.execute(
                    select(WebhookEndpoint).where(
                        WebhookEndpoint.id.in_({d.endpoint_id for d in due})
                    )
                )
            ).scalars()
        }
        events = {
            e.id: e
            for e in (
                await session.execute(
                    select(OutboxEvent).where(OutboxEvent.id.in_({d.event_id for d in due}))
                )
            ).scalars()
        }
        return [
            Message(
                d.id,
                endpoints[d.endpoint_id].url,
                signing_secrets(endpoints[d.endpoint_id], now),
                d.event_id,
                message_body(events[d.event_id]),
            )
            for d in due
        ]


async def send(http: httpx.AsyncClient, settings: Settings, message: Message) -> Outcome:
    """One signed POST to the checked address of the endpoint; never raises."""
    at = clock.now()
    started = time.monotonic()

    def done(status: int | None, body: str | None, error: str | None) -> Outcome:
        latency = round((time.monotonic() - started) * 1000)
        return Outcome(message.delivery_id, at, latency, status, body, error and error[:300])

    try:
        checked = await target(message.url, settings)
    except DestinationRefused as exc:
        return done(None, None, f"refused: {exc}")
    headers = {
        **signing.headers(message.secrets, message.event_id, int(at.timestamp()), message.body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": checked.host_header,
    }
    extensions = {"sni_hostname": checked.server_name} if checked.server_name else None
    seconds = settings.webhook_timeout_seconds
    try:
        async with asyncio.timeout(seconds):
            async with http.stream(
                "POST",
                checked.url,
                content=message.body,
                headers=headers,
                extensions=extensions,
                timeout=seconds,
                follow_redirects=False,
            ) as response:
                first = b""
                async for chunk in response.aiter_raw():
                    first += chunk
                    if len(first) >= RESPONSE_BYTES:
                        break
                text = first[:RESPONSE_BYTES].decode("utf-8", errors="replace")
                return done(response.status_code, text, None)
    except (TimeoutError, httpx.TimeoutException):
        return done(None, None, f"timeout after {seconds:g} s")
    except httpx.HTTPError as exc:
        return done(None, None, f"{type(exc).__name__}: {exc}")


async def record(db: Database, settings: Settings, outcome: Outcome) -> None:
    """Store the attempt and move the delivery (and, by its answers, the endpoint)."""
    async with db.transaction() as session:
        endpoint_id = (
            await session.execute(
                select(WebhookDelivery.endpoint_id).where(WebhookDelivery.id == outcome.delivery_id)
            )
        ).scalar_one()
        # The endpoint first, then the delivery: the order `delete` takes them in.
        endpoint = await session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
        delivery = await session.get(WebhookDelivery, outcome.delivery_id, with_for_update=True)
        assert endpoint is not None and delivery is not None
        number = (
            await session.execute(
                select(func.coalesce(func.max(WebhookAttempt.number), 0)).where(
                    WebhookAttempt.delivery_id == delivery.id
                )
            )
        ).scalar_one() + 1
        session.add(
            WebhookAttempt(
                id=new_id("wha"),
                delivery_id=delivery.id,
                number=number,
                attempted_at=outcome.at,
                latency_ms=outcome.latency_ms,
                succeeded=outcome.succeeded,
                response_status=outcome.status,
                response_body=outcome.body,
                error=outcome.error,
                trigger=f"resend by {delivery.resend_by}"[:64]
                if delivery.resend_by
                else "schedule",
            )
        )
        delivery.attempts += 1
        delivery.last_attempt_at = outcome.at
        delivery.last_response_status = outcome.status
        delivery.resend_by = delivery.locked_by = delivery.locked_until = None
        if delivery.status != DeliveryStatus.PENDING:
            return  # canceled (endpoint deleted) while in flight: on record, nothing more
        now = clock.now()
        if outcome.succeeded:
            delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, outcome.at
            endpoint.failing_since = None
            return
        if outcome.status == 410:
            delivery.status = DeliveryStatus.FAILED
            _disable(endpoint, DisabledReason.GONE, now)
            return
        delay = retry_delay(delivery.attempts)
        if delay is None:
            delivery.status = DeliveryStatus.FAILED
        else:
            delivery.next_attempt_at = now + timedelta(seconds=delay)
        endpoint.failing_since = endpoint.failing_since or outcome.at
        failing_for = (now - endpoint.failing_since).total_seconds()
        if failing_for >= settings.webhook_disable_after_seconds:
            _disable(endpoint, DisabledReason.FAILING, now)


def _disable(endpoint: WebhookEndpoint, reason: DisabledReason, now: datetime) -> None:
    if endpoint.status == EndpointStatus.ENABLED:
        endpoint.status, endpoint.disabled_reason, endpoint.disabled_at = (
            EndpointStatus.DISABLED,
            reason,
            now,
        )
        endpoint.updated_at = now


async def backlog(db: Database) -> tuple[int, float]:
    """How many deliveries are pending, and the age in seconds of the oldest."""
    async with db.transaction() as session:
        count, oldest = (
            await session.execute(
                select(func.count(), func.min(WebhookDelivery.created_at)).where(
                    WebhookDelivery.status == DeliveryStatus.PENDING
                )
            )
        ).one()
    age = (clock.now() - oldest).total_seconds() if oldest is not None else 0.0
    return int(count), max(age, 0.0)


def http_client() -> httpx.AsyncClient:
    """No proxies from the environment (the request must go to the checked address)."""
    return httpx.AsyncClient(trust_env=False, follow_redirects=False)


async def deliver_round(
    db: Database, settings: Settings, worker_id: str, http: httpx.AsyncClient | None = None
) -> int:
    """Claim the due deliveries, send them (WEBHOOK_CONCURRENCY at once), record each."""
    messages = await _claim_due(db, settings, worker_id)
    if not messages:
        return 0
    if http is None:
        async with http_client() as own:
            return await _send_and_record(db, settings, messages, own)
    return await _send_and_record(db, settings, messages, http)


async def _send_and_record(
    db: Database, settings: Settings, messages: list[Message], http: httpx.AsyncClient
) -> int:
    gate = asyncio.Semaphore(max(settings.webhook_concurrency, 1))

    async def one(message: Message) -> Outcome:
        async with gate:
            return await send(http, settings, message)

    outcomes: Sequence[Outcome] = await asyncio.gather(*(one(m) for m in messages))
    crashpoint(settings, "webhooks.after_send")
    for outcome in outcomes:
        await record(db, settings, outcome)
    return len(outcomes)
