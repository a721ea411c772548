"""The Fees page in Chromium: charts drawn, and a new network sample shows up without reload."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from playwright.async_api import expect

from tests.dashboard.test_fees import add_sample
from tonrail import clock
from tonrail.db import Database

WAIT_MS = 20_000

# The newest non-null point of a chart's first dataset, read from Chart.js itself.
LAST_POINT = """(id) => {
  const canvas = document.querySelector(`canvas[data-chart="${id}"]`);
  const chart = canvas && window.Chart && window.Chart.getChart(canvas);
  if (!chart) return null;
  const points = chart.data.datasets[0].data.filter((v) => v !== null);
  return points.length ? points[points.length - 1] : null;
}"""


def watch_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def test_congestion_updates_live_in_tiles_and_charts(
    page_as: Any, live_server: Any, db: Database
) -> None:
    await add_sample(db, clock.now() - timedelta(minutes=3), 1200)
    page = await page_as("viewer")
    errors = watch_errors(page)
    await page.goto(f"{live_server.url}/dashboard/fees?range=1h")
    for chart_id in ("fees-chart-congestion", "fees-chart-fee", "fees-chart-savings"):
        await expect(page.locator(f'canvas[data-chart="{chart_id}"]')).to_have_attribute(
            "data-drawn", "1", timeout=WAIT_MS
        )
    await expect(page.locator("#fees-tile-congestion .value")).to_have_text("12.0 %")
    await page.evaluate("() => { window.__marker = 1; }")

    await add_sample(db, clock.now(), 8800)  # the sampler measured a congested network
    await expect(page.locator("#fees-tile-congestion .value")).to_have_text(
        "88.0 %", timeout=WAIT_MS
    )
    await expect(page.locator("#fees-tile-congestion")).to_have_class("tile bad")
    await page.wait_for_function(
        f"() => ({LAST_POINT})('fees-chart-congestion') === 88", timeout=WAIT_MS
    )
    drawn = await page.locator('canvas[data-chart="fees-chart-congestion"]').get_attribute(
        "data-drawn"
    )
    assert int(drawn or 0) > 1  # the same chart, updated in place
    assert await page.evaluate("() => window.__marker") == 1

    await page.click('#fees-range a:text-is("7d")')
    await expect(page.locator("#fees-range a.active")).to_have_text("7d", timeout=WAIT_MS)
    await expect(page.locator("#fees-live")).to_have_attribute(
        "hx-get", "/dashboard/fees/live?range=7d"
    )
    assert errors == []


async def test_decision_filters_swap_the_table_in_place(page_as: Any, live_server: Any) -> None:
    page = await page_as("operator")
    errors = watch_errors(page)
    await page.goto(f"{live_server.url}/dashboard/fees")
    await expect(page.locator("#fees-decisions-table")).to_contain_text("No decisions yet")
    await page.select_option('#fees-decisions select[name="outcome"]', "confirmed")
    await expect(page.locator("#fees-decisions-table")).to_contain_text(
        "No decisions match these filters", timeout=WAIT_MS
    )
    await expect(page.locator('#fees-decisions select[name="outcome"]')).to_have_value("confirmed")
    assert errors == []
