"""Stripe webhook verification: `Stripe-Signature` (t=, v1=) over the raw body."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence

from tonrail.rails.backup import ProviderEventIn, WebhookRejected


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The v1 signature Stripe computes: HMAC-SHA256 of `{t}.{body}` with the endpoint secret."""
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(
    payload: bytes, header: str | None, secrets: Sequence[str], now: int, tolerance: int
) -> None:
    """Accept when any v1 signature matches any of our secrets (rotation sends several)
    and the timestamp is within `tolerance` seconds of now; raise WebhookRejected if not."""
    if not header:
        raise WebhookRejected("missing Stripe-Signature header")
    if not secrets:
        raise WebhookRejected(
            "no Stripe webhook secret is configured", code="webhook_not_configured"
        )
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookRejected("Stripe-Signature has a malformed timestamp") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookRejected("Stripe-Signature needs t= and at least one v1=")
    if abs(now - timestamp) > tolerance:
        raise WebhookRejected("Stripe-Signature timestamp is outside the tolerance")
    for secret in secrets:
        expected = sign(payload, secret, timestamp)
        if any(hmac.compare_digest(expected, s) for s in signatures):
            return
    raise WebhookRejected("no Stripe-Signature v1 matches the endpoint secret")


def parse_event(payload: bytes) -> ProviderEventIn:
    """The stored form of a verified Stripe event."""
    try:
        event = json.loads(payload)
        event_id = str(event["id"])
        type_ = str(event["type"])
        obj = event.get("data", {}).get("object", {})
    except (ValueError, KeyError, AttributeError, TypeError):
        raise WebhookRejected(
            "the body is not a Stripe event", code="webhook_body_invalid"
        ) from None
    ref = obj.get("id") if isinstance(obj, dict) else None
    return ProviderEventIn("stripe", event_id, type_, str(ref) if ref else None, event)
