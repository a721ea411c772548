"""Approvals in Chromium: two approvers approve a large payout made through the public API;
the first approval leaves it waiting, the second queues it; the same approver twice is refused
with a clear message."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from tests.conftest import make_key
from tests.helpers import DEST
from tonrail.db import Database

WAIT_MS = 20_000


def accept_dialogs(page: Any) -> list[str]:
    """Accept every confirmation (hx-confirm) and keep its text."""
    seen: list[str] = []

    async def accept(dialog: Any) -> None:
        seen.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    return seen


def watch_errors(page: Any) -> list[str]:
    """Script errors and CSP violations; a refused action's 4xx is expected and not counted
    (Chromium and htmx both log it as a console error)."""
    errors: list[str] = []
    expected = ("Failed to load resource", "htmx:responseError", "Response Status Error Code")

    def console(message: Any) -> None:
        if message.type == "error" and not any(e in message.text for e in expected):
            errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def test_two_approvers_approve_a_large_payout(
    page_as: Any, live_server: Any, db: Database
) -> None:
    key = await make_key(db)
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as api:
        r = await api.post(
            "/v1/payouts",
            json={"amount": "1500000", "asset": "USDT", "destination": DEST},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        assert r.json()["status"] == "requires_approval"

        first = await page_as("approver")
        errors = watch_errors(first)
        confirms = accept_dialogs(first)
        await first.goto(f"{live_server.url}/dashboard/approvals")
        row = first.locator(f"#approval-{pid}")
        await expect(row).to_be_visible(timeout=WAIT_MS)
        await expect(row.locator(".approval-count")).to_have_text("0 of 2")
        await row.locator("button.approve").click()
        flash = first.locator("#flash .flash")
        await expect(flash).to_contain_text("1 of 2", timeout=WAIT_MS)
        await expect(flash).to_contain_text("waits for 1 more approver")
        await expect(row.locator(".approval-count")).to_have_text("1 of 2", timeout=WAIT_MS)
        await expect(row).to_contain_text("admin:approver (you)")
        assert confirms and pid in confirms[0]
        got = (await api.get(f"/v1/payouts/{pid}", headers=auth)).json()
        assert got["status"] == "requires_approval" and got["approvals"] == ["admin:approver"]

        # The same approver once more: refused, with a message that says why.
        await row.locator("button.approve").click()
        await expect(flash).to_have_attribute("data-code", "already_approved", timeout=WAIT_MS)
        await expect(flash).to_contain_text("You have already approved this payout")
        got = (await api.get(f"/v1/payouts/{pid}", headers=auth)).json()
        assert got["status"] == "requires_approval" and got["approvals"] == ["admin:approver"]

        second = await page_as("approver2")
        accept_dialogs(second)
        await second.goto(f"{live_server.url}/dashboard/approvals")
        row2 = second.locator(f"#approval-{pid}")
        await expect(row2.locator(".approval-count")).to_have_text("1 of 2", timeout=WAIT_MS)
        await row2.locator("button.approve").click()
        await expect(second.locator("#flash .flash")).to_contain_text(
            "queued for sending", timeout=WAIT_MS
        )
        # Gone from the list on both pages (the first one by polling, no reload).
        await expect(row2).to_have_count(0, timeout=WAIT_MS)
        await expect(row).to_have_count(0, timeout=WAIT_MS)
        got = (await api.get(f"/v1/payouts/{pid}", headers=auth)).json()
        assert got["status"] == "queued"
        assert got["approvals"] == ["admin:approver", "admin:approver2"]
    assert errors == [], errors


async def test_an_approver_rejects_with_a_reason(
    page_as: Any, live_server: Any, db: Database
) -> None:
    key = await make_key(db)
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as api:
        r = await api.post(
            "/v1/payouts",
            json={"amount": "2000000", "asset": "USDT", "destination": DEST},
            headers=auth,
        )
        pid = r.json()["id"]
        page = await page_as("approver")
        accept_dialogs(page)
        await page.goto(f"{live_server.url}/dashboard/approvals")
        row = page.locator(f"#approval-{pid}")
        await row.locator("input[name=reason]").fill("payee <unknown>")
        await row.locator("button.reject").click()
        await expect(page.locator("#flash .flash")).to_contain_text("Rejected", timeout=WAIT_MS)
        await expect(row).to_have_count(0, timeout=WAIT_MS)
        await expect(page.locator("#approval-decisions")).to_contain_text("payee <unknown>")
        got = (await api.get(f"/v1/payouts/{pid}", headers=auth)).json()
        assert got["status"] == "canceled" and got["failure_message"] == "payee <unknown>"
