"""Webhooks in Chromium: an operator resends a delivered webhook, confirming it; the list
refreshes in place (no reload) and the audit log has it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import expect
from sqlalchemy import select

from tests.dashboard.test_alerts_browser import watch_errors
from tests.helpers import DEST
from tests.notify.conftest import Receiver, receiver, run_rounds, subscribe
from tonrail.db import Database
from tonrail.notify.models import WebhookDelivery
from tonrail.security.audit_log import AuditEntry
from tonrail.settings import Settings

__all__ = ["receiver"]  # the fixture, used by name
WAIT_MS = 20_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allowed_hosts": "127.0.0.1"})


async def test_an_operator_resends_a_delivery(
    page_as: Any,
    live_server: Any,
    db: Database,
    settings: Settings,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    receiver: Receiver,
) -> None:
    await subscribe(client, auth, receiver.url)
    r = await client.post(
        "/v1/payouts", json={"amount": "2", "asset": "USDT", "destination": DEST}, headers=auth
    )
    assert r.status_code == 201
    await run_rounds(db, settings)
    async with db.transaction() as session:
        (delivery,) = (await session.execute(select(WebhookDelivery))).scalars().all()

    page = await page_as("operator")
    errors = watch_errors(page)
    dialogs: list[str] = []

    async def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    await page.goto(f"{live_server.url}/dashboard/webhooks")
    row = page.locator(f'tr[data-delivery="{delivery.id}"]')
    await expect(row).to_have_attribute("data-status", "delivered", timeout=WAIT_MS)
    await page.evaluate("() => { window.__marker = 1; }")  # a reload would lose it

    await page.click(f'button[data-action="resend"][data-delivery="{delivery.id}"]')
    await expect(page.locator("#flash .flash-ok")).to_contain_text("Resending payout.created")
    await expect(row).to_have_attribute("data-status", "pending", timeout=WAIT_MS)
    assert dialogs and dialogs[0].startswith("Send payout.created")
    assert await page.evaluate("() => window.__marker") == 1
    assert errors == []
    async with db.transaction() as session:
        actions = (await session.execute(select(AuditEntry.action, AuditEntry.subject))).all()
    assert ("webhook.resend", delivery.id) in [tuple(a) for a in actions]
