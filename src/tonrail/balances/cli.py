"""`tonrail accounts ...`: an account's balances, and operator top-ups (approver role)."""

from __future__ import annotations

from typing import Annotated

import typer

from tonrail.command import run_command
from tonrail.db import Database
from tonrail.settings import Settings

accounts_app = typer.Typer(help="Merchant accounts: balances, top-ups.", no_args_is_help=True)


@accounts_app.command("balance")
def accounts_balance(account: Annotated[str, typer.Argument(help="acct_... id")]) -> None:
    """Available, pending and incoming amounts of an account, per asset."""
    from tonrail.balances.service import balances_of
    from tonrail.money import format_minor

    async def work(db: Database, _: Settings) -> list[str]:
        async with db.transaction() as session:
            return [
                f"{b.asset:<5} available {format_minor(b.available, b.asset)}  pending "
                f"{format_minor(b.pending, b.asset)}  incoming {format_minor(b.incoming, b.asset)}"
                for b in await balances_of(session, account)
            ]

    lines = run_command(work)
    typer.echo("\n".join(lines) if lines else f"{account} has no balance")


@accounts_app.command("top-up")
def accounts_top_up(
    account: Annotated[str, typer.Argument(help="acct_... id")],
    amount: Annotated[str, typer.Argument(help="in major units, e.g. 250.5")],
    asset: Annotated[str, typer.Argument(help="TON, USDT, ...")],
    reason: Annotated[str, typer.Option(help="why: kept in the audit log")],
    actor: Annotated[str, typer.Option(help="your dashboard user; its role must approve")],
) -> None:
    """Credit an account's balance by hand (money received outside invoices, or credit the
    operator extends); audited, and only in the name of an approver or admin."""
    from tonrail.balances.service import top_up
    from tonrail.money import format_minor
    from tonrail.security.admins import with_permission

    async def work(db: Database, _: Settings) -> int:
        async with db.transaction() as session:
            admin = await with_permission(session, actor, "approve")
            return await top_up(session, account, amount, asset, reason, f"admin:{admin.username}")

    left = run_command(work)
    typer.echo(f"{account} {asset} available {format_minor(left, asset)}")
