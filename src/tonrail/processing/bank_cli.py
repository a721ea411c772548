"""`tonrail bank ...`: export payouts as a pain.001 file, import a CAMT.053 statement."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tonrail.command import run_command
from tonrail.db import Database
from tonrail.fees.service import fee_decisions_for
from tonrail.settings import Settings

if TYPE_CHECKING:
    from tonrail.processing.bank_files import BankFiles

bank_app = typer.Typer(
    help="Bank transfer files: pain.001 payouts out, CAMT.053 statements in.",
    no_args_is_help=True,
)


def _files(db: Database, settings: Settings) -> BankFiles:
    from tonrail.payments.service import PaymentService
    from tonrail.processing.bank_files import BankFiles

    return BankFiles(db, settings, PaymentService(db, settings, fee_decisions_for))


# Typer commands: alike other CLIs' in shape only.
@bank_app.command("export-payouts")
def export_payouts(
    out: Annotated[
        Path | None, typer.Option(help="folder for the file; default DATA_DIR/bank")
    ] = None,
) -> None:
    """Write every bank payout not yet exported into one ISO 20022 pain.001 file (validated
    against its schema) for the operator to upload to the bank."""
    result = run_command(
        lambda db, settings: _files(db, settings).export_payouts(out or settings.data_dir / "bank")
    )
    if result.path is None:
        typer.echo("no bank payouts to export")
        return
    typer.echo(f"{result.path}: {len(result.attempts)} payouts, total {result.total} (minor units)")


@bank_app.command("import-statement")
def import_statement(file: Path) -> None:
    """Reconcile a CAMT.053 statement: credits to invoice references (partial and unmatched
    lines included), debits to exported payouts. Importing twice changes nothing."""
    xml = file.read_bytes()
    report = run_command(lambda db, settings: _files(db, settings).import_statement(xml))
    for line in report.lines:
        typer.echo(
            f"{line.reference}\t{line.direction}\t{line.amount}\t{line.currency}\t"
            f"{line.outcome}\t{line.attempt_id or '-'}"
        )
    unmatched = report.count("unmatched")
    typer.echo(f"{len(report.lines)} lines, {unmatched} unmatched")
