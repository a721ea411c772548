"""HTTP endpoints where Stripe and PayPal push events (raw body, verified by the rail)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tonrail.webhooks.service import ProviderWebhooks

router = APIRouter(tags=["webhooks"])


class ProviderEventReceived(BaseModel):
    """The provider's event stored (once) and processed."""

    model_config = ConfigDict(extra="forbid")

    received: Literal[True] = True
    id: str = Field(description="the provider's event id")
    duplicate: bool = Field(description="true: this event was received before")
    outcome: str = Field(description="what processing the event did (or did before)")


def _service(request: Request) -> ProviderWebhooks:
    service: ProviderWebhooks = request.app.state.provider_webhooks
    return service


@router.post("/webhooks/stripe", response_model=ProviderEventReceived)
async def stripe_webhook(request: Request) -> dict[str, Any]:
    """Stripe events, verified with `Stripe-Signature` over the raw body."""
    body = await request.body()
    return await _service(request).receive("stripe", body, dict(request.headers))


@router.post("/webhooks/paypal", response_model=ProviderEventReceived)
async def paypal_webhook(request: Request) -> dict[str, Any]:
    """PayPal events, verified with PayPal's verify-webhook-signature API."""
    body = await request.body()
    return await _service(request).receive("paypal", body, dict(request.headers))
