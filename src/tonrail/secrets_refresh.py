"""Re-reading the settings that come from AWS Secrets Manager while a process runs.

Values read where they are used (webhook secrets, the dashboard's JWT secret, SMTP and
PagerDuty credentials, TON_KEY_PASSPHRASE for the next start) take effect at the next refresh;
clients built at start (the Stripe SDK's key, the toncenter key) at the next restart. Only the
names of the settings that changed are logged, never a value. A failed read keeps the values
in force and logs the error (which names the setting and ARN only).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from pydantic import TypeAdapter

from tonrail import aws_secrets
from tonrail.settings import Settings, environment_variables

log = structlog.get_logger(__name__)


def configured(settings: Settings) -> bool:
    bundle, singles = aws_secrets.arns_of(environment_variables(), type(settings).model_fields)
    return bool(bundle or singles)


def refresh(settings: Settings) -> list[str]:
    """Read every configured secret again and apply the changed ones; their names."""
    fields = type(settings).model_fields
    fresh = aws_secrets.fetch(
        environment_variables(), fields, settings.aws_secretsmanager_endpoint_url
    )
    changed: list[str] = []
    for name, raw in fresh.items():
        annotation: Any = fields[name].annotation
        value: Any = TypeAdapter(annotation).validate_python(raw)
        if value != getattr(settings, name):
            setattr(settings, name, value)
            changed.append(name.upper())
    return changed


async def refresh_loop(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Refresh every SECRETS_REFRESH_SECONDS until `stop` is set (or the task is cancelled)."""
    period = settings.secrets_refresh_seconds
    if period <= 0 or not configured(settings):
        return
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=period)
            return
        except TimeoutError:
            pass
        try:
            changed = await asyncio.to_thread(refresh, settings)
        except aws_secrets.SecretsError as exc:
            log.error("secrets refresh failed; the values in force stay", error=str(exc))
            continue
        if changed:
            log.info("secrets refreshed", changed=changed)
