"""PagerDuty Events API v2: trigger with the alert's dedup key, acknowledge, resolve."""

from __future__ import annotations

from typing import Any

import httpx

from tonrail import clock
from tonrail.monitoring.channels.base import AlertMessage, ChannelError

PD_SEVERITIES = frozenset({"critical", "error", "warning", "info"})


class PagerDutyChannel:
    """POST to /v2/enqueue; success is 202 with status `success`. 400 is not retried."""

    name = "pagerduty"

    def __init__(self, routing_key: str, events_url: str, source: str, client: httpx.AsyncClient):
        self._routing_key = routing_key  # a secret: never logged
        self.events_url = events_url
        self.source = source
        self.client = client

    def event(self, message: AlertMessage) -> dict[str, Any]:
        action = {"trigger": "trigger", "acknowledge": "acknowledge", "resolve": "resolve"}.get(
            message.action
        )
        if action is None:
            raise ChannelError(f"PagerDuty takes no {message.action!r} events", retryable=False)
        event: dict[str, Any] = {
            "routing_key": self._routing_key,
            "event_action": action,
            "dedup_key": message.dedup_key[:255],
        }
        if action == "trigger":
            at = message.at or clock.now()
            event["payload"] = {
                "summary": message.summary[:1024],
                "source": self.source,
                "severity": message.severity if message.severity in PD_SEVERITIES else "error",
                "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "component": "tonrail",
                "group": message.details.get("rail", "payments"),
                "class": message.rule,
                "custom_details": {"alert_id": message.alert_id, **message.details},
            }
        return event

    async def send(self, message: AlertMessage) -> None:
        event = self.event(message)
        try:
            r = await self.client.post(self.events_url, json=event)
        except httpx.HTTPError as exc:
            raise ChannelError(f"PagerDuty unreachable: {type(exc).__name__}") from None
        if r.status_code == 202:
            try:
                body = r.json()
            except ValueError:
                body = {}
            if body.get("status") == "success":
                return
            raise ChannelError(f"PagerDuty answered 202 without success: {str(body)[:120]}")
        retryable = r.status_code == 429 or r.status_code >= 500
        raise ChannelError(
            f"PagerDuty answered {r.status_code}: {r.text[:160]!r}", retryable=retryable
        )
