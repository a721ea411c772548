"""Health, readiness, OpenAPI, and the schema matching the migrations."""

from __future__ import annotations

import httpx
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from tonrail.db import Database
from tonrail.models import metadata


async def test_health_and_readiness(client: httpx.AsyncClient, db: Database) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == db.dialect


async def test_readyz_reports_a_dead_database(client: httpx.AsyncClient, app: object) -> None:
    broken = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    app.state.db = broken  # type: ignore[attr-defined]
    r = await client.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    await broken.dispose()


async def test_openapi_lists_the_api(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/v1/payouts",
        "/v1/payouts/{payment_id}",
        "/v1/payouts/{payment_id}/approve",
        "/v1/payouts/{payment_id}/cancel",
        "/v1/invoices",
        "/v1/invoices/{payment_id}",
    ):
        assert path in paths, path


async def test_unknown_route_is_a_json_error(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_migrations_match_models(db: Database) -> None:
    def diff(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
