"""Hostile text from customers and the chain stays inert text in Chromium: the payment list,
the detail pages (description, metadata, an on-chain comment), a live refresh, and the CSV."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from tonrail import clock
from tonrail.db import Database
from tonrail.rails.ton.models import TonDeposit

from .payments_fixtures import (
    PHISHING,
    WAIT_MS,
    XSS_IMG,
    XSS_SCRIPT,
    address,
    downloaded_csv,
    invoice,
    payout,
)

PAYER, PAYER_RAW = address(0x73)

# Counts every settled htmx swap, so the test knows a live refresh has happened.
COUNT_SWAPS = """() => {
  window.__swaps = 0;
  document.body.addEventListener("htmx:afterSettle", () => { window.__swaps += 1; });
}"""


async def inert(page: Any) -> None:
    """Nothing ran: no flag, no dialog, no injected element or link."""
    assert await page.evaluate("() => window.__xss") is None
    assert await page.locator("main script:not([src])").count() == 0
    assert await page.locator("img[src=x], img[onerror]").count() == 0
    assert await page.locator(f'a[href^="{PHISHING[:30]}"]').count() == 0


async def test_scripts_markup_and_phishing_links_render_as_text(
    page_as: Any,
    live_server: Any,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
) -> None:
    out = await payout(
        client,
        auth,
        amount="4.2",
        description=XSS_SCRIPT,
        metadata={"note": XSS_IMG, "support": PHISHING},
    )
    inv, reference = await invoice(client, auth, amount="5", description=XSS_IMG)
    comment = f"{reference} {XSS_SCRIPT} {PHISHING}"
    async with db.transaction() as session:  # what the deposit watcher records from the chain
        session.add(
            TonDeposit(
                id="dep_hostile",
                wallet=PAYER_RAW,
                tx_hash="9f" * 32,
                lt=7,
                asset="USDT",
                amount=5_000_000,
                sender=PAYER_RAW,
                comment=comment,
                payment_id=inv,
                status="credited",
                created_at=clock.now(),
            )
        )

    page = await page_as("viewer")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    await page.goto(f"{live_server.url}/dashboard/payments")
    out_row = page.locator(f'tr[data-payment="{out}"]')
    await expect(out_row.locator("td.desc")).to_have_text(XSS_SCRIPT, timeout=WAIT_MS)
    await expect(page.locator(f'tr[data-payment="{inv}"] td.desc')).to_have_text(XSS_IMG)
    await inert(page)
    # A live refresh swaps the rows in again: still text.
    await page.evaluate(COUNT_SWAPS)
    await page.wait_for_function("() => window.__swaps >= 1", timeout=WAIT_MS)
    await expect(out_row.locator("td.desc")).to_have_text(XSS_SCRIPT)
    await inert(page)

    await page.goto(f"{live_server.url}/dashboard/payments/{out}")
    await expect(page.locator("#payment-description")).to_have_text(XSS_SCRIPT, timeout=WAIT_MS)
    metadata = page.locator("#payment-metadata")
    await expect(metadata).to_contain_text(XSS_IMG)
    await expect(metadata).to_contain_text(PHISHING)
    await inert(page)

    await page.goto(f"{live_server.url}/dashboard/payments/{inv}")
    await expect(page.locator("#payment-description")).to_have_text(XSS_IMG, timeout=WAIT_MS)
    await expect(page.locator("#deposits .deposit-comment")).to_have_text(comment)
    await inert(page)

    await page.goto(f"{live_server.url}/dashboard/payments")
    async with page.expect_download(timeout=WAIT_MS) as downloading:
        await page.click("#export-csv")
    rows = {r["id"]: r for r in await downloaded_csv(await downloading.value)}
    assert rows[out]["description"] == XSS_SCRIPT  # the same text, for a text file
    assert rows[inv]["description"] == XSS_IMG
    assert PHISHING in rows[out]["metadata"]
    await inert(page)
    assert dialogs == []
