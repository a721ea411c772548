"""Channels against real local servers: SMTP (aiosmtpd), Slack and PagerDuty (HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from pydantic import ValidationError

from tests.monitoring.conftest import ROUTING_KEY, Servers
from tests.monitoring.servers import mail_of
from tonrail.monitoring.channels.base import AlertMessage, ChannelError
from tonrail.monitoring.channels.email import EmailChannel
from tonrail.monitoring.channels.pagerduty import PagerDutyChannel
from tonrail.monitoring.channels.registry import configured_channels
from tonrail.monitoring.channels.slack import SlackChannel
from tonrail.settings import Settings, parse_alert_routes

MSG = AlertMessage(
    alert_id="alrt_1",
    dedup_key="failure_pattern:ton:bounced",
    action="trigger",
    rule="failure_pattern",
    severity="error",
    summary="6 ton attempts failed with bounced in 300 s",
    details={"rail": "ton", "error_code": "bounced", "count": 6},
    at=datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
)


async def test_email_arrives_at_a_real_smtp_server(
    servers: Servers, plain_settings: Settings
) -> None:
    channel = EmailChannel(servers.configure(plain_settings))
    await channel.send(MSG)
    [item] = servers.smtp.received
    assert sorted(item["to"]) == ["oncall@example.com", "ops@example.com"]
    mail = mail_of(item)
    assert mail["Subject"] == f"[ERROR] tonrail: {MSG.summary}"
    assert mail["X-Tonrail-Alert"] == MSG.dedup_key
    body = mail.get_payload(decode=True).decode()
    assert "error_code: bounced" in body and "alrt_1" in body


async def test_email_temporary_and_permanent_refusals(
    servers: Servers, plain_settings: Settings
) -> None:
    channel = EmailChannel(servers.configure(plain_settings))
    servers.smtp.fail_next = [451]
    with pytest.raises(ChannelError) as temporary:
        await channel.send(MSG)
    assert temporary.value.retryable
    servers.smtp.fail_next = [554]
    with pytest.raises(ChannelError) as permanent:
        await channel.send(MSG)
    assert not permanent.value.retryable
    assert servers.smtp.received == []


async def test_email_to_a_closed_port_is_a_retryable_failure(plain_settings: Settings) -> None:
    from tests.monitoring.servers import free_port

    settings = plain_settings.model_copy(
        update={"smtp_port": free_port(), "payment_alert_email": "ops@example.com"}
    )
    with pytest.raises(ChannelError) as err:
        await EmailChannel(settings).send(MSG)
    assert err.value.retryable


async def test_slack_payload_is_accepted_by_the_documented_shape(servers: Servers) -> None:
    async with httpx.AsyncClient() as client:
        await SlackChannel(servers.slack_url, client).send(MSG)
    [body] = servers.slack.received
    assert servers.slack.rejected == []
    assert body["text"].startswith(":large_orange_circle: [ERROR] tonrail:")
    assert body["blocks"][0]["type"] == "section"
    assert any(b["type"] == "context" for b in body["blocks"])


async def test_slack_failures_say_whether_to_retry(servers: Servers) -> None:
    async with httpx.AsyncClient() as client:
        channel = SlackChannel(servers.slack_url, client)
        servers.slack.fail_next = [500]
        with pytest.raises(ChannelError) as server_error:
            await channel.send(MSG)
        assert server_error.value.retryable
        servers.slack.fail_next = [404]
        with pytest.raises(ChannelError) as gone:
            await channel.send(MSG)
        assert not gone.value.retryable
        assert "services" not in str(gone.value)  # the webhook URL is a secret


async def test_pagerduty_trigger_acknowledge_resolve(servers: Servers) -> None:
    async with httpx.AsyncClient() as client:
        channel = PagerDutyChannel(ROUTING_KEY, servers.pagerduty_url, "tonrail-test", client)
        for action in ("trigger", "acknowledge", "resolve"):
            await channel.send(
                AlertMessage(**{**MSG.__dict__, "action": action})  # type: ignore[arg-type]
            )
    assert servers.pagerduty.rejected == []
    trigger, ack, resolve = servers.pagerduty.received
    assert [e["event_action"] for e in (trigger, ack, resolve)] == [
        "trigger",
        "acknowledge",
        "resolve",
    ]
    assert {e["dedup_key"] for e in (trigger, ack, resolve)} == {MSG.dedup_key}
    payload = trigger["payload"]
    assert payload["severity"] == "error" and payload["source"] == "tonrail-test"
    assert payload["class"] == "failure_pattern" and payload["group"] == "ton"
    assert payload["timestamp"] == "2026-11-27T12:00:00.000Z"
    assert payload["custom_details"]["alert_id"] == "alrt_1"
    assert "payload" not in resolve


async def test_pagerduty_invalid_key_is_permanent_and_rate_limit_retryable(
    servers: Servers,
) -> None:
    async with httpx.AsyncClient() as client:
        bad = PagerDutyChannel("short", servers.pagerduty_url, "tonrail", client)
        with pytest.raises(ChannelError) as invalid:
            await bad.send(MSG)
        assert not invalid.value.retryable
        assert "short" not in str(invalid.value) or "routing_key" in str(invalid.value)
        good = PagerDutyChannel(ROUTING_KEY, servers.pagerduty_url, "tonrail", client)
        servers.pagerduty.fail_next = [429]
        with pytest.raises(ChannelError) as limited:
            await good.send(MSG)
        assert limited.value.retryable


def test_routes_and_configured_channels(plain_settings: Settings) -> None:
    routes = parse_alert_routes(plain_settings.alert_routes)
    assert routes["critical"] == ("email", "slack", "pagerduty")
    assert "pagerduty" not in routes["error"] + routes["warning"]  # critical only by default
    with pytest.raises(ValueError, match="unknown channels"):
        parse_alert_routes("critical=sms")
    with pytest.raises(ValidationError, match="unknown channels"):
        Settings(_env_file=None, alert_routes="critical=email,sms")  # type: ignore[call-arg]
    assert configured_channels(plain_settings, httpx.AsyncClient()) == {}
