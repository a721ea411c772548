"""The Payments pages in Chromium: filter the history (URL kept), export the CSV, open a payment."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from playwright.async_api import expect

from tonrail.db import Database
from tonrail.settings import Settings

from .payments_fixtures import (
    WAIT_MS,
    address,
    attempt,
    downloaded_csv,
    invoice,
    move,
    payout,
    watch_errors,
)

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
ALICE, _ = address(0x51)
BOB, BOB_RAW = address(0x62)


async def test_filter_the_history_export_it_and_open_a_payment(
    page_as: Any,
    live_server: Any,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
) -> None:
    made = {
        "ton1": await payout(client, auth, amount="1.5", destination=ALICE, at=T0),
        "ton2": await payout(
            client, auth, amount="2", destination=ALICE, at=T0 + timedelta(minutes=1)
        ),
        "usdt_small": await payout(
            client,
            auth,
            amount="12.5",
            asset="USDT",
            destination=BOB,
            at=T0 + timedelta(minutes=2),
        ),
        "usdt_big": await payout(
            client,
            auth,
            amount="250.000001",
            asset="USDT",
            destination=BOB_RAW,
            at=T0 + timedelta(minutes=3),
        ),
    }
    made["invoice"], _ = await invoice(
        client, auth, amount="9", asset="USDT", at=T0 + timedelta(minutes=4)
    )
    await move(db, settings, made["usdt_big"], "processing")
    await attempt(db, made["usdt_big"], "ton", "failed", error_code="bounced")

    page = await page_as("viewer")
    errors = watch_errors(page)
    await page.goto(f"{live_server.url}/dashboard/payments")
    rows = page.locator("#payments-table tbody tr")
    await expect(rows).to_have_count(5, timeout=WAIT_MS)
    await expect(page.locator("#payments-count")).to_have_text("5 payments match")

    # Filters apply without a reload and land in the address bar.
    await page.evaluate("() => { window.__same_page = 1; }")
    await page.select_option("select[name=asset]", "USDT")
    await expect(rows).to_have_count(3, timeout=WAIT_MS)
    await expect(page).to_have_url(re.compile(r"/dashboard/payments\?asset=USDT$"), timeout=WAIT_MS)
    await page.select_option("select[name=direction]", "out")
    await expect(rows).to_have_count(2, timeout=WAIT_MS)
    # Bob's address in another spelling finds both of his payouts; then an amount bound.
    await page.fill("#filter-q", BOB_RAW)
    await expect(page).to_have_url(re.compile(r"q=0%3A62"), timeout=WAIT_MS)
    await expect(rows).to_have_count(2, timeout=WAIT_MS)
    await page.fill("input[name=amount_min]", "100")
    await page.press("input[name=amount_min]", "Enter")
    await expect(rows).to_have_count(1, timeout=WAIT_MS)
    await expect(rows.first).to_have_attribute("data-payment", made["usdt_big"])
    await expect(page).to_have_url(re.compile(r"amount_min=100"), timeout=WAIT_MS)
    assert await page.evaluate("() => window.__same_page") == 1  # never reloaded

    # A bad value is refused with its reason; fixing it brings the rows back.
    await page.fill("input[name=amount_min]", "1e3")
    await page.press("input[name=amount_min]", "Enter")
    problem = page.locator("#filter-error")
    await expect(problem).to_be_visible(timeout=WAIT_MS)
    await expect(problem).to_have_attribute("data-param", "amount_min")
    await page.fill("input[name=amount_min]", "100")
    await page.press("input[name=amount_min]", "Enter")
    await expect(rows).to_have_count(1, timeout=WAIT_MS)

    # The export is the filtered set, exact.
    async with page.expect_download(timeout=WAIT_MS) as downloading:
        await page.click("#export-csv")
    download = await downloading.value
    assert download.suggested_filename.startswith("payments-")
    assert download.suggested_filename.endswith(".csv")
    exported = await downloaded_csv(download)
    assert [r["id"] for r in exported] == [made["usdt_big"]]
    assert exported[0]["amount"] == "250.000001" and exported[0]["asset"] == "USDT"
    assert exported[0]["rail"] == "ton" and exported[0]["counterparty"] == BOB_RAW

    # The URL alone restores the filtered list (a bookmark, a shared link, a reload).
    await page.reload()
    await expect(page.locator("select[name=asset]")).to_have_value("USDT", timeout=WAIT_MS)
    await expect(page.locator("input[name=amount_min]")).to_have_value("100")
    await expect(rows).to_have_count(1, timeout=WAIT_MS)

    # Open the payment: facts, its failed TON attempt, the ledger.
    await page.click(f"a[href='/dashboard/payments/{made['usdt_big']}']")
    await expect(page.locator("#payment-status")).to_have_text("processing", timeout=WAIT_MS)
    await expect(page.locator("#payment-amount")).to_contain_text("250.000001 USDT")
    await expect(page.locator("#attempts li")).to_have_count(1)
    await expect(page.locator("#attempts")).to_contain_text("bounced")
    await expect(page.locator("#ledger")).to_contain_text("payout.reserved")
    await page.go_back()
    await expect(rows).to_have_count(1, timeout=WAIT_MS)
    # Only the refused filter shows in the console (Chromium logs every 4xx response).
    assert all("400" in e for e in errors), errors


async def test_the_first_page_follows_new_payments(
    page_as: Any, live_server: Any, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    page = await page_as("viewer")
    await page.goto(f"{live_server.url}/dashboard/payments?asset=TON")
    await expect(page.locator("#payments-empty")).to_be_visible(timeout=WAIT_MS)
    await page.evaluate("() => { window.__same_page = 1; }")
    pid = await payout(client, auth, amount="3")
    await payout(client, auth, amount="3", asset="USDT")
    rows = page.locator("#payments-table tbody tr")
    await expect(rows).to_have_count(1, timeout=WAIT_MS)
    await expect(rows.first).to_have_attribute("data-payment", pid)
    assert await page.evaluate("() => window.__same_page") == 1
    assert page.url.endswith("/dashboard/payments?asset=TON")
