"""`tonrail reports ...`: the monthly compliance report and the weekly large-transaction list."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tonrail import clock
from tonrail.command import run_command
from tonrail.db import Database
from tonrail.reports import contents, periods
from tonrail.reports.render import FORMATS, render
from tonrail.settings import Settings

reports_app = typer.Typer(help="Compliance reports (docs/COMPLIANCE.md).", no_args_is_help=True)

FormatOpt = Annotated[str, typer.Option("--format", help="csv or pdf")]
OutOpt = Annotated[Path | None, typer.Option(help="write here (default stdout)")]


def _emit(body: bytes, out: Path | None) -> None:
    if out is None:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        return
    out.write_bytes(body)
    typer.echo(f"wrote {out} ({len(body)} bytes)", err=True)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        typer.echo(f"error: --format must be one of {', '.join(FORMATS)}", err=True)
        raise typer.Exit(2)


@reports_app.command("generate")
def reports_generate(
    period: Annotated[str, typer.Option(help="the month, YYYY-MM (UTC)")],
    fmt: FormatOpt = "csv",
    out: OutOpt = None,
) -> None:
    """The monthly report: volumes, fees, large transactions, approvals, failures,
    lockouts, alerts and reconciliation."""
    _check_format(fmt)

    async def work(db: Database, settings: Settings) -> bytes:
        month = periods.month(period)
        async with db.transaction() as session:
            report = await contents.monthly(session, settings, month, clock.now())
        return render(report, fmt)

    _emit(run_command(work), out)


@reports_app.command("large-transactions")
def reports_large_transactions(
    week: Annotated[str, typer.Option(help="the ISO week, YYYY-Www (UTC)")],
    fmt: FormatOpt = "csv",
    out: OutOpt = None,
) -> None:
    """The weekly "audit large transactions" list (REPORT_LARGE_TRANSACTION_USDT)."""
    _check_format(fmt)

    async def work(db: Database, settings: Settings) -> bytes:
        span = periods.iso_week(week)
        async with db.transaction() as session:
            report = await contents.weekly_large(session, settings, span, clock.now())
        return render(report, fmt)

    _emit(run_command(work), out)
