"""Which channels are configured, and which severities go to which channels."""

from __future__ import annotations

import httpx

from tonrail.monitoring.channels.base import Channel
from tonrail.monitoring.channels.email import EmailChannel
from tonrail.monitoring.channels.pagerduty import PagerDutyChannel
from tonrail.monitoring.channels.slack import SlackChannel
from tonrail.settings import Settings

CHANNEL_NAMES = ("email", "slack", "pagerduty")


def parse_routes(text: str) -> dict[str, tuple[str, ...]]:
    """`critical=email,slack,pagerduty;error=email,slack` -> {severity: channels}."""
    routes: dict[str, tuple[str, ...]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        severity, _, names = part.partition("=")
        channels = tuple(n.strip() for n in names.split(",") if n.strip())
        unknown = set(channels) - set(CHANNEL_NAMES)
        if unknown:
            raise ValueError(f"ALERT_ROUTES names unknown channels {sorted(unknown)}")
        routes[severity.strip()] = channels
    return routes


def configured_channels(settings: Settings, client: httpx.AsyncClient) -> dict[str, Channel]:
    """The channels whose destination is set; the others are skipped (see /metrics)."""
    channels: dict[str, Channel] = {}
    if settings.payment_alert_email.strip():
        channels["email"] = EmailChannel(settings)
    if settings.slack_webhook_url.get_secret_value():
        channels["slack"] = SlackChannel(settings.slack_webhook_url.get_secret_value(), client)
    if settings.pagerduty_routing_key.get_secret_value():
        channels["pagerduty"] = PagerDutyChannel(
            settings.pagerduty_routing_key.get_secret_value(),
            settings.pagerduty_events_url,
            settings.alert_source,
            client,
        )
    return channels
