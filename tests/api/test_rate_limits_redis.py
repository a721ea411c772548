"""Rate limits shared through a real Redis (127.0.0.1:6379, a fresh key prefix per test):
two app instances share each key's and address's buckets; a noisy key cannot starve a
quiet one across instances; Redis unreachable (a closed port) keeps reads going on
per-process buckets, refuses large payouts with 503, raises the `rate_limiter_unavailable`
alert and resolves it when Redis answers again.

The clock stands still (no refill) so counts are exact; Redis is told the app's time."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import REDIS_URL, make_key
from tonrail import clock
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.monitoring import signals
from tonrail.monitoring.jobs import take_snapshot
from tonrail.monitoring.models import MonitoringSignal
from tonrail.monitoring.rules import Thresholds, rate_limiter_unavailable
from tonrail.payments.models import Payment
from tonrail.settings import Settings

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DESTINATION = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"
LIMITS = {
    "rate_limit_key_read_per_second": 1.0,
    "rate_limit_key_read_burst": 4,
    "rate_limit_key_write_per_second": 1.0,
    "rate_limit_key_write_burst": 3,
    "rate_limit_ip_read_per_second": 1.0,
    "rate_limit_ip_read_burst": 10,
    "rate_limit_ip_write_per_second": 1.0,
    "rate_limit_ip_write_burst": 30,
}


@pytest.fixture(autouse=True)
def _still_clock() -> None:
    clock.set_clock(lambda: START)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens here once the socket is closed


@pytest.fixture
def instance(settings: Settings, db: Database) -> Callable[..., Any]:
    """`async with instance(redis_url, prefix, **overrides) as app`: one API process's app."""

    @asynccontextmanager
    async def open_app(url: str, prefix: str, **overrides: Any) -> AsyncIterator[Any]:
        update = {
            **LIMITS,
            "redis_url": url,
            "rate_limit_redis_prefix": prefix,
            # A busy test machine can hold a reply past a short timeout; these tests are
            # about sharing and failing, and a closed port fails at once whatever this is.
            "rate_limit_redis_timeout_ms": 10_000,
            **overrides,
        }
        app = create_app(settings.model_copy(update=update), db)
        try:
            yield app
        finally:
            await app.state.rate_limiter.close()

    return open_app


@asynccontextmanager
async def client_of(app: Any, ip: str = "203.0.113.9") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
        yield c


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def payout(amount: str) -> dict[str, str]:
    return {"amount": amount, "asset": "USDT", "destination": DESTINATION}


async def test_two_instances_share_each_keys_bucket(
    instance: Callable[..., Any], redis_prefix: str, db: Database
) -> None:
    key = await make_key(db)
    async with (
        instance(REDIS_URL, redis_prefix) as first,
        instance(REDIS_URL, redis_prefix) as second,
    ):
        async with client_of(first) as a, client_of(second) as b:
            codes = [
                (await a.post("/v1/payouts", json=payout("1"), headers=bearer(key))).status_code,
                (await b.post("/v1/payouts", json=payout("1"), headers=bearer(key))).status_code,
                (await a.post("/v1/payouts", json=payout("1"), headers=bearer(key))).status_code,
                (await b.post("/v1/payouts", json=payout("1"), headers=bearer(key))).status_code,
                (await a.post("/v1/payouts", json=payout("1"), headers=bearer(key))).status_code,
            ]
            refused = await b.post("/v1/payouts", json=payout("1"), headers=bearer(key))
    # Per process, each instance would have let 3 through: 6 in all. Shared: 3.
    assert codes == [201, 201, 201, 429, 429]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["RateLimit-Remaining"] == "0"
    async with db.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(Payment))).scalar() == 3


async def test_two_instances_share_each_address_bucket(
    instance: Callable[..., Any], redis_prefix: str
) -> None:
    async with (
        instance(REDIS_URL, redis_prefix) as first,
        instance(REDIS_URL, redis_prefix) as second,
    ):
        async with client_of(first) as a, client_of(second) as b:
            codes = [(await c.get("/v1/payouts")).status_code for c in [a, b] * 6]
    assert codes == [401] * 10 + [429] * 2


async def test_a_noisy_key_cannot_starve_a_quiet_one_across_instances(
    instance: Callable[..., Any], redis_prefix: str, db: Database
) -> None:
    """Load test (fairness) through Redis: the noisy key floods both instances with 200
    concurrent reads, the quiet key reads 4 times in the middle, from the same address."""
    noisy, quiet = await make_key(db, "acct_noisy"), await make_key(db, "acct_quiet")
    async with (
        instance(REDIS_URL, redis_prefix) as first,
        instance(REDIS_URL, redis_prefix) as second,
    ):
        async with client_of(first) as a, client_of(second) as b:

            async def read(client: httpx.AsyncClient, key: str) -> int:
                return (await client.get("/v1/payouts", headers=bearer(key))).status_code

            flood = [asyncio.create_task(read(a if n % 2 else b, noisy)) for n in range(100)]
            calm = [asyncio.create_task(read(a if n % 2 else b, quiet)) for n in range(4)]
            flood += [asyncio.create_task(read(a if n % 2 else b, noisy)) for n in range(100)]
            noisy_codes = await asyncio.gather(*flood)
            quiet_codes = await asyncio.gather(*calm)
    assert quiet_codes == [200] * 4
    assert noisy_codes.count(200) == 4
    assert noisy_codes.count(429) == 196


async def _signal(db: Database, name: str) -> MonitoringSignal | None:
    """The stored signal, once the API's background write has landed (bounded wait)."""
    for _ in range(200):
        async with db.transaction() as session:
            row = (
                await session.execute(select(MonitoringSignal).where(MonitoringSignal.name == name))
            ).scalar_one_or_none()
        if row is not None:
            return row
        await asyncio.sleep(0.02)
    return None


async def test_redis_down_keeps_reads_refuses_large_payouts_and_alerts(
    instance: Callable[..., Any], db: Database, settings: Settings
) -> None:
    signals.take_buffer()  # other tests' signals are not this one's
    key = await make_key(db)
    threshold = 1_000 * 10**6  # RATE_LIMIT_FAIL_CLOSED_USDT: 1,000 USDT
    down = f"redis://127.0.0.1:{closed_port()}/0"
    async with instance(down, "unused", rate_limit_fail_closed_usdt=threshold) as app:
        async with client_of(app) as client:
            reads = [await client.get("/v1/payouts", headers=bearer(key)) for _ in range(5)]
            large = await client.post("/v1/payouts", json=payout("1000.01"), headers=bearer(key))
            batch = await client.post(
                "/v1/payouts/batch",
                json={"payouts": [payout("600"), payout("600")]},
                headers=bearer(key),
            )
            small = await client.post("/v1/payouts", json=payout("1000"), headers=bearer(key))
        limiter = app.state.rate_limiter
        assert limiter.store_down
    # Reads fail open to this process's buckets: still limited (burst 4), never refused
    # because Redis is down.
    assert [r.status_code for r in reads] == [200, 200, 200, 200, 429]
    assert large.status_code == 503
    assert large.json()["error"]["code"] == "rate_limiter_unavailable"
    assert batch.status_code == 503  # 1,200 USDT together
    assert small.status_code == 201  # at the threshold, not above it
    async with db.transaction() as session:
        stored = (await session.execute(select(Payment.amount))).scalars().all()
    assert stored == [1_000 * 10**6]  # nothing of the refused payouts was written
    # The process told monitoring at once, and the rule raises the alert.
    error = await _signal(db, "rate_limit_store_error_ms")
    assert error is not None and error.labels.startswith("process=")
    snap = await take_snapshot(db, settings)
    [finding] = rate_limiter_unavailable(snap, Thresholds.from_settings(settings))
    assert finding.dedup_key == "rate_limiter_unavailable"
    assert finding.severity == "error"


async def _forward(port: int) -> asyncio.Server:
    """Redis becomes reachable on `port`: a plain TCP relay to 127.0.0.1:6379."""

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(relay, "127.0.0.1", port)


async def test_the_alert_resolves_and_limits_are_shared_again_when_redis_returns(
    instance: Callable[..., Any], redis_prefix: str, db: Database, settings: Settings
) -> None:
    signals.take_buffer()
    key = await make_key(db)
    port = closed_port()
    url = f"redis://127.0.0.1:{port}/0"
    async with (
        instance(url, redis_prefix, rate_limit_redis_retry_seconds=0) as first,
        instance(REDIS_URL, redis_prefix) as second,
    ):
        async with client_of(first) as a, client_of(second) as b:
            assert (await a.get("/v1/payouts", headers=bearer(key))).status_code == 200
            assert first.state.rate_limiter.store_down
            assert await _signal(db, "rate_limit_store_error_ms") is not None
            relay = await _forward(port)
            try:
                # Back: the first instance draws from the shared buckets again. The read
                # it made alone (per process) is not in them: 4 more shared reads pass.
                codes = [
                    (await c.get("/v1/payouts", headers=bearer(key))).status_code
                    for c in [a, b, a, b, a]
                ]
                assert not first.state.rate_limiter.store_down
                assert await _signal(db, "rate_limit_store_ok_ms") is not None
            finally:
                relay.close()
                await relay.wait_closed()
    assert codes == [200, 200, 200, 200, 429]
    snap = await take_snapshot(db, settings)
    assert rate_limiter_unavailable(snap, Thresholds.from_settings(settings)) == []
