"""Backup payments in Chromium: a breaker opening shows up live; a reason filters the list."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tonrail.db import Database
from tonrail.processing.health import record_rail_error
from tonrail.rails.router import BreakerPolicy

WAIT_MS = 20_000


def watch_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def test_a_breaker_opening_shows_without_reload(
    page_as: Any, live_server: Any, db: Database
) -> None:
    page = await page_as("viewer")
    errors = watch_errors(page)
    await page.goto(f"{live_server.url}/dashboard/backup?range=1h")
    for chart_id in ("backup-chart-attempts", "backup-chart-success"):
        await expect(page.locator(f'canvas[data-chart="{chart_id}"]')).to_have_attribute(
            "data-drawn", "1", timeout=WAIT_MS
        )
    stripe = page.locator('#backup-breakers tr[data-rail="stripe"]')
    await expect(stripe).to_have_attribute("data-state", "closed")
    await page.evaluate("() => { window.__marker = 1; }")

    policy = BreakerPolicy(failure_threshold=5, open_seconds=60)
    async with db.transaction() as session:
        for _ in range(policy.failure_threshold):
            await record_rail_error(session, "stripe", policy, "stripe answered 503")
    await expect(stripe).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    await expect(stripe).to_contain_text("stripe answered 503")
    await expect(page.locator("#backup-tile-breakers .value")).to_have_text("1 not closed")
    assert await page.evaluate("() => window.__marker") == 1
    assert errors == []


async def test_the_direction_switch_keeps_the_range(page_as: Any, live_server: Any) -> None:
    page = await page_as("operator")
    errors = watch_errors(page)
    await page.goto(f"{live_server.url}/dashboard/backup?range=7d")
    await page.click('#backup-range a:text-is("payouts")')
    await expect(page.locator("#backup-live")).to_have_attribute(
        "hx-get", "/dashboard/backup/live?range=7d&direction=out", timeout=WAIT_MS
    )
    await page.select_option('#backup-fallbacks select[name="status"]', "failed")
    await expect(page.locator("#backup-fallbacks-table")).to_contain_text(
        "match these filters", timeout=WAIT_MS
    )
    assert errors == []
