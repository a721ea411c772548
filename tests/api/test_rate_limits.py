"""Rate limits through the HTTP API, per process (no REDIS_URL): 429 `rate_limited` with
Retry-After and RateLimit-* headers, key and address buckets, reads apart from writes, the
dashboard's sign-in bucket, fairness between keys, and the OpenAPI description.

The clock stands still in these tests, so no bucket refills unless a test moves it: counts
are exact whatever the machine's speed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import make_key
from tests.dashboard.conftest import PASSWORD, login_csrf
from tonrail import clock
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.payments.models import Payment
from tonrail.security.admins import create_admin
from tonrail.settings import Settings

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DESTINATION = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"
PAYOUT = {"amount": "1.5", "asset": "USDT", "destination": DESTINATION}
LIMITS = {
    "rate_limit_key_read_per_second": 1.0,
    "rate_limit_key_read_burst": 4,
    "rate_limit_key_write_per_second": 1.0,
    "rate_limit_key_write_burst": 3,
    "rate_limit_ip_read_per_second": 1.0,
    "rate_limit_ip_read_burst": 30,
    "rate_limit_ip_write_per_second": 1.0,
    "rate_limit_ip_write_burst": 30,
}


@pytest.fixture(autouse=True)
def _still_clock() -> None:
    clock.set_clock(lambda: START)


def move_clock(seconds: float) -> None:
    now = START + timedelta(seconds=seconds)
    clock.set_clock(lambda: now)


@pytest.fixture
def limited(settings: Settings, db: Database) -> Callable[..., Any]:
    """`async with limited(ip="...", **settings) as client`: an app with LIMITS (and any
    overrides) and a client that connects from `ip`."""

    @asynccontextmanager
    async def open_client(ip: str = "203.0.113.9", **overrides: Any) -> AsyncIterator[Any]:
        app = create_app(settings.model_copy(update={**LIMITS, **overrides}), db)
        transport = httpx.ASGITransport(app=app, client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c

    return open_client


@asynccontextmanager
async def from_address(client: Any, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """Another client of the same app (same buckets), connecting from `ip`."""
    transport = httpx.ASGITransport(app=client.app, client=(ip, 40001))
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
        yield c


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def count_payouts(db: Database) -> int:
    async with db.transaction() as session:
        stmt = select(func.count()).select_from(Payment).where(Payment.direction == "out")
        return int((await session.execute(stmt)).scalar_one())


async def test_writes_past_the_key_burst_are_refused_with_429_and_headers(
    limited: Callable[..., Any], db: Database
) -> None:
    key = await make_key(db)
    async with limited() as client:
        answers = [
            await client.post("/v1/payouts", json=PAYOUT, headers=bearer(key)) for _ in range(5)
        ]
    assert [r.status_code for r in answers] == [201, 201, 201, 429, 429]
    ok, refused = answers[0], answers[3]
    assert ok.headers["RateLimit-Limit"] == "3"
    assert ok.headers["RateLimit-Remaining"] == "2"
    assert ok.headers["RateLimit-Reset"] == "1"
    assert "Retry-After" not in ok.headers
    assert refused.json()["error"]["code"] == "rate_limited"
    assert "API key" in refused.json()["error"]["message"]
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Reset"] == "3"
    assert await count_payouts(db) == 3  # a refused request wrote nothing


async def test_reads_and_writes_have_their_own_buckets_and_refill(
    limited: Callable[..., Any], db: Database
) -> None:
    key = await make_key(db)
    async with limited() as client:
        for _ in range(3):
            assert (await client.post("/v1/payouts", json=PAYOUT, headers=bearer(key))).is_success
        assert (await client.post("/v1/payouts", json=PAYOUT, headers=bearer(key))).status_code == (
            429
        )
        reads = [
            (await client.get("/v1/payouts", headers=bearer(key))).status_code for _ in range(5)
        ]
        assert reads == [200, 200, 200, 200, 429]
        move_clock(1.0)  # one token back in each bucket
        assert (await client.post("/v1/payouts", json=PAYOUT, headers=bearer(key))).status_code == (
            201
        )
        assert (await client.get("/v1/payouts", headers=bearer(key))).status_code == 200
        assert (await client.post("/v1/payouts", json=PAYOUT, headers=bearer(key))).status_code == (
            429
        )


async def test_keys_have_their_own_buckets(limited: Callable[..., Any], db: Database) -> None:
    first, second = await make_key(db, "acct_a"), await make_key(db, "acct_b")
    async with limited() as client:
        for _ in range(4):
            await client.get("/v1/payouts", headers=bearer(first))
        assert (await client.get("/v1/payouts", headers=bearer(first))).status_code == 429
        assert (await client.get("/v1/payouts", headers=bearer(second))).status_code == 200


async def test_an_address_without_a_valid_key_is_limited_before_authentication(
    limited: Callable[..., Any], db: Database
) -> None:
    """Guessing keys from one address: 401s until its bucket is empty, then 429 before any
    key is looked up; another address is not affected."""
    async with limited(rate_limit_ip_read_burst=5) as client:
        codes = [
            (await client.get("/v1/payouts", headers=bearer(f"trk_guess{n}"))).status_code
            for n in range(7)
        ]
        anonymous = (await client.get("/v1/payouts")).status_code
        async with from_address(client, "198.51.100.20") as other:
            elsewhere = (await other.get("/v1/payouts", headers=bearer("trk_guess"))).status_code
    assert codes == [401] * 5 + [429] * 2
    assert anonymous == 429
    assert elsewhere == 401


async def test_the_forwarded_client_is_limited_not_the_proxy(
    limited: Callable[..., Any], db: Database
) -> None:
    key = await make_key(db)
    async with limited(
        ip="10.0.0.5", trusted_proxies="10.0.0.0/8", rate_limit_ip_read_burst=2
    ) as client:

        def via(client_ip: str) -> dict[str, str]:
            return {**bearer(key), "X-Forwarded-For": client_ip}

        assert (await client.get("/v1/payouts", headers=via("203.0.113.1"))).status_code == 200
        assert (await client.get("/v1/payouts", headers=via("203.0.113.1"))).status_code == 200
        assert (await client.get("/v1/payouts", headers=via("203.0.113.1"))).status_code == 429
        # The same proxy, another client: its own bucket.
        assert (await client.get("/v1/payouts", headers=via("203.0.113.2"))).status_code == 200


async def test_a_noisy_key_cannot_starve_a_quiet_one(
    limited: Callable[..., Any], db: Database
) -> None:
    """Load test (fairness): two merchants behind one address. The noisy key fires 300
    requests at once, the quiet key its 4 reads in the middle of them: the noisy key gets
    429s, every quiet request succeeds, and the noisy key's refusals cost the shared
    address nothing beyond the noisy key's own burst."""
    noisy, quiet = await make_key(db, "acct_noisy"), await make_key(db, "acct_quiet")
    async with limited(rate_limit_ip_read_burst=10) as client:

        async def read(key: str) -> int:
            return (await client.get("/v1/payouts", headers=bearer(key))).status_code

        flood = [asyncio.create_task(read(noisy)) for _ in range(150)]
        calm = [asyncio.create_task(read(quiet)) for _ in range(4)]
        flood += [asyncio.create_task(read(noisy)) for _ in range(150)]
        noisy_codes = await asyncio.gather(*flood)
        quiet_codes = await asyncio.gather(*calm)
    assert quiet_codes == [200] * 4
    assert noisy_codes.count(200) == 4  # its own burst, not one more
    assert noisy_codes.count(429) == 296


async def test_sign_in_has_its_own_bucket_and_still_locks_accounts(
    limited: Callable[..., Any], db: Database
) -> None:
    async with db.transaction() as session:
        await create_admin(session, "operator", PASSWORD, "operator")
    async with limited(
        rate_limit_login_per_minute=6, rate_limit_login_burst=7, dashboard_login_max_failures=5
    ) as client:

        async def attempt(password: str) -> httpx.Response:
            form = await client.get("/dashboard/login")
            data = {"username": "operator", "password": password}
            return await client.post(
                "/dashboard/login", data={**data, "csrf_token": login_csrf(form.text)}
            )

        wrong = [await attempt("wrong") for _ in range(6)]
        # Five failures lock the account, as before: the right password is refused too.
        assert [r.status_code for r in wrong] == [401] * 6
        assert "locked" in wrong[-1].text
        assert (await attempt(PASSWORD)).status_code == 401
        refused = await attempt(PASSWORD)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "10"
        assert "Too many sign-in attempts" in refused.text
        move_clock(10)
        assert (await attempt("wrong")).status_code == 401  # one more try after 10 s
        assert (await attempt("wrong")).status_code == 429
        async with from_address(client, "198.51.100.20") as elsewhere:
            form = await elsewhere.get("/dashboard/login")
            r = await elsewhere.post(
                "/dashboard/login",
                data={"username": "x", "password": "y", "csrf_token": login_csrf(form.text)},
            )
        assert r.status_code == 401  # another address has its own bucket


async def test_turned_off_the_api_sends_no_rate_limit_headers(
    limited: Callable[..., Any], db: Database
) -> None:
    key = await make_key(db)
    async with limited(rate_limit_enabled=False) as client:
        answers = [await client.get("/v1/payouts", headers=bearer(key)) for _ in range(10)]
    assert all(r.status_code == 200 for r in answers)
    assert "RateLimit-Limit" not in answers[0].headers


async def test_health_metrics_and_provider_webhooks_are_not_limited(
    limited: Callable[..., Any],
) -> None:
    async with limited(rate_limit_ip_read_burst=1) as client:
        assert all([(await client.get("/healthz")).status_code == 200 for _ in range(5)])
        assert "RateLimit-Limit" not in (await client.get("/healthz")).headers


async def test_openapi_documents_429_and_the_fail_closed_503(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            assert "429" in operation["responses"], (method, path)
    refused = spec["paths"]["/v1/payouts"]["post"]["responses"]["429"]
    assert set(refused["headers"]) == {
        "Retry-After",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
    }
    assert "503" in spec["paths"]["/v1/payouts"]["post"]["responses"]
    assert "503" in spec["paths"]["/v1/payouts/batch"]["post"]["responses"]
    assert (
        "/healthz" in spec["paths"] and "429" not in spec["paths"]["/healthz"]["get"]["responses"]
    )
