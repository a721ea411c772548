"""What the Webhooks page reads: merchant webhook endpoints with their delivery counts, and
recent deliveries with their attempts (filters: endpoint, status)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.dashboard.queries.fees import ParamInvalid
from tonrail.notify.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tonrail.notify.service import attempts_of
from tonrail.notify.states import DeliveryStatus


@dataclass(frozen=True)
class Filters:
    endpoint: str | None
    status: DeliveryStatus | None


@dataclass(frozen=True)
class EndpointRow:
    endpoint: WebhookEndpoint
    counts: dict[str, int]  # delivery status -> count


@dataclass(frozen=True)
class DeliveryRow:
    delivery: WebhookDelivery
    url: str
    attempts: list[WebhookAttempt]


def parse_filters(params: Mapping[str, str]) -> Filters:
    status = params.get("status") or None
    if status is not None and status not in set(DeliveryStatus):
        raise ParamInvalid(f"status must be one of {', '.join(DeliveryStatus)}", param="status")
    endpoint = (params.get("endpoint") or "").strip()[:40] or None
    return Filters(endpoint, DeliveryStatus(status) if status else None)


async def endpoints(session: AsyncSession) -> list[EndpointRow]:
    rows = (
        (
            await session.execute(
                select(WebhookEndpoint)
                .where(WebhookEndpoint.deleted_at.is_(None))
                .order_by(WebhookEndpoint.id.desc())
            )
        )
        .scalars()
        .all()
    )
    counts: dict[str, dict[str, int]] = {}
    for endpoint_id, status, count in await session.execute(
        select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count()).group_by(
            WebhookDelivery.endpoint_id, WebhookDelivery.status
        )
    ):
        counts.setdefault(endpoint_id, {})[str(status)] = int(count)
    return [EndpointRow(e, counts.get(e.id, {})) for e in rows]


async def deliveries(session: AsyncSession, f: Filters, limit: int) -> list[DeliveryRow]:
    stmt = select(WebhookDelivery, WebhookEndpoint.url).join(
        WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id
    )
    if f.endpoint is not None:
        stmt = stmt.where(WebhookDelivery.endpoint_id == f.endpoint)
    if f.status is not None:
        stmt = stmt.where(WebhookDelivery.status == f.status)
    found = (await session.execute(stmt.order_by(WebhookDelivery.id.desc()).limit(limit))).all()
    attempts = await attempts_of(session, [d.id for d, _ in found])
    return [DeliveryRow(d, url, attempts.get(d.id, [])) for d, url in found]
