"""`tonrail run`: the whole system in one process on SQLite, for a laptop."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
import uvicorn
from sqlalchemy import func, select

from tonrail.app import create_app
from tonrail.db import Database
from tonrail.migrate import upgrade_async
from tonrail.payments.service import PaymentService
from tonrail.security.api_keys import create_key
from tonrail.security.models import ApiKey
from tonrail.settings import Settings
from tonrail.worker import WorkerContext, default_worker_id, run_worker, select_loops

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


async def run_embedded(settings: Settings) -> None:
    url = settings.effective_database_url
    await upgrade_async(url)
    db = Database(url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    stop = asyncio.Event()
    try:
        secret = await ensure_demo_key(db) if settings.bootstrap_demo else None
        app = create_app(settings, db)
        server = uvicorn.Server(
            uvicorn.Config(
                app, host=settings.host, port=settings.port, log_level=settings.log_level.lower()
            )
        )
        ctx = WorkerContext(db, settings, PaymentService(db, settings), default_worker_id())
        workers = asyncio.create_task(run_worker(ctx, select_loops(None), stop))
        print(f"tonrail: API on http://{settings.host}:{settings.port}  (OpenAPI: /docs)")
        if secret:
            print(f"tonrail: demo API key (shown once): {secret}")
        await server.serve()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(workers, timeout=5)
        await db.dispose()
