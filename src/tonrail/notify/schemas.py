"""API shapes of webhook endpoints, their deliveries and events; event type patterns."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from tonrail.errors import InvalidRequest
from tonrail.notify.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tonrail.notify.states import DeliveryStatus, DisabledReason, EndpointStatus

# The families of events merchants receive; `*` is every one of them.
EVENT_FAMILIES = ("payout", "invoice", "refund")
_PATTERN = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)*(\.\*)?$")
# What `check_patterns` accepts, as the OpenAPI schema states it.
EVENT_TYPE_PATTERN = r"^(\*|(payout|invoice|refund)(\.[a-z][a-z_]*)*(\.\*)?)$"
EventType = Annotated[str, WithJsonSchema({"type": "string", "pattern": EVENT_TYPE_PATTERN})]
MAX_ROTATION_OVERLAP_SECONDS = 7 * 86_400


def check_patterns(patterns: list[str], param: str = "enabled_events") -> list[str]:
    """`*`, an event type (`payout.succeeded`) or a family wildcard (`payout.*`); else 400."""
    if not patterns:
        raise InvalidRequest(f"{param} needs at least one event type", param=param)
    for pattern in patterns:
        if pattern == "*":
            continue
        if not _PATTERN.match(pattern) or pattern.split(".", 1)[0] not in EVENT_FAMILIES:
            raise InvalidRequest(
                f"{pattern!r} is not an event type: use '*', 'payout.*', 'invoice.paid'-like "
                f"names of the families {', '.join(EVENT_FAMILIES)}",
                param=param,
                code="event_type_invalid",
            )
    return sorted(set(patterns))


def type_matches(pattern: str, event_type: str) -> bool:
    """`*` matches everything, `payout.*` every type under `payout.`, else the type itself."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern


def subscribed(patterns: list[str], event_type: str) -> bool:
    return any(type_matches(p, event_type) for p in patterns)


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="https URL that receives the events (http outside production)")
    enabled_events: list[EventType] = Field(
        max_length=50,
        json_schema_extra={"minItems": 1},  # [] is refused by check_patterns (invalid_request)
        description='event types, e.g. ["payout.*", "invoice.succeeded"] or ["*"]',
    )
    description: str | None = Field(default=None, max_length=1000)


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    enabled_events: list[EventType] | None = Field(
        default=None, max_length=50, json_schema_extra={"minItems": 1}
    )
    description: str | None = Field(default=None, max_length=1000)
    status: EndpointStatus | None = Field(
        default=None, description="disabled stops deliveries; enabled resumes them"
    )


class SecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_ROTATION_OVERLAP_SECONDS,
        description="how long the old secret still signs (default WEBHOOK_SECRET_OVERLAP_SECONDS)",
    )


class EndpointOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: str
    url: str
    description: str | None
    enabled_events: list[str]
    status: EndpointStatus
    disabled_reason: DisabledReason | None
    disabled_at: datetime | None
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="set while a rotated-out secret still signs alongside the new one"
    )
    secret: str | None = Field(
        default=None, description="the signing secret: only in the answer that created it"
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, e: WebhookEndpoint, secret: str | None = None) -> EndpointOut:
        # A field-by-field copy into the view: alike other views in shape only.
        return cls(
            id=e.id,
            url=e.url,
            description=e.description,
            enabled_events=list(e.enabled_events),
            status=e.status,
            disabled_reason=e.disabled_reason,
            disabled_at=e.disabled_at,
            failing_since=e.failing_since,
            previous_secret_expires_at=e.previous_secret_expires_at,
            secret=secret,
            created_at=e.created_at,
            updated_at=e.updated_at,
        )


class AttemptOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: int
    attempted_at: datetime
    latency_ms: int
    succeeded: bool
    response_status: int | None
    response_body: str | None = Field(description="the first bytes of the answer")
    error: str | None
    trigger: str

    @classmethod
    def of(cls, a: WebhookAttempt) -> AttemptOut:
        return cls(
            number=a.number,
            attempted_at=a.attempted_at,
            latency_ms=a.latency_ms,
            succeeded=a.succeeded,
            response_status=a.response_status,
            response_body=a.response_body,
            error=a.error,
            trigger=a.trigger,
        )


class DeliveryOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    payment_id: str | None
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None = Field(description="set while pending")
    last_response_status: int | None
    delivered_at: datetime | None
    created_at: datetime
    attempts: list[AttemptOut]

    @classmethod
    def of(cls, d: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
        return cls(
            id=d.id,
            endpoint_id=d.endpoint_id,
            event_id=d.event_id,
            event_type=d.event_type,
            payment_id=d.payment_id,
            status=d.status,
            attempt_count=len(attempts),
            next_attempt_at=d.next_attempt_at if d.status == DeliveryStatus.PENDING else None,
            last_response_status=d.last_response_status,
            delivered_at=d.delivered_at,
            created_at=d.created_at,
            attempts=[AttemptOut.of(a) for a in attempts],
        )


class EventOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["event"] = "event"
    id: str
    type: str
    created_at: datetime
    payment_id: str | None
    data: dict[str, Any]


class ListOf(BaseModel):
    object: Literal["list"] = "list"
    data: list[Any]
    has_more: bool


# The answers of /v1/webhook_endpoints and /v1/events as the OpenAPI schema states them
# (response models: FastAPI checks every answer against them, an unknown key included).
class EndpointList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["list"] = "list"
    data: list[EndpointOut]
    has_more: bool


class EndpointDeleted(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: str
    deleted: Literal[True] = True


class DeliveryList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["list"] = "list"
    data: list[DeliveryOut]
    has_more: bool


class DeliveryResent(BaseModel):
    """The delivery queued again, now (its attempts follow in the deliveries list)."""

    model_config = ConfigDict(extra="forbid")

    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: str
    status: DeliveryStatus


class EventList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["list"] = "list"
    data: list[EventOut]
    has_more: bool
