"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, the app, API keys.

Every test that takes `db` runs twice, once per backend. PostgreSQL comes from
TONRAIL_TEST_POSTGRES_URL (set by `make test`); in CI a missing server is an error, not a skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tonrail import clock
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.migrate import upgrade
from tonrail.models import metadata
from tonrail.security.api_keys import create_key
from tonrail.settings import Settings

PG_URL = os.environ.get("TONRAIL_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", "postgresql"]
REDIS_URL = "redis://127.0.0.1:6379/0"  # tests keep apart by key prefix (`redis_prefix`)


async def _create_database(admin_url: str, name: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()


async def _drop_database(admin_url: str, name: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets a copy."""
    path = tmp_path_factory.mktemp("db") / "template.sqlite3"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated once, dropped at the end.

    Its own database (on the server TONRAIL_TEST_POSTGRES_URL names) keeps concurrent runs
    on one machine from seeing each other's tables.
    """
    import asyncio

    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must test PostgreSQL: TONRAIL_TEST_POSTGRES_URL is not set")
        pytest.skip("TONRAIL_TEST_POSTGRES_URL not set")
    name = f"tonrail_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_create_database(PG_URL, name))
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_URL} is not reachable in CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    asyncio.run(_drop_database(PG_URL, name))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "tonrail.sqlite3"
        shutil.copy(template, path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=20)
    if database.dialect == "postgresql":
        tables = ", ".join(t.name for t in metadata.sorted_tables)
        async with database.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield database
    await database.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=database_url,
        data_dir=tmp_path,
        payment_processor_address="EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs",
    )


@pytest.fixture
def app(settings: Settings, db: Database) -> Any:
    return create_app(settings, db)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
        yield c


async def make_key(db: Database, account: str = "acct_test", *scopes: str) -> str:
    async with db.transaction() as session:
        _, secret = await create_key(
            session, account, "test", scopes or ("payments:read", "payments:write")
        )
    return secret


@pytest.fixture
async def api_key(db: Database) -> str:
    return await make_key(db)


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own on the local Redis (REDIS_URL); its keys are deleted
    afterwards. In CI a missing Redis is an error, not a skip."""
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {REDIS_URL} is not reachable in CI: {exc}")
        pytest.skip(f"Redis not reachable: {exc}")
    prefix = f"tonrail-test:{uuid.uuid4().hex}"
    yield prefix
    keys = [key async for key in client.scan_iter(match="{" + prefix + "}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(autouse=True)
def _reset_clock() -> Iterator[None]:
    yield
    clock.set_clock(None)
