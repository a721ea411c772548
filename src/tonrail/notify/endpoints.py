"""HTTP: /v1/webhook_endpoints (create, read, change, delete, rotate the secret, deliveries,
resend) and /v1/events (docs/WEBHOOKS.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response

from tonrail.errors import NotFound
from tonrail.notify.events_api import EventsQuery, get_event, list_events
from tonrail.notify.schemas import (
    DeliveryList,
    DeliveryResent,
    EndpointCreate,
    EndpointDeleted,
    EndpointList,
    EndpointOut,
    EndpointUpdate,
    EventList,
    EventOut,
    SecretRotation,
)
from tonrail.notify.service import WebhookEndpoints, resend
from tonrail.notify.states import DeliveryStatus
from tonrail.security.api_keys import Principal
from tonrail.web import (
    current_principal,
    database,
    idempotency_key_of,
    require_scope,
    send_answer,
    settings_of,
)

router = APIRouter(prefix="/v1", tags=["webhooks"])

PrincipalDep = Annotated[Principal, Depends(current_principal)]
IdemHeader = Annotated[str | None, Header(alias="Idempotency-Key")]


def endpoints_of(request: Request) -> WebhookEndpoints:
    service: WebhookEndpoints = request.app.state.webhook_endpoints
    return service


ServiceDep = Annotated[WebhookEndpoints, Depends(endpoints_of)]


@router.post("/webhook_endpoints", status_code=201, response_model=EndpointOut)
async def create_endpoint(
    request: Request,
    body: EndpointCreate,
    principal: PrincipalDep,
    service: ServiceDep,
    idempotency_key: IdemHeader = None,
) -> Response:
    """Subscribe a URL to event types (`*`, `payout.*`, `invoice.succeeded`...). The answer
    shows the signing secret (`whsec_...`) once."""
    require_scope(principal, "payments:write")
    ikey = await idempotency_key_of(request, principal, idempotency_key)
    return send_answer(await service.create(principal.account_id, body, ikey))


@router.get("/webhook_endpoints", response_model=EndpointList)
async def list_endpoints(
    principal: PrincipalDep,
    service: ServiceDep,
    limit: Annotated[int, Query()] = 10,
    starting_after: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """The account's endpoints, newest first (secrets never shown)."""
    require_scope(principal, "payments:read")
    return await service.list(principal.account_id, limit, starting_after)


@router.get("/webhook_endpoints/{endpoint_id}", response_model=EndpointOut)
async def get_endpoint(
    endpoint_id: str, principal: PrincipalDep, service: ServiceDep
) -> dict[str, Any]:
    require_scope(principal, "payments:read")
    return await service.get(principal.account_id, endpoint_id)


@router.patch("/webhook_endpoints/{endpoint_id}", response_model=EndpointOut)
async def update_endpoint(
    endpoint_id: str, body: EndpointUpdate, principal: PrincipalDep, service: ServiceDep
) -> dict[str, Any]:
    """Change url, enabled_events, description or status (`enabled` / `disabled`)."""
    require_scope(principal, "payments:write")
    return await service.update(principal.account_id, endpoint_id, body)


@router.delete("/webhook_endpoints/{endpoint_id}", response_model=EndpointDeleted)
async def delete_endpoint(
    endpoint_id: str, principal: PrincipalDep, service: ServiceDep
) -> dict[str, Any]:
    require_scope(principal, "payments:write")
    return await service.delete(principal.account_id, endpoint_id)


@router.post("/webhook_endpoints/{endpoint_id}/rotate_secret", response_model=EndpointOut)
async def rotate_secret(
    request: Request,
    endpoint_id: str,
    principal: PrincipalDep,
    service: ServiceDep,
    body: SecretRotation | None = None,
    idempotency_key: IdemHeader = None,
) -> Response:
    """A new secret, shown once; the old one also signs for `overlap_seconds`."""
    require_scope(principal, "payments:write")
    ikey = await idempotency_key_of(request, principal, idempotency_key)
    answer = await service.rotate_secret(
        principal.account_id, endpoint_id, body or SecretRotation(), ikey
    )
    return send_answer(answer)


@router.get("/webhook_endpoints/{endpoint_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(
    endpoint_id: str,
    principal: PrincipalDep,
    service: ServiceDep,
    limit: Annotated[int, Query()] = 10,
    starting_after: Annotated[str | None, Query()] = None,
    status: Annotated[DeliveryStatus | None, Query()] = None,
) -> dict[str, Any]:
    """Deliveries of events to this endpoint, newest first, each with all its attempts
    (status, latency, response code, the first bytes of the answer)."""
    require_scope(principal, "payments:read")
    return await service.deliveries(
        principal.account_id, endpoint_id, limit, starting_after, status
    )


@router.post(
    "/webhook_endpoints/{endpoint_id}/deliveries/{delivery_id}/resend",
    response_model=DeliveryResent,
)
async def resend_delivery(
    request: Request, endpoint_id: str, delivery_id: str, principal: PrincipalDep
) -> dict[str, Any]:
    """Send this delivery again now (with a fresh retry schedule)."""
    require_scope(principal, "payments:write")
    async with database(request).transaction() as session:
        delivery = await resend(
            session, delivery_id, f"api:{principal.key_id}", principal.account_id
        )
        if delivery.endpoint_id != endpoint_id:
            raise NotFound(f"no webhook delivery {delivery_id!r}", param="delivery")
        return {"object": "webhook_delivery", "id": delivery.id, "status": delivery.status}


@router.get("/events", response_model=EventList)
async def events(
    request: Request,
    principal: PrincipalDep,
    limit: Annotated[int, Query()] = 10,
    starting_after: Annotated[str | None, Query()] = None,
    type: Annotated[str | None, Query(description="an event type or `family.*`")] = None,
    payment: Annotated[str | None, Query(description="events of this payout or invoice")] = None,
) -> dict[str, Any]:
    """The account's published events, newest first (catch up after downtime)."""
    require_scope(principal, "payments:read")
    query = EventsQuery(principal.account_id, limit, starting_after, type, payment)
    return await list_events(database(request), settings_of(request), query)


@router.get("/events/{event_id}", response_model=EventOut)
async def event(request: Request, event_id: str, principal: PrincipalDep) -> dict[str, Any]:
    require_scope(principal, "payments:read")
    return await get_event(database(request), principal.account_id, event_id)
