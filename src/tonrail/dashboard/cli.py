"""`tonrail admin ...` (dashboard users) and `tonrail audit verify` (the hash chain)."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.command import run_command
from tonrail.db import Database
from tonrail.security import admins, audit_log
from tonrail.settings import Settings

admin_app = typer.Typer(help="Admin users of the dashboard.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)

T = TypeVar("T")


def _in_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def in_transaction(db: Database, _: Settings) -> T:
        async with db.transaction() as session:
            return await work(session)

    return run_command(in_transaction)


def _password(from_stdin: bool) -> str:
    """From TONRAIL_ADMIN_PASSWORD, stdin (--password-stdin) or a prompt; never an argument."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    env = os.environ.get("TONRAIL_ADMIN_PASSWORD")
    if env:
        return env
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        typer.echo("error: the passwords differ", err=True)
        raise typer.Exit(2)
    return first


@admin_app.command("create")
def admin_create(
    username: str,
    role: Annotated[str, typer.Option(help="viewer | operator | approver | admin")] = "viewer",
    totp: Annotated[bool, typer.Option("--totp", help="require a one-time code (TOTP)")] = False,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
) -> None:
    """Create a dashboard user; password from a prompt, stdin or TONRAIL_ADMIN_PASSWORD."""
    password = _password(password_stdin)

    async def work(session: AsyncSession) -> tuple[admins.Admin, str | None]:
        admin, secret = await admins.create_admin(session, username, password, role, totp=totp)
        await audit_log.record(
            session, "cli", "admin.create", admin.id, {"username": admin.username, "role": role}
        )
        return admin, secret

    admin, secret = _in_transaction(work)
    typer.echo(f"created {admin.username} ({admin.role}), id {admin.id}")
    if secret:
        import pyotp

        uri = pyotp.TOTP(secret).provisioning_uri(name=admin.username, issuer_name="tonrail")
        typer.echo(f"TOTP secret: {secret}")
        typer.echo(f"enrol with your authenticator app: {uri}")
        typer.echo("Store it now: it is not shown again.")


@admin_app.command("list")
def admin_list() -> None:
    """List dashboard users."""
    rows = _in_transaction(admins.list_admins)
    for row in rows:
        flags = ", ".join(
            f for f, on in (("disabled", row.disabled), ("totp", bool(row.totp_secret))) if on
        )
        typer.echo(f"{row.username:<24} {row.role:<9} {row.id} {flags}")


@admin_app.command("set-role")
def admin_set_role(username: str, role: str) -> None:
    """Change a user's role (their open sessions end)."""
    _change_admin(
        username, "admin.set_role", lambda s: admins.set_role(s, username, role), {"role": role}
    )
    typer.echo(f"{username} is now {role}")


@admin_app.command("password")
def admin_password(
    username: str, password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False
) -> None:
    """Set a new password (open sessions end, a lock is lifted)."""
    password = _password(password_stdin)
    _change_admin(username, "admin.password", lambda s: admins.set_password(s, username, password))
    typer.echo(f"password of {username} changed")


@admin_app.command("disable")
def admin_disable(username: str) -> None:
    """Disable a user at once (their sessions end)."""
    _change_admin(username, "admin.disable", lambda s: admins.set_disabled(s, username, True))
    typer.echo(f"{username} disabled")


@admin_app.command("enable")
def admin_enable(username: str) -> None:
    _change_admin(username, "admin.enable", lambda s: admins.set_disabled(s, username, False))
    typer.echo(f"{username} enabled")


def _change_admin(
    username: str,
    action: str,
    change: Callable[[AsyncSession], Awaitable[object]],
    details: dict[str, Any] | None = None,
) -> None:
    """Apply `change` and write it to the audit log in the same transaction."""

    async def work(session: AsyncSession) -> None:
        await change(session)
        await audit_log.record(session, "cli", action, username, details or {})

    _in_transaction(work)


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the audit log's hash chain; exit 1 at the first entry that does not link."""
    result = _in_transaction(audit_log.verify)
    if result.ok:
        typer.echo(f"audit log intact: {result.entries} entries")
        return
    typer.echo(
        f"audit log BROKEN at entry {result.first_bad_seq}: {result.problem} "
        f"({result.entries} entries verified before it)",
        err=True,
    )
    raise typer.Exit(1)


@audit_app.command("tail")
def audit_tail(limit: Annotated[int, typer.Option(help="newest first")] = 20) -> None:
    """Show the newest audit entries."""

    async def work(session: AsyncSession) -> list[audit_log.AuditEntry]:
        return await audit_log.recent(session, limit)

    for e in _in_transaction(work):
        typer.echo(
            f"{e.seq:>6} {e.at:%Y-%m-%d %H:%M:%S} {e.actor:<20} {e.action:<28} {e.subject or ''}"
        )
