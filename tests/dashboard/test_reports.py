"""The Reports page over HTTP, on SQLite and PostgreSQL: a viewer picks a month and downloads
its report as CSV (the same bytes as the command) or PDF; bad input is a 400 with its code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.dashboard.test_overview import Seeder
from tests.reports.seed import LARGE_USDT, NOW, expected_csv, payments_by_key, seed_november
from tonrail import clock
from tonrail.db import Database
from tonrail.settings import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"report_large_transaction_usdt": LARGE_USDT})


async def test_a_viewer_downloads_the_month_as_csv_and_pdf(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    signed_in: Callable[[str], Awaitable[str]],
) -> None:
    ids = await seed_november(Seeder(client, auth, db, settings), db)
    clock.set_clock(lambda: NOW)
    await signed_in("viewer")
    page = await client.get("/dashboard/reports")
    assert page.status_code == 200
    assert 'href="/dashboard/reports" class="active"' in page.text
    assert 'name="period" value="2026-11"' in page.text  # the last whole month
    assert 'name="week" value="2026-W49"' in page.text
    assert 'data-action="download-pdf"' in page.text and "6.000000 USDT" in page.text

    csv = await client.get("/dashboard/reports/download?period=2026-11&format=csv")
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.headers["content-disposition"] == (
        'attachment; filename="tonrail-report-2026-11.csv"'
    )
    assert csv.text == expected_csv(await payments_by_key(db, ids))

    pdf = await client.get("/dashboard/reports/download?period=2026-11&format=pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")

    week = await client.get("/dashboard/reports/download?week=2026-W47&format=csv")
    assert week.status_code == 200
    assert f"large_transactions,{ids['p5']}," in week.text
    assert ids["p1"] not in week.text  # 3 November: week 45


async def test_bad_periods_and_formats_are_refused_with_their_code(
    client: httpx.AsyncClient, signed_in: Callable[[str], Awaitable[str]]
) -> None:
    await signed_in("viewer")
    for query, message in (
        ("period=2026-13&format=csv", "period must be a month as YYYY-MM"),
        ("period=2026-11&format=xlsx", "format must be csv or pdf"),
        ("week=2026-W60", "week must be an ISO week"),
        ("", "period must be a month as YYYY-MM"),
    ):
        r = await client.get(f"/dashboard/reports/download?{query}")
        assert r.status_code == 400, query
        assert message in r.text and "param_invalid" in r.text


async def test_signed_out_visitors_get_no_report(client: httpx.AsyncClient) -> None:
    r = await client.get("/dashboard/reports/download?period=2026-11&format=csv")
    assert r.status_code in (302, 303, 401)
    assert "section," not in r.text
