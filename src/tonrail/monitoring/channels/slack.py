"""Slack alerts through an incoming webhook (SLACK_WEBHOOK_URL): JSON `text` + `blocks`."""

from __future__ import annotations

from typing import Any

import httpx

from tonrail.monitoring.channels.base import AlertMessage, ChannelError

EMOJI = {"critical": ":red_circle:", "error": ":large_orange_circle:", "warning": ":warning:"}


class SlackChannel:
    """Success is HTTP 200 with body `ok`; 4xx (bad payload, channel gone) is not retried."""

    name = "slack"

    def __init__(self, webhook_url: str, client: httpx.AsyncClient):
        self._url = webhook_url  # a secret: never logged, never in an error
        self.client = client

    def payload(self, message: AlertMessage) -> dict[str, Any]:
        icon = (
            ":white_check_mark:"
            if message.action == "resolve"
            else EMOJI.get(message.severity, ":information_source:")
        )
        text = f"{icon} {message.title}"
        fields = [
            {"type": "mrkdwn", "text": f"*{k}*\n{v}"}
            for k, v in sorted(message.details.items())[:10]
        ]
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
        ]
        if fields:
            blocks.append(
                {
                    "type": "section",
                    "fields": [{"type": f["type"], "text": f["text"][:2000]} for f in fields],
                }
            )
        if message.body:
            blocks.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"```{message.body[:2900]}```"},
                }
            )
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"rule `{message.rule}` · key `{message.dedup_key}` · "
                        f"alert `{message.alert_id}`",
                    }
                ],
            }
        )
        return {"text": text[:3000], "blocks": blocks}

    async def send(self, message: AlertMessage) -> None:
        try:
            r = await self.client.post(self._url, json=self.payload(message))
        except httpx.HTTPError as exc:
            raise ChannelError(f"Slack webhook unreachable: {type(exc).__name__}") from None
        body = r.text.strip()
        if r.status_code == 200 and body == "ok":
            return
        retryable = r.status_code >= 500 or r.status_code == 429
        raise ChannelError(
            f"Slack webhook answered {r.status_code} {body[:80]!r}", retryable=retryable
        )
