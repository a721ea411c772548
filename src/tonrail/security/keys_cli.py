"""`tonrail keys create | show | roll | rotate-all | rewrap`: API keys with their optional
payout limits (docs/API.md), rotating them and re-wrapping the hot wallet key envelope
(docs/SECURITY.md). Registered on `tonrail keys` by cli.py."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from tonrail.command import cli_actor, run_command
from tonrail.db import Database
from tonrail.settings import Settings


def keys_roll(
    key_id: Annotated[str, typer.Argument(help="the key to replace, key_...")],
    overlap_hours: Annotated[float, typer.Option(help="how long the old key keeps working")] = 24.0,
    actor: Annotated[str | None, typer.Option(help="who")] = None,
) -> None:
    """Create a successor of an API key; the old one works for the overlap, then is refused."""
    from tonrail.security.key_rotation import Successor, roll_key

    async def work(db: Database, _: Settings) -> Successor:
        async with db.transaction() as session:
            return await roll_key(session, key_id, cli_actor(actor), timedelta(hours=overlap_hours))

    s = run_command(work)
    assert s.old_expires_at is not None
    typer.echo(f"key id: {s.new_id}")
    typer.echo(f"secret: {s.secret}")
    typer.echo("Store the secret now: it is not shown again.")
    typer.echo(f"{s.old_id} keeps working until {s.old_expires_at.isoformat()}, then is refused")


def keys_rotate_all(
    reason: Annotated[str, typer.Option(help="why, for the audit log")],
    confirm: Annotated[
        str, typer.Option(help='type "ROTATE ALL API KEYS" (or answer the prompt)')
    ] = "",
    out: Annotated[
        Path | None,
        typer.Option(help="file for the new secrets (mode 0600); default DATA_DIR/key-rotations/"),
    ] = None,
    actor: Annotated[str | None, typer.Option(help="who")] = None,
) -> None:
    """Emergency: revoke every API key now and issue a successor for each, written to a file."""
    from tonrail.security.key_rotation import (
        CONFIRMATION,
        Successor,
        default_rotation_file,
        rotate_all_to_file,
    )

    typed = confirm or (
        typer.prompt(f'Type "{CONFIRMATION}" to revoke every API key') if sys.stdin.isatty() else ""
    )
    if typed != CONFIRMATION:
        typer.echo(f'error: not confirmed: type exactly "{CONFIRMATION}"', err=True)
        raise typer.Exit(2)

    async def work(db: Database, settings: Settings) -> tuple[Path, list[Successor]]:
        path = out or default_rotation_file(settings.data_dir)
        return path, await rotate_all_to_file(db, cli_actor(actor), reason, path)

    path, successors = run_command(work)
    accounts = len({s.account_id for s in successors})
    typer.echo(f"revoked {len(successors)} keys of {accounts} accounts; successors issued")
    typer.echo(f"new secrets: {path} (mode 0600): hand them over, then delete the file")


def keys_rewrap(
    to_kms: Annotated[
        str | None, typer.Option("--to-kms", help="wrap under this AWS KMS key (id, ARN, alias)")
    ] = None,
    to_passphrase: Annotated[
        bool,
        typer.Option("--to-passphrase", help="wrap under a new passphrase (asked, or stdin)"),
    ] = False,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="default: TON_MASTER_KEY_FILE or DATA_DIR/hot_wallet.key"),
    ] = None,
    actor: Annotated[str | None, typer.Option(help="who")] = None,
) -> None:
    """Re-wrap the hot wallet key under a new KMS key or passphrase; the wallet stays the same."""
    from tonrail.rails.ton import keys
    from tonrail.rails.ton.kms_kek import kms_kek
    from tonrail.security import audit_log

    if (to_kms is None) == (not to_passphrase):
        typer.echo("error: pass exactly one of --to-kms KEY or --to-passphrase", err=True)
        raise typer.Exit(2)

    async def work(db: Database, settings: Settings) -> tuple[str, str, bool]:
        inline = bool(settings.ton_master_key.get_secret_value().strip()) and file is None
        path = file or keys.key_file_path(settings)
        envelope = keys.read_envelope(settings) if file is None else path.read_text().strip()
        body = keys.parse_envelope(envelope)
        old = keys.kek_for(settings, body["kek"])
        if to_kms is not None:
            new: keys.KeyEncryptionKey = kms_kek(settings, to_kms)
        else:
            new = keys.PassphraseKek(_new_passphrase())
        rewrapped = keys.rewrap(envelope, old, new)
        after = keys.parse_envelope(rewrapped)["kek"]
        async with db.transaction() as session:
            await audit_log.record(
                session,
                cli_actor(actor),
                "wallet_key.rewrapped",
                body["public_key"],
                {"from": _kek_name(body["kek"]), "to": _kek_name(after)},
            )
            if not inline:
                keys.write_envelope(path, rewrapped, force=True)
        return rewrapped, str(path), inline

    envelope, path, inline = run_command(work)
    if inline:
        typer.echo("TON_MASTER_KEY holds the envelope: replace its value with this one")
        typer.echo(envelope)
    else:
        typer.echo(f"re-wrapped {path} (same wallet, new key-encryption key)")


def _kek_name(blob: dict[str, object]) -> str:
    return f"{blob.get('kind')}:{blob.get('key_id')}" if blob.get("key_id") else str(blob["kind"])


def _new_passphrase() -> str:
    if sys.stdin.isatty():
        text: str = typer.prompt("new passphrase", hide_input=True, confirmation_prompt=True)
        return text
    return sys.stdin.readline().rstrip("\n")


def keys_rotate_secret(
    kind: Annotated[str, typer.Argument(help="jwt | stripe-webhook | paypal-webhook")],
    overlap_hours: Annotated[
        float, typer.Option(help="how long the old value is still accepted")
    ] = 24.0,
    actor: Annotated[str | None, typer.Option(help="who")] = None,
) -> None:
    """Rotate a shared secret with an overlap: JWT_SECRET (generated), STRIPE_WEBHOOK_SECRET
    or PAYPAL_WEBHOOK_ID (the provider's new value, asked for or one line on stdin)."""
    from tonrail.security.secret_rotation import Rotation, generated_jwt_secret, rotate_secret

    if kind == "jwt":
        new = generated_jwt_secret()
    elif sys.stdin.isatty():
        new = typer.prompt(f"the new {kind} value from the provider", hide_input=True)
    else:
        new = sys.stdin.readline().strip()

    async def work(db: Database, settings: Settings) -> Rotation:
        async with db.transaction() as session:
            return await rotate_secret(
                session, settings, kind, new, cli_actor(actor), timedelta(hours=overlap_hours)
            )

    r = run_command(work)
    if r.stored_in:
        typer.echo(f"{r.setting} updated in Secrets Manager ({r.stored_in}): every process")
        typer.echo("takes it within SECRETS_REFRESH_SECONDS.")
    else:
        typer.echo(f"Set {r.setting} to this value (it holds the new and the old one) and")
        typer.echo("restart serve and worker:")
        typer.echo(r.value)
    typer.echo(f"The old value is accepted until {r.old_until.isoformat()}, then refused.")


def keys_create(
    account: Annotated[str, typer.Option(help="merchant account id")] = "acct_default",
    name: Annotated[str, typer.Option(help="what the key is for")] = "default",
    scope: Annotated[
        list[str] | None, typer.Option(help="repeat; default payments:read, payments:write")
    ] = None,
    max_per_payout: Annotated[
        str | None, typer.Option(help="USDT (equivalent) one payout may move at most")
    ] = None,
    max_per_day: Annotated[
        str | None, typer.Option(help="USDT (equivalent) the key may pay out per UTC day")
    ] = None,
    asset: Annotated[
        list[str] | None, typer.Option(help="repeat: the only assets it may pay out")
    ] = None,
    destination: Annotated[
        list[str] | None, typer.Option(help="repeat: the only addresses it may pay out to")
    ] = None,
) -> None:
    """Create an API key, with optional payout limits. The secret is printed once and never
    stored."""
    from tonrail.security.api_keys import DEFAULT_SCOPES, KeyLimits, create_key

    async def work(db: Database, _: Settings) -> tuple[str, str, dict[str, Any]]:
        limits = KeyLimits.parse(max_per_payout, max_per_day, asset or (), destination or ())
        async with db.transaction() as session:
            key, secret = await create_key(
                session, account, name, tuple(scope) if scope else DEFAULT_SCOPES, limits
            )
            return key.id, secret, limits.describe()

    key_id, secret, limits = run_command(work)
    typer.echo(f"key id: {key_id}")
    typer.echo(f"secret: {secret}")
    typer.echo(f"limits: {_limits_text(limits)}")
    typer.echo("Store the secret now: it is not shown again.")


def _limits_text(limits: dict[str, Any]) -> str:
    shown = [f"{name}={value}" for name, value in limits.items() if value is not None]
    return ", ".join(shown) if shown else "none"


def keys_show(key_id: str) -> None:
    """A key's details: account, scopes, limits, when it was created, used and revoked."""
    from tonrail.errors import NotFound
    from tonrail.security.api_keys import limits_of
    from tonrail.security.models import ApiKey

    async def work(db: Database, _: Settings) -> list[str]:
        async with db.transaction() as session:
            key = await session.get(ApiKey, key_id)
            if key is None:
                raise NotFound(f"no key {key_id!r}", param="key_id")
            return [
                f"key id: {key.id} ({key.prefix}...)",
                f"account: {key.account_id}",
                f"name: {key.name}",
                f"scopes: {', '.join(key.scopes)}",
                f"limits: {_limits_text(limits_of(key).describe())}",
                f"created: {key.created_at:%Y-%m-%d %H:%M:%S}",
                f"revoked: {'no' if key.revoked_at is None else f'{key.revoked_at:%Y-%m-%d}'}",
            ]

    typer.echo("\n".join(run_command(work)))


def register(keys_app: typer.Typer) -> None:
    keys_app.command("create")(keys_create)
    keys_app.command("show")(keys_show)
    keys_app.command("roll")(keys_roll)
    keys_app.command("rotate-all")(keys_rotate_all)
    keys_app.command("rewrap")(keys_rewrap)
    keys_app.command("rotate-secret")(keys_rotate_secret)
