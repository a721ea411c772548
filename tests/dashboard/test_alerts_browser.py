"""Alerts in Chromium: an operator acknowledges, then resolves, confirming each; no reload."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect
from sqlalchemy import select

from tonrail.db import Database
from tonrail.monitoring import store
from tonrail.monitoring.models import Alert
from tonrail.monitoring.rules import Finding
from tonrail.security.audit_log import AuditEntry

WAIT_MS = 20_000
FINDINGS = [
    Finding("stuck", "stuck", "error", "3 payouts stuck > 180 s", {"ids": ["pay_1"]}),
    Finding("pending", "pending", "warning", "120 payments pending > 100", {"pending": 120}),
]


def watch_errors(page: Any) -> list[str]:
    """Console errors and uncaught exceptions (a CSP violation shows up here)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def alert_ids(db: Database) -> dict[str, str]:
    async with db.transaction() as session:
        rows = (await session.execute(select(Alert.rule, Alert.id))).all()
    return {rule: alert_id for rule, alert_id in rows}


async def test_an_operator_acknowledges_then_resolves_an_alert(
    page_as: Any, live_server: Any, db: Database
) -> None:
    async with db.transaction() as session:
        await store.apply_findings(session, FINDINGS, {}, [], cooldown_seconds=300)
    stuck = (await alert_ids(db))["stuck"]

    page = await page_as("operator")
    errors = watch_errors(page)
    dialogs: list[str] = []

    async def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    await page.goto(f"{live_server.url}/dashboard/alerts")
    row = f'tr[data-alert="{stuck}"]'
    await expect(page.locator(f"#alerts-open {row}")).to_have_count(1, timeout=WAIT_MS)
    await expect(page.locator('[data-count="open"]')).to_have_text("2")
    await expect(page.locator("#nav-open-alerts")).to_have_text("2")
    await page.evaluate("() => { window.__marker = 1; }")  # a reload would lose it

    await page.click(f'#alerts-open button[data-action="acknowledge"][data-alert="{stuck}"]')
    await expect(page.locator(f"#alerts-acknowledged {row}")).to_have_count(1, timeout=WAIT_MS)
    await expect(page.locator(f"#alerts-open {row}")).to_have_count(0)
    await expect(page.locator("#flash .flash-ok")).to_contain_text("Acknowledged")
    await expect(page.locator('[data-count="open"]')).to_have_text("1", timeout=WAIT_MS)
    await expect(page.locator("#nav-open-alerts")).to_have_text("1", timeout=WAIT_MS)
    assert dialogs and dialogs[0].startswith('Acknowledge "3 payouts stuck')

    await page.click(f'#alerts-acknowledged button[data-action="resolve"][data-alert="{stuck}"]')
    await expect(page.locator(f"#alerts-resolved {row}")).to_have_count(1, timeout=WAIT_MS)
    await expect(page.locator(f"#alerts-acknowledged {row}")).to_have_count(0)
    await expect(page.locator("#flash .flash-ok")).to_contain_text("Resolved")
    await expect(page.locator('[data-count="resolved"]')).to_have_text("1")
    assert len(dialogs) == 2 and dialogs[1].startswith('Resolve "3 payouts stuck')

    assert await page.evaluate("() => window.__marker") == 1
    assert page.url.endswith("/dashboard/alerts")
    async with db.transaction() as session:
        alert = await session.get(Alert, stuck)
        assert alert is not None and alert.status == "resolved"
        actions = (
            await session.execute(select(AuditEntry.action).where(AuditEntry.subject == stuck))
        ).scalars()
        assert sorted(actions) == ["alert.acknowledge", "alert.resolve"]
    assert errors == []


async def test_declining_the_confirmation_changes_nothing(
    page_as: Any, live_server: Any, db: Database
) -> None:
    async with db.transaction() as session:
        await store.apply_findings(session, FINDINGS, {}, [], cooldown_seconds=300)
    pending = (await alert_ids(db))["pending"]
    page = await page_as("admin")
    errors = watch_errors(page)
    dismissed: list[str] = []

    async def dismiss(dialog: Any) -> None:
        dismissed.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    await page.goto(f"{live_server.url}/dashboard/alerts/{pending}")
    await expect(page.locator("#alert-status")).to_have_text("open", timeout=WAIT_MS)
    await page.evaluate("() => { document.querySelector('#alert-body').__seen = 1; }")
    await page.click('button[data-action="resolve"]')
    assert dismissed and dismissed[0].startswith("Resolve")
    # The next poll replaces the panel: by then a request, had one been sent, was answered.
    await page.wait_for_function(
        "() => document.querySelector('#alert-body').__seen === undefined", timeout=WAIT_MS
    )
    await expect(page.locator("#alert-status")).to_have_text("open")
    await expect(page.locator("#alert-history li")).to_have_count(1)
    async with db.transaction() as session:
        alert = await session.get(Alert, pending)
        assert alert is not None and alert.status == "open"
    assert errors == []


async def test_a_viewer_sees_the_alerts_but_no_buttons(
    page_as: Any, live_server: Any, db: Database
) -> None:
    async with db.transaction() as session:
        await store.apply_findings(session, FINDINGS, {}, [], cooldown_seconds=300)
    page = await page_as("viewer")
    await page.goto(f"{live_server.url}/dashboard/alerts")
    await expect(page.locator("#alerts-open tr[data-alert]")).to_have_count(2, timeout=WAIT_MS)
    await expect(page.locator("button[data-action]")).to_have_count(0)
