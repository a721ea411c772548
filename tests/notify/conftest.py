"""A real HTTP receiver for merchant webhooks (aiohttp on 127.0.0.1), and helpers that run
the publishing and delivery rounds until nothing is left to do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from tonrail.db import Database
from tonrail.notify.delivery import deliver_round
from tonrail.notify.publish import publish_round
from tonrail.payments.service import PaymentService
from tonrail.settings import Settings


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str = ""


@dataclass
class Receiver:
    """Records every request; answers from `answers` in turn (status, text, seconds to
    wait first), then `default`."""

    url: str = ""
    got: list[Received] = field(default_factory=list)
    answers: list[tuple[int, str, float]] = field(default_factory=list)
    default: tuple[int, str, float] = (200, "thanks", 0.0)

    async def handle(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.got.append(Received(headers, await request.read(), request.path))
        status, text, wait = self.answers.pop(0) if self.answers else self.default
        if wait:
            await asyncio.sleep(wait)
        return web.Response(status=status, text=text)

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.got]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}/hooks"
    yield found
    await runner.cleanup()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allowed_hosts": "127.0.0.1"})


async def subscribe(
    client: httpx.AsyncClient, auth: dict[str, str], url: str, events: list[str] | None = None
) -> dict[str, Any]:
    r = await client.post(
        "/v1/webhook_endpoints", json={"url": url, "enabled_events": events or ["*"]}, headers=auth
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def run_rounds(db: Database, settings: Settings, worker: str = "w1", rounds: int = 20) -> int:
    """Publish and deliver until a round finds nothing to do; returns deliveries sent."""
    payments = PaymentService(db, settings)
    sent = 0
    for _ in range(rounds):
        published = await publish_round(db, settings, payments, worker)
        delivered = await deliver_round(db, settings, worker)
        sent += delivered
        if not published and not delivered:
            return sent
    raise AssertionError("still busy after the rounds")
