"""The Errors page in Chromium: the chart is drawn, follows new failures live, and ranges switch."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from tonrail.db import Database
from tonrail.settings import Settings

from .payments_fixtures import WAIT_MS, address, attempt, move, payout, watch_errors

PAYEE, _ = address(0x84)

# Failures of one error code in the chart's own data, as Chart.js holds it.
CHART_COUNT = """(code) => {
  const canvas = document.querySelector('canvas[data-chart="errors-chart"]');
  const chart = canvas && window.Chart && window.Chart.getChart(canvas);
  if (!chart) return -1;
  const set = chart.data.datasets.find((d) => d.label === code);
  return set ? set.data.reduce((a, b) => a + b, 0) : 0;
}"""


async def fail_once(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database, settings: Settings
) -> str:
    pid = await payout(client, auth, destination=PAYEE)
    await move(db, settings, pid, "processing")
    await attempt(db, pid, "ton", "failed", error_code="bounced", error_message="bounced back")
    return pid


async def test_the_chart_and_tables_follow_new_failures_without_a_reload(
    page_as: Any,
    live_server: Any,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
) -> None:
    first = await fail_once(client, auth, db, settings)
    page = await page_as("viewer")
    errors = watch_errors(page)
    await page.goto(f"{live_server.url}/dashboard/errors?range=1h")
    canvas = page.locator('canvas[data-chart="errors-chart"]')
    await expect(canvas).to_have_attribute("data-drawn", "1", timeout=WAIT_MS)
    await page.wait_for_function(f"() => ({CHART_COUNT})('bounced') === 1", timeout=WAIT_MS)
    await expect(page.locator("#errors-total")).to_have_text("1")
    await expect(page.locator("#errors-recent")).to_contain_text(first)
    await page.evaluate("() => { window.__same_page = 1; }")

    second = await fail_once(client, auth, db, settings)
    await expect(page.locator("#errors-total")).to_have_text("2", timeout=WAIT_MS)
    await page.wait_for_function(f"() => ({CHART_COUNT})('bounced') === 2", timeout=WAIT_MS)
    await expect(page.locator("#errors-recent")).to_contain_text(second)
    await expect(page.locator("#errors-counterparties")).to_contain_text(PAYEE)
    assert await page.evaluate("() => window.__same_page") == 1
    assert int(await canvas.get_attribute("data-drawn") or 0) > 1  # the same chart, redrawn

    await page.click("#errors-range a:text('7d')")
    await expect(page).to_have_url(f"{live_server.url}/dashboard/errors?range=7d")
    await expect(page.locator("#errors-total")).to_have_text("2", timeout=WAIT_MS)
    await page.click(f"#errors-counterparties a:text('{PAYEE}')")
    await expect(page.locator("#payments-table tbody tr")).to_have_count(2, timeout=WAIT_MS)
    assert not errors, errors
