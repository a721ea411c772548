"""Fixtures of the monitoring tests: the three channel servers and settings pointing at them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from tests.monitoring.servers import (
    Recorder,
    http_server,
    pagerduty_app,
    slack_app,
    smtp_server,
)
from tonrail.monitoring import signals
from tonrail.settings import Settings, get_settings

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters like a real integration key


@dataclass
class Servers:
    smtp_port: int
    smtp: Recorder
    slack_url: str
    slack: Recorder
    pagerduty_url: str
    pagerduty: Recorder

    def configure(self, settings: Settings, **extra: object) -> Settings:
        """`settings` with every channel pointing at these servers."""
        return settings.model_copy(
            update={
                "smtp_host": "127.0.0.1",
                "smtp_port": self.smtp_port,
                "payment_alert_email": "ops@example.com, oncall@example.com",
                "slack_webhook_url": SecretStr(self.slack_url),
                "pagerduty_routing_key": SecretStr(ROUTING_KEY),
                "pagerduty_events_url": self.pagerduty_url,
                "alert_channel_retry_base_seconds": 0.0,
                "alert_channel_timeout_seconds": 5.0,
                **extra,
            }
        )


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    """SMTP (aiosmtpd), Slack and PagerDuty (uvicorn) servers on 127.0.0.1 free ports."""
    slack, pd = Recorder(), Recorder()
    async with (
        smtp_server() as (smtp_port, smtp),
        http_server(slack_app(slack)) as slack_base,
        http_server(pagerduty_app(pd)) as pd_base,
    ):
        yield Servers(
            smtp_port,
            smtp,
            f"{slack_base}/services/T000/B000/XXXX",
            slack,
            f"{pd_base}/v2/enqueue",
            pd,
        )


@pytest.fixture
def plain_settings(tmp_path: object) -> Settings:
    """Settings without a database, for tests of channels and pure logic."""
    return Settings(_env_file=None, environment="test")  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _empty_signal_buffer() -> Iterator[None]:
    signals.take_buffer()
    yield
    signals.take_buffer()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[str]:
    """The `tonrail` command reads DATABASE_URL: point it at the test database."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()
