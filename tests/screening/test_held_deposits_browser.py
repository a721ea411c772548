"""Deposits held by AML/KYC screening on the Approvals page, in Chromium: an approver
freezes one with a reason and releases another; each leaves the list, the invoices move
(failed with screening_blocked / succeeded) and the page logs no script error."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from tests.conftest import make_key
from tests.dashboard.conftest import admins, browser, live_server, page_as
from tests.dashboard.test_approvals_browser import accept_dialogs, watch_errors
from tests.screening.test_held_deposit_decisions import held_deposit
from tonrail.db import Database

__all__ = ["admins", "browser", "live_server", "page_as"]  # fixtures, used by name
WAIT_MS = 20_000
TON = 10**9


async def test_an_approver_freezes_one_held_deposit_and_releases_another(
    page_as: Any, live_server: Any, db: Database
) -> None:
    key = await make_key(db)
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as api:
        invoices = []
        for _ in range(2):
            r = await api.post("/v1/invoices", json={"amount": "2", "asset": "TON"}, headers=auth)
            assert r.status_code == 201, r.text
            invoices.append(r.json()["id"])
        frozen = await held_deposit(db, invoices[0], 2 * TON)
        released = await held_deposit(db, invoices[1], 2 * TON)

        page = await page_as("approver")
        errors = watch_errors(page)
        confirms = accept_dialogs(page)
        await page.goto(f"{live_server.url}/dashboard/approvals")
        row = page.locator(f"#held-{frozen}")
        await expect(row).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#held-total")).to_have_text("(2)")
        await row.locator("input[name=reason]").fill("sender confirmed on the SDN list")
        await row.locator("button.freeze").click()
        flash = page.locator("#flash .flash")
        await expect(flash).to_contain_text(f"Froze {frozen}", timeout=WAIT_MS)
        await expect(row).to_have_count(0, timeout=WAIT_MS)
        assert confirms and frozen in confirms[0]

        other = page.locator(f"#held-{released}")
        await other.locator("button.release").click()
        await expect(flash).to_contain_text(f"Released {released}", timeout=WAIT_MS)
        await expect(other).to_have_count(0, timeout=WAIT_MS)
        await expect(page.locator("#held-empty")).to_be_visible(timeout=WAIT_MS)

        failed = (await api.get(f"/v1/invoices/{invoices[0]}", headers=auth)).json()
        assert (failed["status"], failed["failure_code"]) == ("failed", "screening_blocked")
        paid = (await api.get(f"/v1/invoices/{invoices[1]}", headers=auth)).json()
        assert paid["status"] == "succeeded" and paid["amount_received_minor"] == 2 * TON
    assert errors == [], errors
