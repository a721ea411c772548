"""`tonrail payouts ...`: operator commands on payouts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tonrail.command import cli_actor, run_command
from tonrail.db import Database
from tonrail.fees.service import fee_decisions_for
from tonrail.settings import Settings

if TYPE_CHECKING:
    from tonrail.processing.unknown_attempts import Resolved

payouts_app = typer.Typer(help="Payouts: operator commands.", no_args_is_help=True)


@payouts_app.command("resolve-unknown")
def resolve_unknown_command(
    payout_id: Annotated[str | None, typer.Argument(help="the payout (pay_...)")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="every payout with an unknown attempt")
    ] = False,
    actor: Annotated[str | None, typer.Option(help="who decides (default: the OS user)")] = None,
) -> None:
    """Prove from the chain whether each unknown TON attempt was sent (tracked on to
    confirmed or failed) or expired unsent (retried with a new query_id, or failed, by the
    pipeline's rules). Exits 1 while one stays undecided; 2, changing nothing, when the chain
    cannot be read."""
    if (payout_id is None) == (not all_):
        raise typer.BadParameter("give a PAYOUT_ID or --all (not both)")
    report = run_command(lambda db, settings: _resolve(db, settings, payout_id, cli_actor(actor)))
    if not report:
        typer.echo("no payout has an unknown attempt")
    for line in report:
        typer.echo(f"{line.payout_id}  {line.verdict:<9} -> {line.status:<10} {line.reason}")
    if any(line.verdict == "undecided" for line in report):
        raise typer.Exit(1)


async def _resolve(
    db: Database, settings: Settings, payout_id: str | None, actor: str
) -> list[Resolved]:
    from tonrail.payments.service import PaymentService
    from tonrail.processing.ton_runtime import open_ton_rail
    from tonrail.processing.unknown_attempts import chain_unreachable, resolve_unknown
    from tonrail.rails.ton.api import ToncenterTonApi
    from tonrail.rails.ton.toncenter import ToncenterError

    payments = PaymentService(db, settings, fee_decisions_for)
    try:
        ctx = await open_ton_rail(settings, db, payments, "cli:resolve-unknown")
    except ToncenterError as exc:
        raise chain_unreachable(exc) from exc
    try:
        return await resolve_unknown(ctx, payout_id, actor)
    finally:
        if isinstance(ctx.api, ToncenterTonApi):
            await ctx.api.aclose()
