"""Rotating a shared secret with an overlap: the dashboard's JWT_SECRET, Stripe's webhook
signing secret, PayPal's webhook id (`tonrail keys rotate-secret ...`).

The setting becomes `new,old@<UTC expiry>` (settings.rotating_values): the new value signs
(JWT) or is expected (webhooks) at once, the old one is still accepted until the overlap ends,
then refused: dashboard sessions signed with it end (sign in again), provider events signed
with it get 400. Where the setting comes from AWS Secrets Manager the new list is written
there and every process takes it at its next refresh; otherwise the operator is shown the
value to set. The audit entry names the setting and the overlap, never a value.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import aws_secrets, clock
from tonrail.errors import InvalidRequest
from tonrail.security import audit_log
from tonrail.settings import Settings, environment_variables, rotating_values

# command argument -> setting
ROTATING = {
    "jwt": "jwt_secret",
    "stripe-webhook": "stripe_webhook_secret",
    "paypal-webhook": "paypal_webhook_id",
}
MAX_OVERLAP = timedelta(days=7)


@dataclass(frozen=True)
class Rotation:
    setting: str  # e.g. "JWT_SECRET"
    value: str  # the setting's new value (new,old@expiry): shown only when not stored
    old_until: datetime
    stored_in: str | None  # the Secrets Manager ARN written, or None


def generated_jwt_secret() -> str:
    return secrets.token_urlsafe(48)


def rotated_value(current: str, new: str, now: datetime, overlap: timedelta) -> str:
    """`new` first, then each value still in force retired at now + overlap (or earlier)."""
    until = now + overlap
    kept = []
    for value, expiry in rotating_values(current):
        if value == new or (expiry is not None and expiry <= now):
            continue
        end = until if expiry is None or expiry > until else expiry
        kept.append(f"{value}@{end:%Y-%m-%dT%H:%M:%SZ}")
    return ",".join([new, *kept])


def check_new(kind: str, new: str) -> str:
    new = new.strip()
    if not new or any(c in new for c in ",@ \t"):
        raise InvalidRequest("the new value is empty or holds ',', '@' or spaces", param="new")
    if kind == "jwt" and len(new) < 32:
        raise InvalidRequest("a JWT secret has 32 or more characters", param="new")
    return new


async def rotate_secret(
    session: AsyncSession,
    settings: Settings,
    kind: str,
    new: str,
    actor: str,
    overlap: timedelta,
) -> Rotation:
    """Put `new` in front of setting `kind`, retire the old value after `overlap`, audit it."""
    if kind not in ROTATING:
        raise InvalidRequest(f"one of {', '.join(ROTATING)}", param="kind")
    if not timedelta(0) <= overlap <= MAX_OVERLAP:
        raise InvalidRequest("the overlap must be between 0 and 7 days", param="overlap")
    field = ROTATING[kind]
    new = check_new(kind, new)
    raw = getattr(settings, field)
    current = raw if isinstance(raw, str) else raw.get_secret_value()
    now = clock.now()
    value = rotated_value(current, new, now, overlap)
    name = field.upper()
    try:
        stored = aws_secrets.store(
            environment_variables(), field, value, settings.aws_secretsmanager_endpoint_url
        )
    except aws_secrets.SecretsError as exc:
        raise InvalidRequest(str(exc), code="secret_store_failed") from None
    await audit_log.record(
        session,
        actor,
        "secret.rotated",
        name,
        {
            "old_until": (now + overlap).isoformat(),
            "values_in_force": len(rotating_values(value)),
            "stored_in": stored or "printed for the operator",
        },
    )
    return Rotation(name, value, now + overlap, stored)
