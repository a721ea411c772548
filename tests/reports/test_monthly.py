"""The monthly compliance report and the weekly large-transaction list, on SQLite and
PostgreSQL: the CSV checked line by line, the PDF rendered to a picture (pdftoppm) and read
back as text (pdftotext)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.dashboard.test_overview import Seeder
from tests.reports.seed import LARGE_USDT, NOW, expected_csv, payments_by_key, seed_november
from tonrail import clock
from tonrail.cli import app as cli
from tonrail.db import Database
from tonrail.errors import InvalidRequest
from tonrail.reports import contents, periods
from tonrail.reports.render import to_csv, to_pdf
from tonrail.settings import Settings, get_settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"report_large_transaction_usdt": LARGE_USDT})


@pytest.fixture
async def november(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database, settings: Settings
) -> dict[str, str]:
    ids = await seed_november(Seeder(client, auth, db, settings), db)
    clock.set_clock(lambda: NOW)
    return ids


async def _monthly(db: Database, settings: Settings, label: str) -> contents.Report:
    async with db.transaction() as session:
        return await contents.monthly(session, settings, periods.month(label), NOW)


async def test_the_csv_says_exactly_what_happened_in_the_month(
    db: Database, settings: Settings, november: dict[str, str]
) -> None:
    report = await _monthly(db, settings, "2026-11")
    expected = expected_csv(await payments_by_key(db, november))
    assert to_csv(report).decode() == expected
    assert november["p6"] not in expected and november["p0"] not in expected


async def test_the_large_threshold_defaults_to_the_approval_threshold(
    db: Database, settings: Settings, november: dict[str, str]
) -> None:
    default = settings.model_copy(update={"report_large_transaction_usdt": 0})
    report = await _monthly(db, default, "2026-11")
    (large,) = [s for s in report.sections if s.name == "large_transactions"]
    assert [row[0] for row in large.rows] == [november["p5"]]  # 1,500,000 >= 1,000,000 USDT
    assert "from 1000000.000000 USDT" in large.title


async def test_a_month_without_activity_is_empty_not_an_error(
    db: Database, settings: Settings
) -> None:
    report = await _monthly(db, settings, "2025-02")
    rows = {s.name: s.rows for s in report.sections}
    assert all(not rows[n] for n in ("volumes", "fees", "large_transactions", "approvals"))
    assert rows["reconciliation"][0][1] == "no check recorded"


def test_periods_are_utc_months_and_iso_weeks() -> None:
    dec = periods.month("2026-12")
    assert (dec.start.isoformat(), dec.end.isoformat()) == (
        "2026-12-01T00:00:00+00:00",
        "2027-01-01T00:00:00+00:00",
    )
    w48 = periods.iso_week("2026-W48")
    assert (w48.start.isoformat(), w48.end.isoformat()) == (
        "2026-11-23T00:00:00+00:00",
        "2026-11-30T00:00:00+00:00",
    )
    for bad in ("2026-13", "2026-1", "11-2026", "", "2026-11-01"):
        with pytest.raises(InvalidRequest) as caught:
            periods.month(bad)
        assert caught.value.code == "parameter_invalid" and caught.value.param == "period"
    for bad in ("2026-W54", "2026-48", "2026-W00"):
        with pytest.raises(InvalidRequest):
            periods.iso_week(bad)


def pdf_pages_as_pictures(pdf: Path, out: Path) -> list[Path]:
    assert shutil.which("pdftoppm"), "pdftoppm missing: make pytest installs poppler-utils"
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(pdf), str(out / "page")], check=True)
    return sorted(out.glob("page*.png"))


def pdf_text(pdf: Path) -> str:
    """The document's text without whitespace (a long id may wrap inside its cell)."""
    out = subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True, text=True)
    return "".join(out.stdout.split())


def ink(picture: Path) -> float:
    """The share of pixels that are not (near) white."""
    gray = Image.open(picture).convert("L")
    histogram = gray.histogram()
    dark = sum(histogram[:200])
    return dark / (gray.width * gray.height)


async def test_the_pdf_is_a_readable_document(
    db: Database, settings: Settings, november: dict[str, str], tmp_path: Path
) -> None:
    report = await _monthly(db, settings, "2026-11")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(to_pdf(report))
    pages = pdf_pages_as_pictures(pdf, tmp_path)
    assert pages, "pdftoppm drew no page"
    first = Image.open(pages[0])
    assert first.width > first.height  # landscape A4
    assert ink(pages[0]) > 0.01, "the first page is blank"
    text = pdf_text(pdf)
    assert "tonrailcompliancereport2026-11" in text
    for key in ("p1", "p3", "p5"):
        assert november[key] in text
    assert "admin:alice" in text and "lck_nov" in text and "1800" in text
    assert "mismatch" in text and "-5.000000" in text
    # An empty month is a document too, with every section saying so.
    empty = tmp_path / "empty" / "report.pdf"
    empty.parent.mkdir()
    empty.write_bytes(to_pdf(await _monthly(db, settings, "2025-02")))
    assert ink(pdf_pages_as_pictures(empty, empty.parent)[0]) > 0.002


async def test_the_commands_write_the_report_and_the_weekly_list(
    db: Database,
    settings: Settings,
    november: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("REPORT_LARGE_TRANSACTION_USDT", str(LARGE_USDT))
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(cli, list(args))

    try:
        out = tmp_path / "nov.csv"
        done = await asyncio.to_thread(
            invoke, "reports", "generate", "--period", "2026-11", "--out", str(out)
        )
        assert done.exit_code == 0, done.output
        assert out.read_text() == expected_csv(await payments_by_key(db, november))
        pdf = tmp_path / "nov.pdf"
        done = await asyncio.to_thread(
            invoke,
            "reports",
            "generate",
            "--period",
            "2026-11",
            "--format",
            "pdf",
            "--out",
            str(pdf),
        )
        assert done.exit_code == 0, done.output
        assert pdf.read_bytes().startswith(b"%PDF-")
        week = await asyncio.to_thread(
            invoke, "reports", "large-transactions", "--week", "2026-W47"
        )
        assert week.exit_code == 0, week.output
        lines = week.stdout.splitlines()
        assert lines[0] == "report,tonrail large transactions 2026-W47"
        assert lines[1:3] == ["period_start,2026-11-16 00:00:00", "period_end,2026-11-23 00:00:00"]
        listed = [line.split(",")[1] for line in lines if line.startswith("large_transactions,")]
        assert listed == [november["p5"]]  # created on Friday 20 November
        bad = await asyncio.to_thread(invoke, "reports", "generate", "--period", "2026-13")
        assert bad.exit_code == 2 and "parameter_invalid" in bad.output
        bad = await asyncio.to_thread(
            invoke, "reports", "generate", "--period", "2026-11", "--format", "xlsx"
        )
        assert bad.exit_code == 2
    finally:
        get_settings.cache_clear()
