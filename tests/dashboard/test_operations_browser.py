"""Operations in Chromium: pause stops new signing on the TON rail of the local network and
resume restarts it; a viewer is refused an action; an operator cancels a payout by id."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from playwright.async_api import expect
from sqlalchemy import func, select

from tests.conftest import make_key
from tests.dashboard.test_approvals_browser import accept_dialogs, watch_errors
from tests.helpers import DEST, row_counts
from tests.rails.ton.rail_fixture import Rail, rail  # noqa: F401  (the TON rail on localnet)
from tonrail.db import Database
from tonrail.processing.ton_loop import payout_round
from tonrail.rails.ton.models import TonRequest
from tonrail.security.audit_log import AuditEntry
from tonrail.security.switches import all_switches

WAIT_MS = 20_000


async def signed_requests(db: Database) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(TonRequest)) or 0)


async def test_pause_stops_new_signing_and_resume_restarts_it(
    live_server: Any,  # first: it skips PostgreSQL before the local network starts
    page_as: Any,
    rail: Rail,  # noqa: F811
    db: Database,
) -> None:
    page = await page_as("operator")
    errors = watch_errors(page)
    confirms = accept_dialogs(page)
    await page.goto(f"{live_server.url}/dashboard/operations")
    switch = page.locator("#switch-payments_paused")
    await expect(switch).to_have_attribute("data-enabled", "off", timeout=WAIT_MS)
    await page.fill("#switch-reason-payments_paused-on", "hot wallet maintenance")
    await page.click("#pause")
    # The page reloads so every banner is true: paused, by whom and why.
    await expect(page.locator("#banner-paused")).to_be_visible(timeout=WAIT_MS)
    await expect(switch).to_have_attribute("data-enabled", "on", timeout=WAIT_MS)
    await expect(switch).to_contain_text("hot wallet maintenance")
    await expect(switch).to_contain_text("admin:operator")
    assert confirms and "Pause ALL payments" in confirms[0]

    key = await make_key(db)
    auth = {"Authorization": f"Bearer {key}"}
    payee = rail.net.genesis.wallet("customer").address.to_str(
        is_user_friendly=True, is_bounceable=False
    )
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as api:
        r = await api.post(
            "/v1/payouts",
            json={"amount": "1.25", "asset": "TON", "destination": payee},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        pid = r.json()["id"]

        # The worker goes round and round: nothing is signed while paused.
        for _ in range(15):
            await payout_round(rail.ctx)
            await asyncio.sleep(0.05)
        assert await signed_requests(db) == 0
        got = (await api.get(f"/v1/payouts/{pid}", headers=auth)).json()
        assert got["status"] == "queued" and got["attempts"] == []
        held = page.locator("#held-by-pause")
        await expect(held).to_contain_text(pid, timeout=WAIT_MS)  # live, no reload
        await expect(held.locator(f'tr[data-payment="{pid}"] td.hold')).to_contain_text(
            "payments_paused"
        )

        await page.fill("#switch-reason-payments_paused-off", "done")
        await page.click("#resume")
        await expect(page.locator("#banner-paused")).to_have_count(0, timeout=WAIT_MS)
        await expect(switch).to_have_attribute("data-enabled", "off", timeout=WAIT_MS)
        await expect(page.locator("#held-by-pause")).to_have_count(0)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90  # a loaded 2-core machine is slow
        while True:
            await payout_round(rail.ctx)
            got = (await api.get(f"/v1/payouts/{pid}", headers=auth)).json()
            if got["status"] in ("succeeded", "failed") or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
    assert got["status"] == "succeeded", got
    assert await signed_requests(db) == 1
    async with db.transaction() as session:
        trail = (
            await session.execute(
                select(AuditEntry.actor, AuditEntry.action)
                .where(AuditEntry.action.like("ops.%"))
                .order_by(AuditEntry.seq)
            )
        ).all()
    assert trail == [
        ("admin:operator", "ops.payments_paused.on"),
        ("admin:operator", "ops.payments_paused.off"),
    ]
    assert errors == [], errors


async def test_a_viewer_is_refused_an_action(page_as: Any, live_server: Any, db: Database) -> None:
    page = await page_as("viewer")
    await page.goto(f"{live_server.url}/dashboard/operations")
    await expect(page.locator("#view-only")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#pause")).to_be_disabled()
    before = await row_counts(db)
    # Past the disabled button: the request a forged or stale form would make, sent by this
    # browser with the viewer's own session and CSRF token.
    await page.evaluate(
        """() => htmx.ajax('POST', '/dashboard/operations/switches/payments_paused',
             {source: '#flash', target: '#flash', swap: 'innerHTML',
              values: {enabled: 'on', reason: 'viewer tries'}})"""
    )
    flash = page.locator("#flash .flash")
    await expect(flash).to_have_attribute("data-code", "operate_forbidden", timeout=WAIT_MS)
    await expect(flash).to_contain_text("may not operate")
    assert await row_counts(db) == before
    async with db.transaction() as session:
        assert (await all_switches(session))["payments_paused"] is False


async def test_an_operator_cancels_a_payout_found_by_id(
    page_as: Any, live_server: Any, db: Database
) -> None:
    key = await make_key(db)
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as api:
        r = await api.post(
            "/v1/payouts",
            json={"amount": "3", "asset": "TON", "destination": DEST},
            headers=auth,
        )
        pid = r.json()["id"]
        page = await page_as("operator")
        confirms = accept_dialogs(page)
        await page.goto(f"{live_server.url}/dashboard/operations")
        await page.fill("#lookup-id", pid)
        await page.click("#lookup")
        card = page.locator("#payment-lookup-result")
        await expect(card).to_contain_text("queued", timeout=WAIT_MS)
        await expect(card.locator(".retry .why")).to_contain_text("has not been tried yet")
        await expect(card.locator("button.retry")).to_be_disabled()
        await card.locator("input[name=reason]").fill("sent to the wrong address")
        await card.locator("button.cancel").click()
        await expect(page.locator("#flash .flash")).to_contain_text(
            f"Canceled {pid}", timeout=WAIT_MS
        )
        await expect(card.locator(".status")).to_have_text("canceled", timeout=WAIT_MS)
        await expect(card.locator(".cancel .why")).to_contain_text("nothing to cancel")
        assert any("cannot be undone" in c for c in confirms)
        got = (await api.get(f"/v1/payouts/{pid}", headers=auth)).json()
        assert got["status"] == "canceled"
        assert got["failure_message"] == "sent to the wrong address"
