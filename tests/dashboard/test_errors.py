"""The Errors page over HTTP on both databases: failures by code, rail, time and payee."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tonrail import clock
from tonrail.chain.address import counterparty_key
from tonrail.db import Database
from tonrail.security.lockouts import lock
from tonrail.settings import Settings

from .payments_fixtures import XSS_SCRIPT, address, attempt, move, payout

SignIn = Callable[[str], Awaitable[str]]
ALICE, ALICE_RAW = address(0x31)
BOB, BOB_RAW = address(0x42)


def chart_of(html: str) -> dict[str, Any]:
    match = re.search(r'<div hidden class="chart-data" id="errors-chart">(.*?)</div>', html)
    assert match, "no chart data"
    config: dict[str, Any] = json.loads(match.group(1))
    return config


def rows(html: str, table: str) -> list[list[str]]:
    body = html.split(f'id="{table}"')[1].split("</table>")[0].split("<tbody>")[1]
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
        ]
        for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]


@pytest.fixture
async def failures(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database, settings: Settings
) -> datetime:
    """Failures at known times before NOW (returned); the clock stays at NOW afterwards."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    made = now - timedelta(days=9)

    async def failing(dest: str, rail: str, code: str, ago: timedelta, **kw: Any) -> str:
        pid = await payout(client, auth, destination=dest, at=made)
        await move(db, settings, pid, "processing", at=made)
        await attempt(db, pid, rail, "failed", error_code=code, at=now - ago, **kw)
        return pid

    # The last hour: BOB bounces three times (spelled two ways), two TON payouts succeed.
    await failing(BOB, "ton", "bounced", timedelta(minutes=10, seconds=-5))
    await failing(BOB_RAW, "ton", "bounced", timedelta(minutes=10, seconds=-20))
    await failing(BOB, "ton", "bounced", timedelta(minutes=30), error_message=XSS_SCRIPT)
    for _ in range(2):
        pid = await payout(client, auth, destination=ALICE, at=made)
        await move(db, settings, pid, "processing", at=made)
        await attempt(db, pid, "ton", "confirmed", at=now - timedelta(minutes=5))
    # The last day: a Stripe decline, and a payout no rail could take (no attempt at all).
    await failing(ALICE, "stripe", "stripe_card_declined", timedelta(hours=5))
    stuck = await payout(client, auth, destination=ALICE, at=made)
    await move(
        db,
        settings,
        stuck,
        "failed",
        at=now - timedelta(hours=2),
        failure_code="no_rail_available",
    )
    # The last week: an expired TON request; and one failure older than every range.
    pid = await payout(client, auth, destination=ALICE_RAW, at=made)
    await move(db, settings, pid, "processing", at=made)
    await attempt(db, pid, "ton", "expired", error_code="expired", at=now - timedelta(days=3))
    await failing(ALICE, "paypal", "paypal_denied", timedelta(days=8))
    async with db.transaction() as session:
        await lock(session, "counterparty", counterparty_key(BOB), 3, "test")
    clock.set_clock(lambda: now)
    return now


async def test_failures_by_code_rail_payee_and_time_for_each_range(
    client: httpx.AsyncClient, signed_in: SignIn, failures: datetime
) -> None:
    await signed_in("viewer")
    hour = await client.get("/dashboard/errors?range=1h")
    assert hour.status_code == 200
    assert rows(hour.text, "errors-by-code") == [["bounced", "3", "100.0 %", "9 min ago"]]
    assert rows(hour.text, "errors-by-rail") == [["ton", "3", "5", "60.0 %"]]
    # BOB's two spellings are one payee; the lock shows.
    (bob,) = rows(hour.text, "errors-counterparties")
    assert bob[:3] == [BOB, "3", "bounced"] and "locked" in bob[4]
    chart = chart_of(hour.text)
    assert chart["type"] == "bar" and len(chart["data"]["labels"]) == 61
    (bounced,) = chart["data"]["datasets"]
    assert bounced["label"] == "bounced"
    assert bounced["data"][50] == 2 and bounced["data"][30] == 1 and sum(bounced["data"]) == 3
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in hour.text
    assert "<script>window" not in hour.text

    day = await client.get("/dashboard/errors")  # 24 h by default
    assert [r[:2] for r in rows(day.text, "errors-by-code")] == [
        ["bounced", "3"],
        ["no_rail_available", "1"],
        ["stripe_card_declined", "1"],
    ]
    assert rows(day.text, "errors-by-rail") == [
        ["ton", "3", "5", "60.0 %"],
        ["(none)", "1", "0", "-"],
        ["stripe", "1", "1", "100.0 %"],
    ]
    payees = rows(day.text, "errors-counterparties")
    assert [p[:3] for p in payees] == [
        [BOB, "3", "bounced"],
        [ALICE, "2", "no_rail_available, stripe_card_declined"],
    ]
    assert sum(sum(d["data"]) for d in chart_of(day.text)["data"]["datasets"]) == 5
    assert len(chart_of(day.text)["data"]["labels"]) == 25

    week = await client.get("/dashboard/errors?range=7d")
    assert 'id="errors-total">6<' in week.text
    codes = {r[0]: r[1] for r in rows(week.text, "errors-by-code")}
    assert codes == {
        "bounced": "3",
        "no_rail_available": "1",
        "stripe_card_declined": "1",
        "expired": "1",
    }
    assert "paypal_denied" not in week.text  # eight days ago


async def test_the_live_panel_and_a_bad_range(
    client: httpx.AsyncClient, signed_in: SignIn, failures: datetime
) -> None:
    await signed_in("viewer")
    page = await client.get("/dashboard/errors?range=1h")
    assert 'data-chart="errors-chart"' in page.text and "chart.umd.min.js" in page.text
    assert 'hx-trigger="every 2s"' in page.text
    panel = await client.get("/dashboard/errors?range=1h", headers={"HX-Request": "true"})
    assert panel.status_code == 200 and "<html" not in panel.text
    assert panel.text.lstrip().startswith('<div id="errors-live"')
    assert 'id="errors-chart"' in panel.text and 'data-chart="errors-chart"' not in panel.text
    bad = await client.get("/dashboard/errors?range=1y")
    assert bad.status_code == 400 and 'data-code="range_invalid"' in bad.text
    bad_panel = await client.get("/dashboard/errors?range=<b>", headers={"HX-Request": "true"})
    assert bad_panel.status_code == 400 and "<b>" not in bad_panel.text


async def test_an_empty_range_says_so(client: httpx.AsyncClient, signed_in: SignIn) -> None:
    await signed_in("viewer")
    r = await client.get("/dashboard/errors?range=1h")
    assert r.status_code == 200
    assert 'id="errors-total">0<' in r.text and 'id="errors-none"' in r.text
    assert sum(sum(d["data"]) for d in chart_of(r.text)["data"]["datasets"]) == 0


async def test_a_report_is_shared_for_a_few_seconds_then_recomputed(
    client: httpx.AsyncClient,
    signed_in: SignIn,
    failures: datetime,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
) -> None:
    await signed_in("viewer")
    first = await client.get("/dashboard/errors?range=24h")
    assert 'id="errors-total">5<' in first.text
    pid = await payout(client, auth, destination=ALICE, at=failures - timedelta(hours=1))
    await move(db, settings, pid, "processing", at=failures - timedelta(hours=1))
    await attempt(db, pid, "ton", "failed", error_code="bounced", at=failures)
    clock.set_clock(lambda: failures + timedelta(seconds=10))
    cached = await client.get("/dashboard/errors?range=24h", headers={"HX-Request": "true"})
    assert 'id="errors-total">5<' in cached.text and "(as of 10 s ago)" in cached.text
    clock.set_clock(lambda: failures + timedelta(seconds=15))
    fresh = await client.get("/dashboard/errors?range=24h", headers={"HX-Request": "true"})
    assert 'id="errors-total">6<' in fresh.text and "as of" not in fresh.text
