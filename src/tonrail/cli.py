"""The `tonrail` command: run, serve, worker, migrate, keys, ledger, localnet."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from tonrail import logs
from tonrail.db import Database
from tonrail.settings import Settings, get_settings

app = typer.Typer(help="tonrail: payments on TON with backup rails.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of merchants.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry books.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(ledger_app, name="ledger")


def _db(settings: Settings) -> Database:
    return Database(
        settings.effective_database_url,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=settings.db_pool_size,
    )


@app.command()
def migrate() -> None:
    """Bring the database (DATABASE_URL, or the embedded SQLite file) to the newest schema."""
    from tonrail.migrate import upgrade

    settings = get_settings()
    upgrade(settings.effective_database_url)
    typer.echo(
        f"database is at the newest schema ({settings.effective_database_url.split('://')[0]})"
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
) -> None:
    """Serve the API (stateless; run as many as you like)."""
    import uvicorn

    from tonrail.app import create_app

    settings = get_settings()
    logs.configure(settings.log_level, settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
    )


@app.command()
def worker(
    only: Annotated[str | None, typer.Option(help="comma-separated loop names")] = None,
) -> None:
    """Run the background loops (stateless; run as many as you like against PostgreSQL)."""
    from tonrail.payments.service import PaymentService
    from tonrail.worker import WorkerContext, default_worker_id, run_worker, select_loops

    settings = get_settings()
    logs.configure(settings.log_level, settings.log_json)
    try:
        loops = select_loops(only.split(",") if only else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--only") from None

    async def main() -> None:
        db = _db(settings)
        ctx = WorkerContext(db, settings, PaymentService(db, settings), default_worker_id())
        try:
            await run_worker(ctx, loops, asyncio.Event())
        finally:
            await db.dispose()

    asyncio.run(main())


@app.command()
def run() -> None:
    """Everything in one process on SQLite: migrations, API, workers (the embedded mode)."""
    from tonrail.embedded import run_embedded

    settings = get_settings()
    logs.configure(settings.log_level, settings.log_json)
    asyncio.run(run_embedded(settings))


@keys_app.command("create")
def keys_create(
    account: Annotated[str, typer.Option(help="merchant account id")] = "acct_default",
    name: Annotated[str, typer.Option(help="what the key is for")] = "default",
    scope: Annotated[
        list[str] | None, typer.Option(help="repeat; default payments:read, payments:write")
    ] = None,
) -> None:
    """Create an API key. The secret is printed once and never stored."""
    from tonrail.errors import TonrailError
    from tonrail.security.api_keys import DEFAULT_SCOPES, create_key

    settings = get_settings()

    async def main() -> tuple[str, str]:
        db = _db(settings)
        try:
            async with db.transaction() as session:
                key, secret = await create_key(
                    session, account, name, tuple(scope) if scope else DEFAULT_SCOPES
                )
                return key.id, secret
        finally:
            await db.dispose()

    try:
        key_id, secret = asyncio.run(main())
    except TonrailError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"key id: {key_id}")
    typer.echo(f"secret: {secret}")
    typer.echo("Store the secret now: it is not shown again.")


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke an API key by id."""
    from tonrail.security.api_keys import revoke_key

    settings = get_settings()

    async def main() -> bool:
        db = _db(settings)
        try:
            async with db.transaction() as session:
                return await revoke_key(session, key_id)
        finally:
            await db.dispose()

    if not asyncio.run(main()):
        typer.echo(f"error: no active key {key_id}", err=True)
        raise typer.Exit(2)
    typer.echo(f"revoked {key_id}")


@ledger_app.command("check")
def ledger_check() -> None:
    """Verify the books: every entry and the whole ledger balance per asset."""
    from tonrail.ledger.service import check_books
    from tonrail.money import format_minor

    settings = get_settings()

    async def main() -> object:
        db = _db(settings)
        try:
            async with db.transaction() as session:
                return await check_books(session)
        finally:
            await db.dispose()

    report = asyncio.run(main())
    from tonrail.ledger.service import BooksReport

    assert isinstance(report, BooksReport)
    typer.echo(f"{report.entries} entries, {report.lines} lines")
    for (account, asset), amount in report.balances.items():
        typer.echo(f"  {account:<40} {asset:<5} {format_minor(amount, asset):>28}")
    if not report.ok:
        for entry, asset, total in report.unbalanced_entries:
            typer.echo(f"UNBALANCED entry {entry}: {asset} off by {total}", err=True)
        for asset, total in report.totals_by_asset.items():
            if total:
                typer.echo(f"UNBALANCED ledger: {asset} sums to {total}", err=True)
        raise typer.Exit(1)
    typer.echo("books balance")
