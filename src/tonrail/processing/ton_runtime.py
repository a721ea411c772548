"""Wiring the TON rail for a worker process: network, toncenter client, signer, jetton wallet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tonrail import clock
from tonrail.chain.network import resolve_network
from tonrail.db import Database
from tonrail.monitoring import signals
from tonrail.payments.service import PaymentService
from tonrail.processing.context import TonRailContext
from tonrail.rails.registry import enabled_rails, routing_policy
from tonrail.rails.ton.api import ToncenterTonApi, jetton_wallet_of
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.highload import HighloadWallet
from tonrail.rails.ton.keys import HotWalletSigner, WalletKeyError, load_signer
from tonrail.rails.ton.models import TonOwnAccount
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.settings import Settings

log = structlog.get_logger(__name__)


def check_payment_processor_address(settings: Settings, hot_wallet_raw: str) -> None:
    """Invoices show PAYMENT_PROCESSOR_ADDRESS as `pay_to`, and the deposit watcher watches
    the hot wallet: the two must be one account, or customers pay where nobody looks."""
    configured = settings.payment_processor_address.strip()
    if configured and raw(configured) != hot_wallet_raw:
        raise WalletKeyError(
            "PAYMENT_PROCESSOR_ADDRESS is not the hot wallet: invoices would be paid to an "
            "address the deposit watcher does not watch; set it to the hot wallet's address "
            "or leave it empty"
        )


async def open_ton_rail(
    settings: Settings,
    db: Database,
    payments: PaymentService,
    worker_id: str,
    backup: Mapping[str, Any] | None = None,
) -> TonRailContext:
    """Build the rail's context; raises WalletKeyError when no hot wallet key is configured."""
    network = resolve_network(settings)
    signer = load_signer(settings)
    wallet = HighloadWallet(
        signer.public_key, network.highload_subwallet_id, network.highload_timeout_seconds
    )
    client = ToncenterClient.from_network(network, settings, on_call=signals.record_toncenter_call)
    api = ToncenterTonApi(client)
    payments.read_pools_with(client)  # RATE_SOURCE=dex: through this client, not a second one
    jetton_wallet = None
    if network.usdt_master:
        jetton_wallet = await jetton_wallet_of(api, network.usdt_master, raw(wallet.address))
    check_payment_processor_address(settings, raw(wallet.address))
    await register_own_accounts(db, raw(wallet.address), jetton_wallet)
    log.info(
        "ton rail ready",
        network=network.name,
        hot_wallet=wallet.address.to_str(),
        usdt=bool(jetton_wallet),
    )
    # The context, field by field: alike other constructors in shape only.
    return TonRailContext(
        db=db,
        settings=settings,
        payments=payments,
        api=api,
        wallet=wallet,
        sign=signer.sign,
        jetton_wallet=jetton_wallet,
        worker_id=worker_id,
        backup=backup or {},
        routing=routing_policy(settings),
        enabled=enabled_rails(settings),
    )


async def adopt_rotated_wallet(ctx: TonRailContext, rotation_id: str, new_public_key: str) -> bool:
    """After a hot wallet rotation's switch (processing/wallet_rotation.py): load the key again
    (TON_MASTER_KEY_FILE, which the switch replaced) and sign with the new wallet from now on.
    False, with an error logged once, when this worker's key is not the new wallet's: it
    signs nothing until it is restarted with the new key."""
    signer: HotWalletSigner | None = None
    refusal: str | None = None
    try:
        signer = load_signer(ctx.settings)
    except WalletKeyError as exc:
        refusal = exc.message
    if signer is not None and signer.public_key.hex() != new_public_key:
        refusal = "the key file holds another key"
    if signer is None or refusal is not None:
        if ctx.rotation_refused != rotation_id:
            ctx.rotation_refused = rotation_id
            log.error(
                "the hot wallet was rotated but this worker's key is not the new wallet's: "
                "nothing is signed until it runs with the new key file",
                rotation=rotation_id,
                reason=refusal,
            )
        return False
    network = ctx.network
    wallet = HighloadWallet(
        signer.public_key, network.highload_subwallet_id, network.highload_timeout_seconds
    )
    jetton_wallet = None
    if network.usdt_master:
        jetton_wallet = await jetton_wallet_of(ctx.api, network.usdt_master, raw(wallet.address))
    await register_own_accounts(ctx.db, raw(wallet.address), jetton_wallet)
    old = ctx.wallet_raw
    ctx.wallet, ctx.sign, ctx.jetton_wallet = wallet, signer.sign, jetton_wallet
    ctx.own_feeds = None
    ctx.found.clear()
    ctx.track_after.clear()
    ctx.excess_waits.clear()
    ctx.rotation_refused = None
    log.info("hot wallet rotated: signing with the new wallet", old=old, new=ctx.wallet_raw)
    if ctx.settings.payment_processor_address.strip():
        try:
            check_payment_processor_address(ctx.settings, ctx.wallet_raw)
        except WalletKeyError as exc:
            log.error("set PAYMENT_PROCESSOR_ADDRESS to the new wallet", reason=exc.message)
    return True


async def register_own_accounts(db: Database, hot_wallet: str, jetton_wallet: str | None) -> None:
    """Record our hot wallet and its USDT jetton wallet (raw forms) in `ton_own_accounts`, so
    the API refuses payouts addressed to them (`destination_own_wallet`). Idempotent."""
    insert = pg_insert if db.dialect == "postgresql" else sqlite_insert
    rows = [{"address": hot_wallet.upper(), "role": "hot_wallet", "recorded_at": clock.now()}]
    if jetton_wallet:
        rows.append(
            {"address": jetton_wallet.upper(), "role": "jetton_wallet", "recorded_at": clock.now()}
        )
    async with db.transaction() as session:
        await session.execute(
            insert(TonOwnAccount).values(rows).on_conflict_do_nothing(index_elements=["address"])
        )
