"""How a `tonrail ...` subcommand runs its async work against the configured database."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer

from tonrail.db import Database
from tonrail.errors import TonrailError
from tonrail.settings import Settings, get_settings

T = TypeVar("T")


def run_command(work: Callable[[Database, Settings], Awaitable[T]]) -> T:
    """Run `work` on a database opened from the settings; a TonrailError exits with status 2
    and its message and code on stderr."""
    settings = get_settings()

    async def main() -> T:
        db = Database(
            settings.effective_database_url,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            pool_size=settings.db_pool_size,
        )
        try:
            return await work(db, settings)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except TonrailError as exc:
        typer.echo(f"error: {exc.message} ({exc.code})", err=True)
        raise typer.Exit(2) from None


def cli_actor(actor: str | None) -> str:
    """Who a command acts as in the books and logs: `--actor`, else the OS user."""
    return f"admin:{actor or getpass.getuser()}"
