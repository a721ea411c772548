"""The ASGI application: public API v1, health checks, OpenAPI at /openapi.json."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

import tonrail
from tonrail.api_keys_endpoints import router as api_keys_router
from tonrail.api_limits import build_limiter
from tonrail.api_limits import install as install_rate_limits
from tonrail.api_schema import document_answers
from tonrail.balances.endpoints import router as balance_router
from tonrail.dashboard.routes import SecurityHeaders
from tonrail.dashboard.routes import install as install_dashboard
from tonrail.db import Database
from tonrail.fees.endpoints import router as fees_router
from tonrail.fees.service import fee_decisions_for
from tonrail.input_boundary import InputBoundary, document_refusals
from tonrail.monitoring.endpoints import router as monitoring_router
from tonrail.monitoring.request_timing import RequestTiming, flush_signals
from tonrail.monitoring.signals import (
    persist_signals,
    record_rate_limit_store,
    record_readiness,
)
from tonrail.notify.endpoints import router as merchant_webhooks_router
from tonrail.notify.service import WebhookEndpoints
from tonrail.payments.coalesce import GroupCommit
from tonrail.payments.endpoints import router as payments_router
from tonrail.payments.service import PaymentService
from tonrail.paypage.endpoints import CSP as PAY_CSP
from tonrail.paypage.endpoints import router as pay_page_router
from tonrail.paypage.jetton_wallets import JettonWallets
from tonrail.paypage.rate_limits import PayLimits
from tonrail.privacy.endpoints import router as privacy_router
from tonrail.processing.checkout import BackupCheckout
from tonrail.processing.checkout_api import router as backup_checkout_router
from tonrail.rails.registry import build_backup_rails
from tonrail.secrets_refresh import refresh_loop
from tonrail.security.access import AccessCache
from tonrail.security.client_ip import trusted_networks
from tonrail.settings import Settings
from tonrail.web import database, install_error_handlers
from tonrail.webhooks.endpoints import router as provider_webhooks_router
from tonrail.webhooks.service import ProviderWebhooks

log = logging.getLogger(__name__)


def _store_reporter(db: Database) -> Callable[[bool], None]:
    """Tell monitoring (`rate_limiter_unavailable`) whether this process reaches Redis.
    An API process has no loop that writes its signals, so each report is written at once,
    in the background (the request that noticed does not wait)."""
    process = f"{socket.gethostname()}:{os.getpid()}"
    pending: set[asyncio.Task[None]] = set()

    async def write() -> None:
        try:
            await persist_signals(db)
        except Exception as exc:  # the database may be down too; the next report retries
            log.warning("rate limiter: could not write its monitoring signal: %s", exc)

    def report(ok: bool) -> None:
        record_rate_limit_store(process, ok)
        task = asyncio.get_running_loop().create_task(write())
        pending.add(task)
        task.add_done_callback(pending.discard)

    return report


def create_app(settings: Settings, db: Database | None = None) -> FastAPI:
    """Build the app; pass `db` to share an engine (tests, `tonrail run`), else one is made."""
    trusted_networks(settings.trusted_proxies)  # a bad TRUSTED_PROXIES fails here, at start
    if settings.ton_network != "localnet" and not settings.payment_processor_address.strip():
        structlog.get_logger(__name__).warning(
            "PAYMENT_PROCESSOR_ADDRESS is empty: invoices get pay_to null and no payment link; "
            "set it to the hot wallet's address (`tonrail keys init-wallet` prints it)"
        )
    owns_db = db is None
    database_ = db or Database(
        settings.effective_database_url,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=settings.db_pool_size,
    )

    limiter = build_limiter(settings, _store_reporter(database_))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # What exists at start-up lives as long as the process: keep it out of the cyclic
        # collector's full passes, which otherwise stall the server for tens of ms (135-160 ms
        # measured on the 2-core bench machine) every few thousand payouts.
        gc.freeze()
        # Settings from AWS Secrets Manager are read again every SECRETS_REFRESH_SECONDS.
        secrets = asyncio.create_task(refresh_loop(settings))
        flusher = asyncio.create_task(flush_signals(database_, settings.signals_flush_seconds))
        yield
        secrets.cancel()
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        with contextlib.suppress(Exception):
            await persist_signals(database_)  # what this process measured last
        if limiter is not None:
            await limiter.close()
        await app.state.jetton_wallets.aclose()
        await app.state.payments.aclose()  # RATE_SOURCE=dex: the toncenter client it opened
        treasury_api = getattr(app.state, "treasury_api", None)  # the dashboard's chain reads
        if treasury_api is not None:
            await treasury_api.aclose()
        if owns_db:
            await database_.dispose()

    app = FastAPI(
        title="tonrail",
        version=tonrail.__version__,
        description="Payments on TON (Toncoin and USDT) with Stripe, PayPal and bank "
        "transfer as backup rails. Amounts are decimal strings in major units; "
        "every POST accepts an Idempotency-Key.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = database_
    # PostgreSQL: concurrent single payouts of this API process share write transactions.
    groups = GroupCommit(database_) if database_.dialect == "postgresql" else None
    app.state.payments = PaymentService(database_, settings, fee_decisions_for, groups=groups)
    # Keys and lockouts as this process remembers them (security/access.py).
    app.state.access = AccessCache(
        database_, settings.api_key_cache_seconds, settings.access_recheck_ms
    )
    install_error_handlers(app)
    install_rate_limits(app, settings, limiter, app.state.access)  # docs/API.md
    app.include_router(payments_router)
    app.include_router(fees_router)  # GET /v1/fees/status (docs/FEES.md)
    app.include_router(balance_router)  # GET /v1/balance (docs/API.md)
    app.include_router(api_keys_router)  # GET /v1/api_keys (docs/SECURITY.md)
    # Merchant webhooks and GET /v1/events (docs/WEBHOOKS.md).
    app.state.webhook_endpoints = WebhookEndpoints(database_, settings)
    app.include_router(merchant_webhooks_router)
    app.include_router(privacy_router)  # GDPR export and erasure (docs/PRIVACY.md)
    app.include_router(monitoring_router)  # GET /metrics (docs/monitoring.md)
    # Backup rails (Stripe, PayPal, bank): checkout for invoices and provider webhooks.
    app.state.backup_rails = build_backup_rails(settings)
    app.state.backup_checkout = BackupCheckout(database_, settings, app.state.backup_rails)
    app.state.provider_webhooks = ProviderWebhooks(
        database_, app.state.payments, app.state.backup_rails
    )
    app.include_router(backup_checkout_router)
    app.include_router(provider_webhooks_router)
    install_dashboard(app)  # /dashboard (docs/DASHBOARD.md)
    # The hosted checkout page /pay/{invoice_id}, public (docs/CHECKOUT.md).
    app.state.jetton_wallets = JettonWallets(settings)
    app.include_router(pay_page_router)
    if limiter is not None:  # per client address, inside SecurityHeaders (its 429 gets the CSP)
        app.add_middleware(PayLimits, limiter=limiter, settings=settings)
    app.add_middleware(SecurityHeaders, prefix="/pay/", csp=PAY_CSP)
    # The API latency objective times /v1 requests (monitoring/request_timing.py).
    app.add_middleware(RequestTiming)
    # Outermost: size, content type, JSON shape and control characters are checked before
    # routing and authentication (input_boundary.py); the schema documents its refusals.
    app.add_middleware(
        InputBoundary,
        max_body_bytes=settings.request_body_max_bytes,
        max_json_depth=settings.request_json_max_depth,
    )
    document_refusals(app)
    document_answers(app, settings.page_max_limit)  # ids, answers, links (api_schema.py)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> Any:
        """The process can serve: its database answers."""
        try:
            async with database(request).engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            record_readiness(False)
            return JSONResponse(
                {"status": "unavailable", "database": type(exc).__name__}, status_code=503
            )
        record_readiness(True)  # the uptime objective counts these (monitoring/slo.py)
        return {"status": "ok", "database": database(request).dialect}

    @app.get("/v1/noop", tags=["health"], include_in_schema=False)
    async def noop() -> dict[str, str]:
        """Baseline for benchmarks: the framework's cost without our work."""
        return {"ok": "true"}

    return app
