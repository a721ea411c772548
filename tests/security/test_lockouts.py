"""Lockouts set in the request path, what they refuse, their expiry, and the dashboard's
separate bucket, over HTTP on both databases (no alert evaluator involved unless named)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import make_key
from tests.helpers import DEST, row_counts
from tonrail import clock
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.monitoring.jobs import evaluate_once
from tonrail.security.lockouts import EXPIRED_BY
from tonrail.security.models import Lockout
from tonrail.settings import Settings

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
PAYOUT = {"amount": "1", "asset": "TON", "destination": DEST}
GUESS = {"Authorization": "Bearer trk_guess"}
OFFICE, OTHER = "203.0.113.7", "203.0.113.8"


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def frozen() -> Clock:
    c = Clock()
    clock.set_clock(c)
    return c


@pytest.fixture
def settings(database_url: str, tmp_path: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=database_url,
        data_dir=tmp_path,
        payment_processor_address=DEST,
        lockout_seconds=600,
    )


@pytest.fixture
async def peers(app: Any) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client per source address, all on the one app."""
    opened = {
        ip: httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(ip, 1)), base_url="http://tonrail.test"
        )
        for ip in (OFFICE, OTHER)
    }
    yield opened
    for c in opened.values():
        await c.aclose()


async def _guess(c: httpx.AsyncClient, n: int) -> None:
    for _ in range(n):
        r = await c.get("/v1/payouts", headers=GUESS)
        assert r.status_code == 401, r.text


async def _locks(db: Database) -> list[Lockout]:
    async with db.transaction() as session:
        return list((await session.execute(select(Lockout).order_by(Lockout.locked_at))).scalars())


async def test_the_tenth_bad_key_locks_the_address_before_the_next_request(
    frozen: Clock,
    peers: dict[str, httpx.AsyncClient],
    auth: dict[str, str],
    db: Database,
    settings: Settings,
) -> None:
    office = peers[OFFICE]
    await _guess(office, settings.alert_suspicious_failures - 1)
    assert await _locks(db) == []  # nine: nothing yet
    await _guess(office, 1)
    [lockout] = await _locks(db)
    assert (lockout.subject_kind, lockout.subject) == ("ip", OFFICE)
    assert lockout.expires_at == T0 + timedelta(seconds=600)
    # At once (same instant, no evaluator): a correct payout from the address is refused ...
    before = await row_counts(db)
    r = await office.post("/v1/payouts", json=PAYOUT, headers=auth)
    assert r.status_code == 423 and r.json()["error"]["code"] == "ip_locked"
    assert await row_counts(db) == before  # ... and writes nothing
    # ... so are reads, and more guesses (not even charged any more).
    assert (await office.get("/v1/payouts", headers=auth)).status_code == 423
    r = await office.get("/v1/payouts", headers=GUESS)
    assert r.status_code == 423 and r.json()["error"]["code"] == "ip_locked"
    # Another address is not affected.
    assert (await peers[OTHER].post("/v1/payouts", json=PAYOUT, headers=auth)).status_code == 201


async def test_a_lock_expires_by_itself_and_can_lock_again(
    frozen: Clock,
    peers: dict[str, httpx.AsyncClient],
    auth: dict[str, str],
    db: Database,
    settings: Settings,
) -> None:
    office = peers[OFFICE]
    await _guess(office, 10)
    assert (await office.get("/v1/payouts", headers=auth)).status_code == 423
    frozen.advance(599)
    assert (await office.get("/v1/payouts", headers=auth)).status_code == 423
    frozen.advance(1)  # LOCKOUT_SECONDS after the lock
    assert (await office.get("/v1/payouts", headers=auth)).status_code == 200
    assert (await office.post("/v1/payouts", json=PAYOUT, headers=auth)).status_code == 201
    # The evaluator closes the expired lock; the failures before it do not lock again.
    await evaluate_once(db, settings, {})
    [old] = await _locks(db)
    assert old.unlocked_by == EXPIRED_BY and old.unlocked_at == T0 + timedelta(seconds=600)
    assert (await office.get("/v1/payouts", headers=auth)).status_code == 200
    # Ten new failures lock it again.
    frozen.advance(1)
    await _guess(office, 9)
    assert (await office.get("/v1/payouts", headers=auth)).status_code == 200
    await _guess(office, 1)
    assert (await office.get("/v1/payouts", headers=auth)).status_code == 423
    assert len(await _locks(db)) == 2


async def test_lockout_seconds_zero_locks_until_unlocked(
    frozen: Clock, settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    app = create_app(settings.model_copy(update={"lockout_seconds": 0}), db)
    transport = httpx.ASGITransport(app=app, client=(OFFICE, 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
        await _guess(c, 10)
        frozen.advance(30 * 24 * 3600)
        assert (await c.get("/v1/payouts", headers=auth)).status_code == 423
    [lockout] = await _locks(db)
    assert lockout.expires_at is None


async def test_a_locked_key_is_refused_for_every_request(
    frozen: Clock, client: httpx.AsyncClient, db: Database, settings: Settings, api_key: str
) -> None:
    from tonrail.security.api_keys import hash_secret
    from tonrail.security.lockouts import lock
    from tonrail.security.models import ApiKey

    auth = {"Authorization": f"Bearer {api_key}"}
    pid = (await client.post("/v1/payouts", json=PAYOUT, headers=auth)).json()["id"]
    async with db.transaction() as session:
        key_id = (
            await session.execute(
                select(ApiKey.id).where(ApiKey.secret_hash == hash_secret(api_key))
            )
        ).scalar_one()
        await lock(session, "api_key", key_id, 10, "test", settings.lockout_seconds)
    frozen.advance(settings.access_recheck_ms / 1000)
    for method, path in (
        ("GET", "/v1/payouts"),
        ("GET", f"/v1/payouts/{pid}"),
        ("POST", f"/v1/payouts/{pid}/cancel"),
        ("POST", "/v1/invoices"),
    ):
        r = await client.request(method, path, headers=auth, json={"amount": "1", "asset": "TON"})
        assert r.status_code == 423, (path, r.text)
        assert r.json()["error"]["code"] == "api_key_locked"
    other = {"Authorization": f"Bearer {await make_key(db)}"}
    assert (await client.get("/v1/payouts", headers=other)).status_code == 200
