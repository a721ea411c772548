"""HTTP endpoints where Stripe and PayPal push events (raw body, verified by the rail)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tonrail.webhooks.service import ProviderWebhooks

router = APIRouter(tags=["webhooks"])


def _service(request: Request) -> ProviderWebhooks:
    service: ProviderWebhooks = request.app.state.provider_webhooks
    return service


@router.post("/webhooks/stripe")
async def stripe_webhook(request: Request) -> dict[str, Any]:
    """Stripe events, verified with `Stripe-Signature` over the raw body."""
    body = await request.body()
    return await _service(request).receive("stripe", body, dict(request.headers))


@router.post("/webhooks/paypal")
async def paypal_webhook(request: Request) -> dict[str, Any]:
    """PayPal events, verified with PayPal's verify-webhook-signature API."""
    body = await request.body()
    return await _service(request).receive("paypal", body, dict(request.headers))
