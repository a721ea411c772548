"""Revocation, lockouts and unlocks hold in every API process within ACCESS_RECHECK_MS.

Two app instances, each with its own engine (as two `tonrail serve` processes), share one
database; the change is made by a third connection (as `tonrail keys revoke` or `tonrail
lockouts unlock` would). The service clock is frozen and moved by hand: no timing here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from tests.conftest import make_key
from tests.helpers import DEST
from tonrail import clock
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.security.api_keys import hash_secret, revoke_key
from tonrail.security.lockouts import lock, unlock
from tonrail.security.models import ApiKey
from tonrail.settings import Settings

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
PAYOUT = {"amount": "1", "asset": "TON", "destination": DEST}


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class Instances:
    a: httpx.AsyncClient
    b: httpx.AsyncClient
    clock: Clock
    recheck_s: float


@pytest.fixture
async def two(settings: Settings, database_url: str) -> AsyncIterator[Instances]:
    c = Clock()
    clock.set_clock(c)
    dbs = [Database(database_url), Database(database_url)]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(settings, d), client=("198.51.100.20", 1)),
            base_url="http://tonrail.test",
        )
        for d in dbs
    ]
    yield Instances(clients[0], clients[1], c, settings.access_recheck_ms / 1000)
    for client in clients:
        await client.aclose()
    for d in dbs:
        await d.dispose()


async def _key_id(db: Database, secret: str) -> str:
    async with db.transaction() as session:
        return (
            await session.execute(
                select(ApiKey.id).where(ApiKey.secret_hash == hash_secret(secret))
            )
        ).scalar_one()


async def test_a_revoked_key_is_refused_by_every_instance_within_the_recheck(
    two: Instances, db: Database, settings: Settings
) -> None:
    assert settings.access_recheck_ms == 500  # the default: well inside a second
    secret = await make_key(db)
    auth = {"Authorization": f"Bearer {secret}"}
    for c in (two.a, two.b):  # both instances now remember the key
        assert (await c.get("/v1/payouts", headers=auth)).status_code == 200
    async with db.transaction() as session:  # elsewhere: the CLI, another process
        assert await revoke_key(session, await _key_id(db, secret))
    two.clock.advance(two.recheck_s)
    for c in (two.a, two.b):
        r = await c.post("/v1/payouts", json=PAYOUT, headers=auth)
        assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_invalid"
        r = await c.get("/v1/payouts", headers=auth)
        assert r.status_code == 401


async def test_a_key_read_before_a_revocation_is_not_remembered_after_it(
    two: Instances, db: Database
) -> None:
    """Remembering is tied to the version the key was read under: an instance that saw the
    revocation cannot keep the key from a read that started before it."""
    secret = await make_key(db)
    auth = {"Authorization": f"Bearer {secret}"}
    assert (await two.a.get("/v1/payouts", headers=auth)).status_code == 200
    async with db.transaction() as session:
        assert await revoke_key(session, await _key_id(db, secret))
    two.clock.advance(two.recheck_s)
    assert (await two.a.get("/v1/payouts", headers=auth)).status_code == 401
    # Much later, nothing brought it back.
    two.clock.advance(60)
    assert (await two.a.get("/v1/payouts", headers=auth)).status_code == 401


async def test_locks_and_unlocks_made_elsewhere_hold_within_the_recheck(
    two: Instances, db: Database, auth: dict[str, str], api_key: str
) -> None:
    for c in (two.a, two.b):
        assert (await c.get("/v1/payouts", headers=auth)).status_code == 200
    key_id = await _key_id(db, api_key)
    async with db.transaction() as session:
        assert await lock(session, "api_key", key_id, 10, "test") is not None
        assert await lock(session, "ip", "198.51.100.20", 10, "test") is not None
    two.clock.advance(two.recheck_s)
    for c in (two.a, two.b):
        r = await c.get("/v1/payouts", headers=auth)
        assert r.status_code == 423 and r.json()["error"]["code"] == "ip_locked"
    async with db.transaction() as session:
        await unlock(session, "ip:198.51.100.20", "admin:test")
    two.clock.advance(two.recheck_s)
    for c in (two.a, two.b):
        r = await c.get("/v1/payouts", headers=auth)
        assert r.status_code == 423 and r.json()["error"]["code"] == "api_key_locked"
    async with db.transaction() as session:
        await unlock(session, f"api_key:{key_id}", "admin:test")
    two.clock.advance(two.recheck_s)
    for c in (two.a, two.b):
        assert (await c.get("/v1/payouts", headers=auth)).status_code == 200


async def test_recheck_zero_reads_the_version_on_every_request(
    settings: Settings, db: Database
) -> None:
    clock.set_clock(lambda: T0)  # frozen: only a per-request read can see the change
    app = create_app(settings.model_copy(update={"access_recheck_ms": 0}), db)
    secret = await make_key(db)
    auth = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tonrail.test"
    ) as c:
        assert (await c.get("/v1/payouts", headers=auth)).status_code == 200
        async with db.transaction() as session:
            assert await revoke_key(session, await _key_id(db, secret))
        assert (await c.get("/v1/payouts", headers=auth)).status_code == 401


@pytest.mark.parametrize("bad", [-1, 1001, 5000])
def test_the_recheck_cannot_be_longer_than_a_second(bad: int) -> None:
    with pytest.raises(ValidationError, match="access_recheck_ms"):
        Settings(_env_file=None, access_recheck_ms=bad)  # type: ignore[call-arg]
