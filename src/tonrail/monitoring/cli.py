"""`tonrail alerts ...`: operate alerts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy import select

from tonrail.command import cli_actor, run_command
from tonrail.db import Database
from tonrail.monitoring.states import ACTIVE_ALERT_STATES
from tonrail.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tonrail.monitoring.models import Alert

alerts_app = typer.Typer(help="Alerts: list, acknowledge, resolve, history, evaluate.")


@alerts_app.command("list")
def alerts_list(
    all_: Annotated[bool, typer.Option("--all", help="include resolved alerts")] = False,
) -> None:
    """Open and acknowledged alerts (with --all: every alert)."""
    from tonrail.monitoring.models import Alert

    async def work(db: Database, _: Settings) -> list[Alert]:
        async with db.transaction() as session:
            stmt = select(Alert).order_by(Alert.opened_at.desc()).limit(200)
            if not all_:
                stmt = stmt.where(Alert.status.in_(ACTIVE_ALERT_STATES))
            return list((await session.execute(stmt)).scalars())

    rows = run_command(work)
    if not rows:
        typer.echo("no alerts")
    for a in rows:
        typer.echo(
            f"{a.id}  {a.status:<12} {a.severity:<8} {a.opened_at:%Y-%m-%d %H:%M:%S}  "
            f"{a.dedup_key}  {a.summary}"
        )


@alerts_app.command("ack")
def alerts_ack(
    alert_id: str, actor: Annotated[str | None, typer.Option(help="who")] = None
) -> None:
    """Acknowledge an open alert (PagerDuty is told)."""
    from tonrail.monitoring.store import acknowledge

    _change_alert(acknowledge, alert_id, actor)
    typer.echo(f"acknowledged {alert_id}")


# A command each, alike in shape: what they share is _change_alert.
@alerts_app.command("resolve")
def alerts_resolve(
    alert_id: str, actor: Annotated[str | None, typer.Option(help="who")] = None
) -> None:
    """Resolve an alert by hand; it reopens if its condition still holds."""
    from tonrail.monitoring.store import resolve_by_id

    _change_alert(resolve_by_id, alert_id, actor)
    typer.echo(f"resolved {alert_id}")


def _change_alert(
    change: Callable[[AsyncSession, str, str], Awaitable[Alert]],
    alert_id: str,
    actor: str | None,
) -> None:
    async def work(db: Database, _: Settings) -> None:
        async with db.transaction() as session:
            await change(session, alert_id, cli_actor(actor))

    run_command(work)


@alerts_app.command("history")
def alerts_history(alert_id: str) -> None:
    """Everything that happened to one alert, deliveries included."""
    from tonrail.monitoring.store import history

    async def work(db: Database, _: Settings) -> list[str]:
        async with db.transaction() as session:
            return [
                f"{e.at:%Y-%m-%d %H:%M:%S}  {e.kind:<16} {e.actor:<20} {e.details}"
                for e in await history(session, alert_id)
            ]

    for line in run_command(work):
        typer.echo(line)


@alerts_app.command("evaluate")
def alerts_evaluate() -> None:
    """Evaluate the rules once and send what is due (what the worker loop does)."""
    from tonrail.monitoring.jobs import evaluate_alerts

    class Ctx:
        def __init__(self, db: Database, settings: Settings):
            self.db, self.settings, self.worker_id = db, settings, "cli"

    n = run_command(lambda db, s: evaluate_alerts(Ctx(db, s)))
    typer.echo(f"{n} changes and deliveries")


@alerts_app.command("audit")
def alerts_audit(
    day: Annotated[str | None, typer.Option(help="YYYY-MM-DD (UTC); default yesterday")] = None,
) -> None:
    """Build and send the daily security audit now (once per day)."""
    from tonrail import clock
    from tonrail.monitoring.jobs import audit_day, run_security_audit

    start = datetime.fromisoformat(day).replace(tzinfo=UTC) if day else audit_day(clock.now())
    if not run_command(lambda db, s: run_security_audit(db, s, start)):
        typer.echo(f"the audit of {start.date()} exists already", err=True)
        raise typer.Exit(1)
    typer.echo(f"audit of {start.date()} stored and queued for delivery")
