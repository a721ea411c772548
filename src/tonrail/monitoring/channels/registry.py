"""Which channels are configured; which severities go where is ALERT_ROUTES (settings.py)."""

from __future__ import annotations

import httpx

from tonrail.monitoring.channels.base import Channel
from tonrail.monitoring.channels.email import EmailChannel
from tonrail.monitoring.channels.pagerduty import PagerDutyChannel
from tonrail.monitoring.channels.slack import SlackChannel
from tonrail.settings import Settings


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
