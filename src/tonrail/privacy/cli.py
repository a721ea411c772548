"""`tonrail privacy ...`: the retention pass (and its dry run), GDPR export and erasure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tonrail.command import cli_actor, run_command
from tonrail.db import Database
from tonrail.settings import Settings

privacy_app = typer.Typer(
    help="Personal data: retention, GDPR export and erasure (docs/PRIVACY.md).",
    no_args_is_help=True,
)

SubjectOpt = Annotated[str, typer.Option(help="an email address, an IBAN or a TON address")]
KindOpt = Annotated[str | None, typer.Option(help="email, iban or address; guessed if absent")]


@privacy_app.command("retention")
def privacy_retention(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report only, change nothing")] = False,
) -> None:
    """What is past its retention period, step by step; without --dry-run, run today's pass
    to its end now (as the `retention` worker loop does, leased and batched)."""
    from tonrail.privacy.models import RetentionRun
    from tonrail.privacy.retention import RUN, plan, run_batch

    async def work(db: Database, settings: Settings) -> list[str]:
        async with db.transaction() as session:
            due = await plan(session, settings)
        lines = [f"{'step':<20} {'class':<12} {'action':<13} {'older than':<20} rows"]
        lines += [
            f"{d.step:<20} {d.period:<12} {d.action:<13} {d.older_than:%Y-%m-%d %H:%M}     {d.rows}"
            for d in due
        ]
        if dry_run:
            return [*lines, "dry run: nothing changed"]
        while await run_batch(db, settings, cli_actor(None)[:64]):
            pass
        async with db.transaction() as session:
            run = await session.get(RetentionRun, RUN)
        if run is None or run.finished_day is None:
            return [*lines, "the pass is held by a worker now: try again later"]
        report = run.report or {}
        done = [f"  {name}: {v['count']}" for name, v in report.items() if v.get("count")]
        return [*lines, f"pass of {run.finished_day} done", *(done or ["  nothing was due"])]

    typer.echo("\n".join(run_command(work)))


@privacy_app.command("export")
def privacy_export(
    subject: SubjectOpt,
    kind: KindOpt = None,
    out: Annotated[Path | None, typer.Option(help="write the JSON here (default stdout)")] = None,
    actor: Annotated[str | None, typer.Option(help="who")] = None,
) -> None:
    """A JSON bundle of every record about the subject (audited as privacy.export)."""
    from tonrail.privacy.service import export_subject
    from tonrail.privacy.subjects import parse_subject
    from tonrail.security import audit_log

    async def work(db: Database, _: Settings) -> dict[str, Any]:
        parsed = parse_subject(subject, kind)
        async with db.transaction() as session:
            bundle = await export_subject(session, parsed)
            counts = {table: len(rows) for table, rows in bundle["records"].items()}
            await audit_log.record(
                session, cli_actor(actor), "privacy.export", parsed.value, counts
            )
        return bundle

    text = json.dumps(run_command(work), indent=2, sort_keys=True, default=str)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n")
        out.chmod(0o600)
        typer.echo(f"written to {out}")


@privacy_app.command("erase")
def privacy_erase(
    subject: SubjectOpt,
    kind: KindOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="erase without asking")] = False,
    actor: Annotated[str | None, typer.Option(help="who")] = None,
) -> None:
    """Pseudonymise the subject's personal data (amounts and the books stay); refused while
    one of its payments is open. Audited as privacy.erase."""
    from tonrail.privacy.service import erase_subject
    from tonrail.privacy.subjects import parse_subject

    if not yes:
        typer.confirm(f"pseudonymise every record of {subject}? This cannot be undone", abort=True)

    async def work(db: Database, _: Settings) -> dict[str, Any]:
        parsed = parse_subject(subject, kind)
        async with db.transaction() as session:
            return await erase_subject(session, parsed, cli_actor(actor))

    result = run_command(work)
    typer.echo(f"erased as {result['pseudonym']} (audit entry {result['audit_seq']})")
    for table, count in sorted(result["rows"].items()):
        typer.echo(f"  {table}: {count}")
