"""`tonrail lockouts ...`: list the subjects refused after repeated failures, unlock them."""

from __future__ import annotations

from typing import Annotated

import typer

from tonrail.command import cli_actor, run_command
from tonrail.db import Database
from tonrail.settings import Settings

lockouts_app = typer.Typer(help="Lockouts after repeated failures: list, unlock.")


@lockouts_app.command("list")
def lockouts_list() -> None:
    """Active lockouts: subjects refused until an admin unlocks them."""
    from tonrail.security.lockouts import active

    async def work(db: Database, _: Settings) -> list[str]:
        async with db.transaction() as session:
            return [
                f"{lk.id}  {lk.subject_kind:<12} {lk.subject}  since "
                f"{lk.locked_at:%Y-%m-%d %H:%M:%S}  ({lk.reason})"
                for lk in await active(session)
            ]

    lines = run_command(work)
    typer.echo("\n".join(lines) if lines else "no active lockouts")


@lockouts_app.command("unlock")
def lockouts_unlock(
    target: Annotated[str, typer.Argument(help="lock_... id, or kind:subject, or a subject")],
    actor: Annotated[str | None, typer.Option(help="who")] = None,
) -> None:
    """Lift a lockout; the failures before it no longer count."""
    from tonrail.security.lockouts import unlock

    async def work(db: Database, _: Settings) -> list[str]:
        async with db.transaction() as session:
            return [
                f"{lk.subject_kind}:{lk.subject}"
                for lk in await unlock(session, target, cli_actor(actor))
            ]

    for subject in run_command(work):
        typer.echo(f"unlocked {subject}")
