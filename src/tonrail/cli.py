"""The `tonrail` command: run, serve, worker, migrate, keys, ledger, localnet."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any, cast

import structlog
import typer

from tonrail import logs
from tonrail.balances.cli import accounts_app
from tonrail.dashboard.cli import admin_app, audit_app
from tonrail.db import Database
from tonrail.deploy.cli import deploy_app, rehearsal_app
from tonrail.fees.service import fee_decisions_for
from tonrail.monitoring.cli import alerts_app
from tonrail.privacy.cli import privacy_app
from tonrail.processing.bank_cli import bank_app
from tonrail.processing.payouts_cli import payouts_app
from tonrail.processing.rotation_cli import keys_rotate_wallet
from tonrail.reports.cli import reports_app
from tonrail.security.cli import lockouts_app
from tonrail.security.keys_cli import register as register_key_rotation
from tonrail.settings import Settings, get_settings
from tonrail.treasury.cli import treasury_app

app = typer.Typer(help="tonrail: payments on TON with backup rails.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of merchants; the hot wallet key.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry books.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
register_key_rotation(keys_app)
keys_app.command("rotate-wallet")(keys_rotate_wallet)
app.add_typer(ledger_app, name="ledger")
app.add_typer(accounts_app, name="accounts")
app.add_typer(bank_app, name="bank")
app.add_typer(payouts_app, name="payouts")
app.add_typer(alerts_app, name="alerts")
app.add_typer(lockouts_app, name="lockouts")
app.add_typer(admin_app, name="admin")
app.add_typer(audit_app, name="audit")
app.add_typer(deploy_app, name="deploy")
app.add_typer(rehearsal_app, name="rehearsal")
app.add_typer(treasury_app, name="treasury")
app.add_typer(privacy_app, name="privacy")
app.add_typer(reports_app, name="reports")


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
        # The client address comes from TRUSTED_PROXIES (security/client_ip.py), not from
        # uvicorn's rewriting, which believes X-Forwarded-For from any local peer.
        proxy_headers=False,
    )


@app.command()
def worker(
    only: Annotated[str | None, typer.Option(help="comma-separated loop names")] = None,
) -> None:
    """Run the background loops (stateless; run as many as you like against PostgreSQL)."""
    from tonrail.payments.service import PaymentService
    from tonrail.processing.ton_runtime import open_ton_rail
    from tonrail.rails.registry import build_backup_rails
    from tonrail.rails.ton.keys import WalletKeyError
    from tonrail.secrets_refresh import refresh_loop
    from tonrail.worker import default_worker_id, run_worker, select_loops, worker_context

    settings = get_settings()
    logs.configure(settings.log_level, settings.log_json)
    try:
        loops = select_loops(only.split(",") if only else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--only") from None

    async def main() -> None:
        db = _db(settings)
        payments = PaymentService(db, settings, fee_decisions_for)
        worker_id = default_worker_id()
        ton = None
        backup = build_backup_rails(settings)
        # The treasury's loop proposes orders from the hot wallet: it needs the TON rail too.
        if any(loop.name.startswith(("ton_", "treasury_")) for loop in loops):
            try:
                ton = await open_ton_rail(settings, db, payments, worker_id, backup)
            except WalletKeyError as exc:
                typer.echo(f"TON loops idle: {exc.message}", err=True)
        ctx = worker_context(db, settings, payments, worker_id, ton, backup)
        # SIGTERM (docker/podman stop, ECS) and SIGINT end the rounds in flight, then the
        # worker gives its leases back so another worker takes over at once.
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        secrets = asyncio.create_task(refresh_loop(settings, stop))  # secrets_refresh.py
        try:
            await run_worker(ctx, loops, stop)
        finally:
            secrets.cancel()
            await db.dispose()

    asyncio.run(main())


@app.command()
def run() -> None:
    """Everything in one process on SQLite: migrations, API, workers (the embedded mode)."""
    from tonrail.embedded import run_embedded

    settings = get_settings()
    logs.configure(settings.log_level, settings.log_json)
    asyncio.run(run_embedded(settings))


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


@keys_app.command("init-wallet")
def keys_init_wallet(
    import_key: Annotated[
        bool,
        typer.Option("--import", help="read a 24-word TON mnemonic or a 64-hex seed from stdin"),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="replace an existing key file")] = False,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="default: TON_MASTER_KEY_FILE or DATA_DIR/hot_wallet.key"),
    ] = None,
) -> None:
    """Create (or import) the hot wallet key, sealed under TON_KEY_KMS_KEY_ID (AWS KMS) or
    TON_KEY_PASSPHRASE, in a file of mode 0600."""
    import secrets
    import sys

    from tonrail.rails.ton import keys

    settings = get_settings()
    logs.configure(settings.log_level, settings.log_json)
    path = file or keys.key_file_path(settings)
    try:
        kek = keys.sealing_kek(settings)
        if path.exists() and not force:
            raise keys.WalletKeyError(f"{path} exists; pass --force to replace it")
        if import_key:
            secret_text: str = (
                typer.prompt("mnemonic or hex seed", hide_input=True)
                if sys.stdin.isatty()
                else sys.stdin.read()
            )
            seed = keys.seed_from_import(secret_text)
            del secret_text
        else:
            seed = secrets.token_bytes(keys.SEED_BYTES)
        envelope = keys.seal(seed, kek)
        public_key = keys.HotWalletSigner(seed).public_key
        del seed
        keys.write_envelope(path, envelope, force=force)
    except keys.WalletKeyError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    structlog.get_logger(__name__).info(
        "hot_wallet_key_written", public_key=public_key.hex(), path=str(path), imported=import_key
    )
    typer.echo(f"public key: {public_key.hex()}")
    address = _hot_wallet_address(settings, public_key)
    if address:
        typer.echo(f"address:    {address}")
    kek_name = "AWS KMS" if kek.kind == "aws-kms" else "scrypt passphrase"
    typer.echo(f"envelope:   {path} (mode 0600, AES-256-GCM, KEK: {kek_name})")
    if settings.ton_master_key.get_secret_value():
        typer.echo("note: TON_MASTER_KEY is set and takes precedence over this file")


def _hot_wallet_address(settings: Settings, public_key: bytes) -> str | None:
    """The highload wallet address when rails/ton/highload.py provides it."""
    import importlib

    from tonrail.chain.network import resolve_network

    try:
        highload = importlib.import_module("tonrail.rails.ton.highload")
    except ImportError:
        return None
    address_of: Any = getattr(highload, "hot_wallet_address", None)
    if address_of is None:
        return None
    network = resolve_network(settings)
    address = str(
        address_of(public_key, network.highload_subwallet_id, network.highload_timeout_seconds)
    )
    if network.testnet_flag:
        from pytoniq_core.boc.address import Address

        parsed = Address(address)
        return str(parsed.to_str(is_user_friendly=True, is_bounceable=True, is_test_only=True))  # type: ignore[no-untyped-call]
    return address


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


deposits_app = typer.Typer(
    help="Incoming TON/USDT transfers and operator decisions.", no_args_is_help=True
)
app.add_typer(deposits_app, name="deposits")


@deposits_app.command("list")
def deposits_list(
    status: Annotated[str | None, typer.Option(help="e.g. unmatched, late, underpaid")] = None,
    limit: Annotated[int, typer.Option(help="newest first")] = 50,
) -> None:
    """List deposits the watcher recorded."""
    from sqlalchemy import select

    from tonrail.money import format_minor
    from tonrail.rails.ton.models import TonDeposit

    settings = get_settings()

    async def main() -> list[TonDeposit]:
        db = _db(settings)
        try:
            async with db.transaction() as session:
                stmt = select(TonDeposit).order_by(TonDeposit.lt.desc()).limit(limit)
                if status:
                    stmt = stmt.where(TonDeposit.status == status)
                return list((await session.execute(stmt)).scalars())
        finally:
            await db.dispose()

    for d in asyncio.run(main()):
        amount = format_minor(d.amount, d.asset)
        # Comments come from strangers: show them escaped, never raw control characters.
        comment = (d.comment or "").encode("unicode_escape").decode()[:40]
        typer.echo(
            f"{d.id}  {d.status:<10} {amount:>24} {d.asset:<4} {d.payment_id or '-':<30}"
            f" {comment!r} {d.resolution or ''}"
        )


@deposits_app.command("resolve")
def deposits_resolve(
    deposit_id: str,
    decision: Annotated[str, typer.Option("--as", help="owner_funding | refund | apply | accept")],
    invoice: Annotated[str | None, typer.Option(help="with --as apply: the invoice id")] = None,
    note: Annotated[str | None, typer.Option(help="why, for the audit trail")] = None,
    actor: Annotated[str, typer.Option(help="who decides")] = "admin:cli",
) -> None:
    """Record an operator's decision on an unmatched, late or underpaid deposit."""
    from tonrail.errors import TonrailError
    from tonrail.payments.service import PaymentService
    from tonrail.processing.resolutions import Decision, resolve, screen_refund

    settings = get_settings()
    if decision not in ("owner_funding", "refund", "apply", "accept"):
        raise typer.BadParameter("one of owner_funding, refund, apply, accept", param_hint="--as")

    async def main() -> str:
        db = _db(settings)
        try:
            payments = PaymentService(db, settings, fee_decisions_for)
            screened = await screen_refund(payments, deposit_id, decision, actor)
            async with db.transaction() as session:
                d = await resolve(
                    session,
                    payments,
                    deposit_id,
                    cast(Decision, decision),
                    actor,
                    invoice_id=invoice,
                    note=note,
                    screened=screened,
                )
                return f"{d.id}: {d.status} ({d.resolution})"
        finally:
            await db.dispose()

    try:
        typer.echo(asyncio.run(main()))
    except TonrailError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None


def _decide_held(deposit_id: str, decision: str, note: str | None, actor: str) -> None:
    from tonrail.errors import TonrailError
    from tonrail.processing.payer_screening import HeldPaymentDecision, decide_held_payment
    from tonrail.processing.resolutions import HeldDecision, decide_held

    settings = get_settings()

    async def main() -> str:
        db = _db(settings)
        try:
            async with db.transaction() as session:
                if deposit_id.startswith("att_"):  # a card, PayPal or bank payment held
                    a = await decide_held_payment(
                        session, deposit_id, cast(HeldPaymentDecision, decision), actor, note
                    )
                    return f"{a.id}: {a.details['screening']} ({a.rail} payment of {a.payment_id})"
                d = await decide_held(
                    session, deposit_id, cast(HeldDecision, decision), actor, note
                )
                return f"{d.id}: {d.status} ({d.resolution})"
        finally:
            await db.dispose()

    try:
        typer.echo(asyncio.run(main()))
    except TonrailError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None


@deposits_app.command("release")
def deposits_release(
    deposit_id: str,
    note: Annotated[str | None, typer.Option(help="why, for the audit trail")] = None,
    actor: Annotated[str, typer.Option(help="who decides")] = "admin:cli",
) -> None:
    """Release a deposit (dep_...) or a card, PayPal or bank payment (its attempt, att_...)
    AML/KYC screening held for review: credit it to its merchant."""
    _decide_held(deposit_id, "release", note, actor)


@deposits_app.command("freeze")
def deposits_freeze(
    deposit_id: str,
    note: Annotated[str | None, typer.Option(help="why, for the audit trail")] = None,
    actor: Annotated[str, typer.Option(help="who decides")] = "admin:cli",
) -> None:
    """Freeze a deposit (dep_...) or a card, PayPal or bank payment (att_...) AML/KYC
    screening held for review: never credited; invoice fails."""
    _decide_held(deposit_id, "freeze", note, actor)


@deposits_app.command("opening-balance")
def deposits_opening_balance(
    asset: Annotated[str, typer.Option(help="TON or USDT")],
    amount: Annotated[str, typer.Option(help='decimal, e.g. "10000000"')],
    note: Annotated[str, typer.Option(help="why, for the audit trail")],
    actor: Annotated[str, typer.Option(help="who books it")] = "admin:cli",
) -> None:
    """Book what the hot wallet held before tonrail watched it (reconciliation then agrees)."""
    from tonrail.errors import TonrailError
    from tonrail.money import parse_minor
    from tonrail.processing.resolutions import book_opening_balance

    settings = get_settings()

    async def main() -> None:
        db = _db(settings)
        try:
            async with db.transaction() as session:
                await book_opening_balance(session, asset, parse_minor(amount, asset), actor, note)
        finally:
            await db.dispose()

    try:
        asyncio.run(main())
    except TonrailError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"booked an opening balance of {amount} {asset}")


@treasury_app.command("book-funding")
def treasury_book_funding(
    asset: Annotated[str, typer.Option(help="TON or USDT")],
    amount: Annotated[
        str, typer.Option(help='decimal; negative for what left the treasury, e.g. "-1.5"')
    ],
    note: Annotated[str, typer.Option(help="why, for the audit log")],
    actor: Annotated[str, typer.Option(help="who books it")] = "admin:cli",
) -> None:
    """Book what reconciliation found moved in (or out of) the treasury outside tonrail:
    its funding, a transfer from outside; the `treasury_books_mismatch` alert then resolves."""
    from tonrail.errors import TonrailError
    from tonrail.money import parse_minor
    from tonrail.processing.treasury_reconcile import book_treasury_funding

    settings = get_settings()
    negative = amount.strip().startswith("-")

    async def main() -> None:
        db = _db(settings)
        try:
            minor = parse_minor(amount.strip().removeprefix("-"), asset, param="amount")
            async with db.transaction() as session:
                await book_treasury_funding(
                    session, asset, -minor if negative else minor, actor, note
                )
        finally:
            await db.dispose()

    try:
        asyncio.run(main())
    except TonrailError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"booked {amount} {asset} {'out of' if negative else 'into'} the treasury")


ops_app = typer.Typer(
    help="Operator switches: pause payments, maintenance mode.", no_args_is_help=True
)
app.add_typer(ops_app, name="ops")


def _flip(name: str, enabled: bool, actor: str, reason: str | None) -> None:
    from tonrail.security.switches import set_switch

    settings = get_settings()

    async def main() -> None:
        db = _db(settings)
        try:
            async with db.transaction() as session:
                await set_switch(session, name, enabled, actor, reason)
        finally:
            await db.dispose()

    asyncio.run(main())
    typer.echo(f"{name}: {'on' if enabled else 'off'}")


@ops_app.command("pause")
def ops_pause(
    reason: Annotated[str, typer.Option(help="why, for the audit trail")],
    actor: Annotated[str, typer.Option(help="who")] = "admin:cli",
) -> None:
    """Stop signing and sending every payout until `tonrail ops resume`."""
    _flip("payments_paused", True, actor, reason)


@ops_app.command("resume")
def ops_resume(actor: Annotated[str, typer.Option(help="who")] = "admin:cli") -> None:
    """Let payouts be signed and sent again."""
    _flip("payments_paused", False, actor, None)


@ops_app.command("maintenance")
def ops_maintenance(
    on: Annotated[bool, typer.Option("--on/--off", help="refuse new payments (503)")],
    reason: Annotated[str | None, typer.Option(help="why")] = None,
    actor: Annotated[str, typer.Option(help="who")] = "admin:cli",
) -> None:
    """Maintenance mode: the API refuses new payouts and invoices with 503 `maintenance`."""
    _flip("maintenance", on, actor, reason)


@app.command()
def localnet(
    state: Annotated[
        str, typer.Option(help="SQLite file of the chain state")
    ] = "var/localnet.sqlite3",
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="toncenter API port")] = 8081,
    block_ms: Annotated[int, typer.Option(help="block interval in ms")] = 400,
    collate_ms: Annotated[
        int,
        typer.Option(
            help="time a block may take messages, the rest waiting for the next block, as "
            "mainnet's collators (e.g. the block interval); 0: no limit, whole traces in a block",
        ),
    ] = 0,
    config: Annotated[
        str | None,
        typer.Option(help="blockchain config file (default: the bundled mainnet config)"),
    ] = None,
    config_from: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="mirror a toncenter v2 endpoint's config at start (getConfigAll), e.g. "
            "https://toncenter.com/api/v2; saved to --config when given",
        ),
    ] = None,
) -> None:
    """The local TON network alone (real TVM), serving toncenter v2/v3 on a port."""
    from pathlib import Path

    from tonrail.localnet.config import ConfigError, resolve_config
    from tonrail.localnet.server import collate_limit, serve

    logs.configure(get_settings().log_level, get_settings().log_json)
    try:
        chain_config = resolve_config(config, config_from)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    Path(state).parent.mkdir(parents=True, exist_ok=True)
    try:
        collate_limit(collate_ms)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    serve(state, host, port, block_ms, collate_ms=collate_ms, config=chain_config)
