"""`tonrail run`: the whole system in one process on SQLite, for a laptop.

API + dashboard + workers + the local TON network (real TVM) in one event loop. On the first
start it creates the dashboard's admin user and a demo API key (both printed once) and, on the
local network only, installs the genesis hot wallet's key sealed with the development
passphrase, so payouts work at once. With BOOTSTRAP_DEMO on the local network, demo traffic
(tonrail/demo.py) keeps real payouts and invoices moving so the dashboard has something to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import structlog
import uvicorn
from pydantic import SecretStr
from sqlalchemy import func, select

from tonrail.app import create_app
from tonrail.db import Database
from tonrail.demo import ensure_admin, localnet_traffic
from tonrail.fees.service import fee_decisions_for
from tonrail.localnet.chain import Chain
from tonrail.localnet.genesis import Genesis
from tonrail.localnet.server import create_app as create_localnet_app
from tonrail.migrate import upgrade_async
from tonrail.payments.service import PaymentService
from tonrail.processing.resolutions import book_opening_balance
from tonrail.processing.ton_runtime import open_ton_rail
from tonrail.rails.registry import build_backup_rails
from tonrail.rails.ton.keys import key_file_path, passphrase_kek, seal, write_envelope
from tonrail.security.api_keys import create_key
from tonrail.security.models import ApiKey
from tonrail.settings import Settings
from tonrail.worker import default_worker_id, run_worker, select_loops, worker_context

log = structlog.get_logger(__name__)


async def ensure_demo_key(db: Database) -> str | None:
    """On a fresh database create a key so the API can be tried at once; print it once."""
    async with db.transaction() as session:
        if (await session.execute(select(func.count(ApiKey.id)))).scalar_one():
            return None
        _, secret = await create_key(
            session, "acct_demo", "demo", ("payments:read", "payments:write")
        )
        return secret


def localnet_settings(settings: Settings, genesis: Genesis) -> Settings:
    """Point the TON rail at the in-process local network and its genesis accounts."""
    base = f"http://127.0.0.1:{settings.localnet_port}"
    hot = genesis.wallet("hot").address
    return settings.model_copy(
        update={
            "ton_api_url": settings.ton_api_url or f"{base}/api/v2",
            "ton_api_v3_url": settings.ton_api_v3_url or f"{base}/api/v3",
            "usdt_jetton_master": settings.usdt_jetton_master or genesis.usdt_master.to_str(),
            "payment_processor_address": settings.payment_processor_address
            or hot.to_str(is_user_friendly=True, is_bounceable=True),
            "ton_api_key": settings.ton_api_key or SecretStr(""),
        }
    )


def install_localnet_hot_wallet(settings: Settings, genesis: Genesis) -> Path | None:
    """Seal the genesis hot wallet key into the key file, unless a key is already configured."""
    path = key_file_path(settings)
    if settings.ton_master_key.get_secret_value() or path.exists():
        return None
    seed = bytes.fromhex(genesis.wallet("hot").to_json()["private_key"])
    write_envelope(path, seal(seed, passphrase_kek(settings)))
    return path


class _WithoutLocalnetAccess(logging.Filter):
    """Keep the local network's toncenter calls (several a second) out of the access log:
    both servers share uvicorn's access logger, and the API's own requests are what count."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        path = args[2] if isinstance(args, tuple) and len(args) > 2 else ""
        return not str(path).startswith(("/api/v2/", "/api/v3/"))


async def _serve_localnet(chain: Chain, port: int) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(
            create_localnet_app(chain),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
        if task.done():
            task.result()
    return server


async def run_embedded(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.effective_database_url
    await upgrade_async(url)
    localnet = None
    fresh_wallet = False
    if settings.ton_network == "localnet":
        chain = Chain.open(
            str(settings.data_dir / "localnet.sqlite3"),
            block_ms=settings.localnet_block_ms,
        )
        localnet = await _serve_localnet(chain, settings.localnet_port)
        logging.getLogger("uvicorn.access").addFilter(_WithoutLocalnetAccess())
        settings = localnet_settings(settings, chain.genesis)
        fresh_wallet = install_localnet_hot_wallet(settings, chain.genesis) is not None
        if fresh_wallet:
            print("tonrail: installed the local network's demo hot wallet key (dev passphrase)")
    db = Database(url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    if localnet is not None and fresh_wallet:
        # Genesis minted USDT into the hot wallet's jetton wallet with no notification:
        # book it as the opening balance, as an operator would, so the books reconcile.
        minted = int(chain.genesis.wallet("hot").to_json()["funded_usdt"])
        async with db.transaction() as session:
            await book_opening_balance(
                session,
                "USDT",
                minted,
                "system:localnet",
                "USDT minted at the local network's genesis",
            )
    stop = asyncio.Event()
    workers: asyncio.Task[None] | None = None
    traffic: asyncio.Task[None] | None = None
    try:
        admin = await ensure_admin(db)
        secret = await ensure_demo_key(db) if settings.bootstrap_demo else None
        app = create_app(settings, db)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                log_level=settings.log_level.lower(),
                proxy_headers=False,  # TRUSTED_PROXIES decides (security/client_ip.py)
            )
        )
        payments = PaymentService(db, settings, fee_decisions_for)
        worker_id = default_worker_id()
        backup = build_backup_rails(settings)
        ton = await open_ton_rail(settings, db, payments, worker_id, backup)
        ctx = worker_context(db, settings, payments, worker_id, ton, backup)
        workers = asyncio.create_task(run_worker(ctx, select_loops(None), stop))
        if localnet is not None and settings.bootstrap_demo and settings.demo_traffic_seconds > 0:
            demo = localnet_traffic(settings, db, app, chain, ton.api)
            traffic = asyncio.create_task(demo.run(stop))
        print(f"tonrail: API on http://{settings.host}:{settings.port}  (OpenAPI: /docs)")
        if localnet is not None:
            print(
                f"tonrail: local TON network on http://127.0.0.1:{settings.localnet_port}"
                f"  (toncenter v2/v3; hot wallet {ton.wallet.address.to_str()})"
            )
        print(f"tonrail: dashboard on http://{settings.host}:{settings.port}/dashboard")
        if admin:
            print(f"tonrail: dashboard admin (shown once): user {admin[0]}  password {admin[1]}")
        if secret:
            print(f"tonrail: demo API key (shown once): {secret}")
        if traffic is not None:
            print(
                "tonrail: demo traffic on: a payout every "
                f"~{settings.demo_traffic_seconds:g} s (DEMO_TRAFFIC_SECONDS=0 turns it off)"
            )
        await server.serve()
    finally:
        stop.set()
        if traffic is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(traffic, timeout=5)
        if workers is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(workers, timeout=5)
        if localnet is not None:
            localnet.should_exit = True
            await asyncio.sleep(0.2)
        await db.dispose()
