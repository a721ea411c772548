"""Use cases of webhook endpoints: create (secret shown once), read, change, delete, rotate
the secret, list deliveries and resend one. Each runs in one transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.db import Database
from tonrail.errors import Conflict, InvalidRequest, NotFound
from tonrail.ids import new_id
from tonrail.notify.destinations import check_url
from tonrail.notify.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tonrail.notify.schemas import (
    DeliveryOut,
    EndpointCreate,
    EndpointOut,
    EndpointUpdate,
    SecretRotation,
    check_patterns,
)
from tonrail.notify.signing import new_secret
from tonrail.notify.states import DeliveryStatus, DisabledReason, EndpointStatus
from tonrail.security import idempotency
from tonrail.security.idempotency import IdempotencyKey
from tonrail.settings import Settings

MAX_ENDPOINTS_PER_ACCOUNT = 16


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False


async def _once(
    db: Database,
    ikey: IdempotencyKey | None,
    status: int,
    work: Callable[[AsyncSession], Awaitable[dict[str, Any]]],
) -> Answer:
    """`work` once per Idempotency-Key, in one transaction with the key's record."""
    for _ in range(3):
        try:
            async with db.transaction() as session:
                if ikey is not None:
                    record = await idempotency.find(session, ikey)
                    if record is not None:
                        return Answer(record.status_code, record.response_body, True)
                body = await work(session)
                if ikey is not None:
                    idempotency.save(session, ikey, status, body)
                return Answer(status, body)
        except IntegrityError:
            continue
    raise Conflict("the request raced with another one; retry it", code="concurrent_request")


async def _endpoint(session: AsyncSession, account_id: str, endpoint_id: str) -> WebhookEndpoint:
    row = await session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
    if row is None or row.account_id != account_id or row.deleted_at is not None:
        raise NotFound(f"no webhook endpoint {endpoint_id!r}", param="id")
    return row


def _page_limit(limit: int, settings: Settings) -> None:
    if not 1 <= limit <= settings.page_max_limit:
        raise InvalidRequest(
            f"limit must be between 1 and {settings.page_max_limit}", param="limit"
        )


class WebhookEndpoints:
    """The webhook endpoints of merchants (docs/WEBHOOKS.md)."""

    def __init__(self, db: Database, settings: Settings):
        self.db = db
        self.settings = settings

    async def create(
        self, account_id: str, req: EndpointCreate, ikey: IdempotencyKey | None
    ) -> Answer:
        """A new enabled endpoint; the answer carries its signing secret, the only time."""
        url = check_url(req.url, self.settings)
        events = check_patterns(req.enabled_events)

        async def work(session: AsyncSession) -> dict[str, Any]:
            count = len(
                (
                    await session.execute(
                        select(WebhookEndpoint.id).where(
                            WebhookEndpoint.account_id == account_id,
                            WebhookEndpoint.deleted_at.is_(None),
                        )
                    )
                ).all()
            )
            if count >= MAX_ENDPOINTS_PER_ACCOUNT:
                raise Conflict(
                    f"an account has at most {MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints",
                    code="webhook_endpoints_limit",
                )
            now = clock.now()
            secret = new_secret()
            row = WebhookEndpoint(
                id=new_id("we"),
                account_id=account_id,
                url=url,
                description=req.description,
                enabled_events=events,
                status=EndpointStatus.ENABLED,
                secret=secret,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            await session.flush()
            return EndpointOut.of(row, secret).model_dump(mode="json")

        return await _once(self.db, ikey, 201, work)

    async def get(self, account_id: str, endpoint_id: str) -> dict[str, Any]:
        async with self.db.transaction() as session:
            return EndpointOut.of(await _endpoint(session, account_id, endpoint_id)).model_dump(
                mode="json"
            )

    async def list(self, account_id: str, limit: int, starting_after: str | None) -> dict[str, Any]:
        _page_limit(limit, self.settings)
        async with self.db.transaction() as session:
            stmt = select(WebhookEndpoint).where(
                WebhookEndpoint.account_id == account_id, WebhookEndpoint.deleted_at.is_(None)
            )
            if starting_after is not None:
                cursor = await session.get(WebhookEndpoint, starting_after)
                if cursor is None or cursor.account_id != account_id:
                    raise InvalidRequest(
                        f"starting_after {starting_after!r} is not one of your endpoints",
                        param="starting_after",
                        code="cursor_invalid",
                    )
                stmt = stmt.where(WebhookEndpoint.id < starting_after)
            rows = list(
                (await session.execute(stmt.order_by(WebhookEndpoint.id.desc()).limit(limit + 1)))
                .scalars()
                .all()
            )
        return {
            "object": "list",
            "data": [EndpointOut.of(r).model_dump(mode="json") for r in rows[:limit]],
            "has_more": len(rows) > limit,
        }

    async def update(
        self, account_id: str, endpoint_id: str, req: EndpointUpdate
    ) -> dict[str, Any]:
        """Change the URL, the event types, the description or the status. Enabling an
        endpoint clears its failure record; its pending deliveries go out again."""
        url = check_url(req.url, self.settings) if req.url is not None else None
        events = check_patterns(req.enabled_events) if req.enabled_events is not None else None
        async with self.db.transaction() as session:
            row = await _endpoint(session, account_id, endpoint_id)
            now = clock.now()
            if url is not None:
                row.url = url
            if events is not None:
                row.enabled_events = events
            if "description" in req.model_fields_set:
                row.description = req.description
            if req.status == EndpointStatus.ENABLED and row.status != EndpointStatus.ENABLED:
                row.status, row.disabled_reason, row.disabled_at = (
                    EndpointStatus.ENABLED,
                    None,
                    None,
                )
                row.failing_since = None
            elif req.status == EndpointStatus.DISABLED and row.status != EndpointStatus.DISABLED:
                row.status, row.disabled_reason = EndpointStatus.DISABLED, DisabledReason.BY_OWNER
                row.disabled_at = now
            row.updated_at = now
            await session.flush()
            return EndpointOut.of(row).model_dump(mode="json")

    async def delete(self, account_id: str, endpoint_id: str) -> dict[str, Any]:
        """Remove the endpoint: nothing more is sent to it; its pending deliveries are
        canceled and its history stays (deliveries, attempts) for the record."""
        async with self.db.transaction() as session:
            row = await _endpoint(session, account_id, endpoint_id)
            now = clock.now()
            row.deleted_at = row.updated_at = now
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.endpoint_id == row.id,
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                )
                .values(status=DeliveryStatus.CANCELED, locked_by=None, locked_until=None)
                .execution_options(synchronize_session=False)
            )
            return {"object": "webhook_endpoint", "id": row.id, "deleted": True}

    async def rotate_secret(
        self, account_id: str, endpoint_id: str, req: SecretRotation, ikey: IdempotencyKey | None
    ) -> Answer:
        """A new signing secret (shown once); the old one keeps signing for the overlap, so
        each delivery carries both signatures until the receiver has switched."""
        overlap = (
            req.overlap_seconds
            if req.overlap_seconds is not None
            else self.settings.webhook_secret_overlap_seconds
        )

        async def work(session: AsyncSession) -> dict[str, Any]:
            row = await _endpoint(session, account_id, endpoint_id)
            now = clock.now()
            secret = new_secret()
            if overlap > 0:
                row.previous_secret = row.secret
                row.previous_secret_expires_at = now + timedelta(seconds=overlap)
            else:
                row.previous_secret = row.previous_secret_expires_at = None
            row.secret = secret
            row.updated_at = now
            await session.flush()
            return EndpointOut.of(row, secret).model_dump(mode="json")

        return await _once(self.db, ikey, 200, work)

    async def deliveries(
        self,
        account_id: str,
        endpoint_id: str,
        limit: int,
        starting_after: str | None,
        status: DeliveryStatus | None,
    ) -> dict[str, Any]:
        """The endpoint's deliveries, newest first, each with every attempt."""
        _page_limit(limit, self.settings)
        async with self.db.transaction() as session:
            endpoint = await session.get(WebhookEndpoint, endpoint_id)
            if endpoint is None or endpoint.account_id != account_id:
                raise NotFound(f"no webhook endpoint {endpoint_id!r}", param="id")
            stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
            if status is not None:
                stmt = stmt.where(WebhookDelivery.status == status)
            if starting_after is not None:
                cursor = await session.get(WebhookDelivery, starting_after)
                if cursor is None or cursor.endpoint_id != endpoint_id:
                    raise InvalidRequest(
                        f"starting_after {starting_after!r} is not a delivery of this endpoint",
                        param="starting_after",
                        code="cursor_invalid",
                    )
                stmt = stmt.where(WebhookDelivery.id < starting_after)
            rows = list(
                (await session.execute(stmt.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
                .scalars()
                .all()
            )[: limit + 1]
            shown = rows[:limit]
            attempts = await attempts_of(session, [d.id for d in shown])
        return {
            "object": "list",
            "data": [
                DeliveryOut.of(d, attempts.get(d.id, [])).model_dump(mode="json") for d in shown
            ],
            "has_more": len(rows) > limit,
        }


async def attempts_of(
    session: AsyncSession, delivery_ids: list[str]
) -> dict[str, list[WebhookAttempt]]:
    """Every attempt of these deliveries, oldest first."""
    found: dict[str, list[WebhookAttempt]] = {}
    if not delivery_ids:
        return found
    rows = await session.execute(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(delivery_ids))
        .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
    )
    for a in rows.scalars():
        found.setdefault(a.delivery_id, []).append(a)
    return found


async def resend(
    session: AsyncSession, delivery_id: str, actor: str, account_id: str | None = None
) -> WebhookDelivery:
    """Send a delivery again, now (whatever its status): back to pending with a fresh retry
    schedule; its attempts so far stay on record. `account_id`: only a delivery of that
    account (None: an operator's)."""
    delivery = await session.get(WebhookDelivery, delivery_id, with_for_update=True)
    endpoint = (
        await session.get(WebhookEndpoint, delivery.endpoint_id) if delivery is not None else None
    )
    if (
        delivery is None
        or endpoint is None
        or (account_id is not None and endpoint.account_id != account_id)
    ):
        raise NotFound(f"no webhook delivery {delivery_id!r}", param="delivery")
    if endpoint.deleted_at is not None:
        raise Conflict("the endpoint of this delivery was deleted", code="webhook_endpoint_deleted")
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.resend_by = actor[:64]
    delivery.next_attempt_at = clock.now()
    delivery.locked_by = delivery.locked_until = None
    await session.flush()
    return delivery
