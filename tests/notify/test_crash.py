"""Fault injection: a worker SIGKILLed after sending a delivery and before recording it, or
while publishing, loses nothing: the delivery goes again once its lease ends (at least
once; the same webhook-id lets the receiver de-duplicate), and no one sends it while the
lease holds; an unpublished event is published once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.helpers import DEST
from tests.notify.conftest import Receiver, run_rounds, subscribe
from tonrail import clock
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.notify.delivery import deliver_round, lease_seconds
from tonrail.notify.models import WebhookAttempt, WebhookDelivery
from tonrail.notify.publish import publish_round
from tonrail.notify.states import DeliveryStatus
from tonrail.payments.service import PaymentService
from tonrail.settings import Settings

TONRAIL = str(Path(sys.executable).parent / "tonrail")
LEASE = 2


async def _crash_worker(settings: Settings, tmp_path: Path, loop: str, crash_at: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TON", "DATABASE", "WEBHOOK"))}
    env.update(
        DATABASE_URL=settings.database_url,
        DATA_DIR=str(tmp_path),
        ENVIRONMENT="test",
        WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        WORKER_LEASE_SECONDS=str(LEASE),
        CRASH_AT=crash_at,
        LOG_LEVEL="WARNING",
    )
    proc = await asyncio.create_subprocess_exec(
        TONRAIL,
        "worker",
        "--only",
        loop,
        env=env,
        cwd=str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    code = await asyncio.wait_for(proc.wait(), timeout=120)
    assert code == -signal.SIGKILL, (await proc.stderr.read()).decode()[-2000:]  # type: ignore[union-attr]


def _after_the_lease(settings: Settings) -> None:
    lease = lease_seconds(settings.model_copy(update={"worker_lease_seconds": LEASE}))
    at = datetime.now(UTC) + timedelta(seconds=lease + 5)
    clock.set_clock(lambda: at)


async def _payout(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post(
        "/v1/payouts", json={"amount": "2", "asset": "USDT", "destination": DEST}, headers=auth
    )
    assert r.status_code == 201, r.text


@pytest.mark.slow
async def test_a_crash_after_sending_sends_again_after_the_lease(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    await subscribe(client, auth, receiver.url)
    await _payout(client, auth)
    assert await publish_round(db, settings, PaymentService(db, settings), "w1") == 1

    await _crash_worker(settings, tmp_path, "deliver_webhooks", "webhooks.after_send")
    assert len(receiver.got) == 1
    async with db.transaction() as session:
        (delivery,) = (await session.execute(select(WebhookDelivery))).scalars().all()
        assert delivery.status == DeliveryStatus.PENDING and delivery.locked_by is not None
    # While the dead worker's lease holds, no other worker sends it.
    settings = settings.model_copy(update={"worker_lease_seconds": LEASE})
    assert await deliver_round(db, settings, "w2") == 0
    assert len(receiver.got) == 1

    _after_the_lease(settings)
    assert await deliver_round(db, settings, "w2") == 1
    assert receiver.ids() == [receiver.got[0].headers["webhook-id"]] * 2
    async with db.transaction() as session:
        (delivery,) = (await session.execute(select(WebhookDelivery))).scalars().all()
        attempts = (await session.execute(select(WebhookAttempt))).scalars().all()
    assert delivery.status == DeliveryStatus.DELIVERED and len(attempts) == 1


@pytest.mark.slow
async def test_a_crash_while_publishing_publishes_once_later(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    await subscribe(client, auth, receiver.url)
    await _payout(client, auth)
    await _crash_worker(settings, tmp_path, "publish_events", "webhooks.before_publish_commit")
    async with db.transaction() as session:
        (event,) = (await session.execute(select(OutboxEvent))).scalars().all()
        assert event.published_at is None and event.data is None
        assert (await session.execute(select(WebhookDelivery))).scalars().all() == []

    _after_the_lease(settings)
    await run_rounds(db, settings)
    await run_rounds(db, settings)
    assert receiver.ids() == [event.id]
