"""The Overview in Chromium: a payout made through the public API shows up live, no reload."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from tests.conftest import make_key
from tonrail.db import Database

DESTINATION = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"
WAIT_MS = 20_000

# The chart's own data, read from Chart.js: payments created per status, summed over buckets.
CHART_TOTAL = """([id, status]) => {
  const canvas = document.querySelector(`canvas[data-chart="${id}"]`);
  const chart = canvas && window.Chart && window.Chart.getChart(canvas);
  if (!chart) return -1;
  const set = chart.data.datasets.find((d) => d.label === status);
  return set ? set.data.reduce((a, b) => a + b, 0) : 0;
}"""


def watch_errors(page: Any) -> list[str]:
    """Console errors and uncaught exceptions (a CSP violation shows up here)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def test_a_payout_appears_on_the_overview_without_a_reload(
    page_as: Any, live_server: Any, db: Database
) -> None:
    page = await page_as("viewer")
    errors = watch_errors(page)
    await page.goto(f"{live_server.url}/dashboard/overview?range=1h")
    pending = page.locator("#tile-pending")
    created = page.locator("#tile-created")
    await expect(pending).to_have_attribute("data-value", "0", timeout=WAIT_MS)
    await expect(created).to_have_attribute("data-value", "0")
    status_canvas = page.locator('canvas[data-chart="chart-status"]')
    await expect(status_canvas).to_have_attribute("data-drawn", "1", timeout=WAIT_MS)
    # Marks that a reload or a re-created chart would lose.
    await page.evaluate(
        """() => {
          window.__marker = 1;
          document.querySelector('canvas[data-chart="chart-status"]').__marker = 1;
        }"""
    )

    key = await make_key(db)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as api:
        r = await api.post(
            "/v1/payouts",
            json={"amount": "1.5", "asset": "TON", "destination": DESTINATION},
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "overview-browser-1"},
        )
    assert r.status_code == 201, r.text

    await expect(pending).to_have_attribute("data-value", "1", timeout=WAIT_MS)
    await expect(created).to_have_attribute("data-value", "1", timeout=WAIT_MS)
    await expect(pending.locator(".value")).to_have_text("1")
    # The chart took the new data in place: the same canvas and chart, one more queued payout.
    await page.wait_for_function(
        f"(args) => ({CHART_TOTAL})(args) === 1",
        arg=["chart-status", "queued"],
        timeout=WAIT_MS,
    )
    assert await page.evaluate("() => window.__marker") == 1
    assert (
        await page.evaluate(
            """() => document.querySelector('canvas[data-chart="chart-status"]').__marker"""
        )
        == 1
    )
    assert int(await status_canvas.get_attribute("data-drawn") or 0) > 1
    assert page.url.endswith("/dashboard/overview?range=1h")
    assert errors == []


async def test_ranges_switch_and_keep_polling_their_own_range(
    page_as: Any, live_server: Any
) -> None:
    page = await page_as("operator")
    errors = watch_errors(page)
    await page.goto(f"{live_server.url}/dashboard/overview?range=1h")
    await page.click('nav.range a[data-range="7d"]')
    await expect(page.locator('nav.range a[data-range="7d"]')).to_have_class("active")
    live = page.locator("#overview-live")
    await expect(live).to_have_attribute("data-range", "7d")
    await expect(live).to_have_attribute("hx-get", "/dashboard/overview/live?range=7d")
    first = await live.get_attribute("data-at")
    # A poll replaced the panel (a newer timestamp), still for 7 days.
    await page.wait_for_function(
        "(first) => document.querySelector('#overview-live').dataset.at !== first",
        arg=first,
        timeout=WAIT_MS,
    )
    await expect(live).to_have_attribute("data-range", "7d")
    await expect(page.locator("#overview-details #hot-wallet")).to_have_count(1)
    labels = await page.evaluate(
        """() => window.Chart.getChart(
             document.querySelector('canvas[data-chart="chart-congestion"]')).data.labels.length"""
    )
    assert labels == 43
    assert errors == []
