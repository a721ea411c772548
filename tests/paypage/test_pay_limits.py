"""Rate limits of the hosted checkout page (SQLite and PostgreSQL): per client address, the
page's bucket and the tighter jetton-wallet lookup's, 429 as an HTML page or the JSON error
shape, one address never starving another, TRUSTED_PROXIES, buckets shared between two
app instances through the real local Redis; and the lookup's cache, counted at a local
server standing in for toncenter in front of the local network.

The clock stands still in the limit tests (no refill), so counts are exact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from tests.conftest import REDIS_URL
from tests.paypage.conftest import shop_settings
from tests.paypage.test_pay_page import HOT, invoice
from tests.rails.ton.conftest import serve
from tests.rails.ton.rail_fixture import Rail
from tonrail import clock
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.rails.ton.api import jetton_wallet_of
from tonrail.rails.ton.chain_view import raw
from tonrail.settings import Settings

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIMITS = {
    "rate_limit_pay_per_minute": 60.0,
    "rate_limit_pay_burst": 6,
    "rate_limit_pay_lookup_per_minute": 6.0,
    "rate_limit_pay_lookup_burst": 2,
}


@pytest.fixture
def still_clock() -> None:
    clock.set_clock(lambda: START)


@pytest.fixture
def instance(settings: Settings, db: Database) -> Callable[..., Any]:
    """`async with instance(**overrides) as app`: one API process's app with LIMITS."""

    @asynccontextmanager
    async def open_app(**overrides: Any) -> AsyncIterator[Any]:
        app = create_app(settings.model_copy(update={**LIMITS, **overrides}), db)
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


async def test_the_page_and_its_polls_share_a_bucket_then_get_429(
    still_clock: None, instance: Callable[..., Any], auth: dict[str, str]
) -> None:
    async with instance() as app, client_of(app) as c:
        inv = await invoice(c, auth, "1", "TON")  # /v1/ draws from the API's buckets
        page = await c.get(f"/pay/{inv['id']}")
        assert page.status_code == 200
        assert page.headers["RateLimit-Limit"] == "6"
        assert page.headers["RateLimit-Remaining"] == "5"
        polls = [(await c.get(f"/pay/{inv['id']}/status")).status_code for _ in range(6)]
        refused_poll = await c.get(f"/pay/{inv['id']}/status")
        refused_page = await c.get(f"/pay/{inv['id']}")
        # Static files and the manifest are never limited.
        static = await c.get("/pay/static/pay.css")
        manifest = await c.get("/pay/tonconnect-manifest.json")
    assert polls == [200] * 5 + [429]
    assert refused_poll.status_code == 429
    assert refused_poll.headers["Retry-After"] == "1"
    assert refused_poll.headers["content-type"] == "application/json"
    error = refused_poll.json()["error"]
    assert error["code"] == "rate_limited" and "checkout page" in error["message"]
    assert refused_page.status_code == 429
    assert refused_page.headers["Retry-After"] == "1"
    assert refused_page.headers["content-type"].startswith("text/html")
    assert "Too many requests" in refused_page.text and "1 seconds" in refused_page.text
    assert "default-src 'none'" in refused_page.headers["content-security-policy"]
    assert static.status_code == 200 and manifest.status_code == 200


async def test_one_address_does_not_starve_another(
    still_clock: None, instance: Callable[..., Any], auth: dict[str, str]
) -> None:
    async with instance() as app, client_of(app) as noisy, client_of(app, "198.51.100.7") as quiet:
        inv = await invoice(noisy, auth, "1", "TON")
        flood = await asyncio.gather(*(noisy.get(f"/pay/{inv['id']}/status") for _ in range(40)))
        quiet_codes = [(await quiet.get(f"/pay/{inv['id']}/status")).status_code for _ in range(6)]
    codes = sorted(r.status_code for r in flood)
    assert codes == [200] * 6 + [429] * 34
    assert quiet_codes == [200] * 6


async def test_the_lookup_bucket_is_tighter_and_apart(
    still_clock: None, instance: Callable[..., Any], auth: dict[str, str]
) -> None:
    """Lookups for a TON invoice are refused (409) without toncenter: they cost their own
    bucket, not the page's."""
    async with instance() as app, client_of(app) as c:
        inv = await invoice(c, auth, "1", "TON")
        lookups = [await c.get(f"/pay/{inv['id']}/jetton-wallet?owner={HOT}") for _ in range(3)]
        page = await c.get(f"/pay/{inv['id']}")
    assert [r.status_code for r in lookups] == [409, 409, 429]
    refused = lookups[-1]
    assert refused.headers["Retry-After"] == "10"  # 6 a minute: one token every 10 s
    assert refused.json()["error"]["code"] == "rate_limited"
    assert "wallet lookups" in refused.json()["error"]["message"]
    assert page.status_code == 200 and page.headers["RateLimit-Remaining"] == "5"


async def test_clients_behind_a_trusted_proxy_have_their_own_buckets(
    still_clock: None, instance: Callable[..., Any], auth: dict[str, str]
) -> None:
    async with instance(trusted_proxies="10.0.0.0/8") as app, client_of(app, "10.0.0.2") as proxy:
        inv = await invoice(proxy, auth, "1", "TON")
        url = f"/pay/{inv['id']}/status"

        async def poll(client_address: str) -> int:
            headers = {"X-Forwarded-For": f"{client_address}, 10.0.0.3"}
            return (await proxy.get(url, headers=headers)).status_code

        first = [await poll("203.0.113.1") for _ in range(7)]
        second = [await poll("203.0.113.2") for _ in range(6)]
    assert first == [200] * 6 + [429]
    assert second == [200] * 6


async def test_turned_off_with_a_rate_of_zero(
    still_clock: None, instance: Callable[..., Any], auth: dict[str, str]
) -> None:
    async with instance(rate_limit_pay_per_minute=0) as app, client_of(app) as c:
        inv = await invoice(c, auth, "1", "TON")
        codes = {(await c.get(f"/pay/{inv['id']}/status")).status_code for _ in range(20)}
        headers = (await c.get(f"/pay/{inv['id']}")).headers
    assert codes == {200} and "RateLimit-Limit" not in headers


async def test_two_instances_share_the_pay_buckets_through_redis(
    still_clock: None, instance: Callable[..., Any], redis_prefix: str, auth: dict[str, str]
) -> None:
    shared = {"redis_url": REDIS_URL, "rate_limit_redis_prefix": redis_prefix}
    shared["rate_limit_redis_timeout_ms"] = 10_000  # type: ignore[assignment]
    async with instance(**shared) as first, instance(**shared) as second:
        async with (
            client_of(first) as a,
            client_of(second) as b,
            client_of(second, "198.51.100.7") as other,
        ):
            inv = await invoice(a, auth, "1", "TON")
            url = f"/pay/{inv['id']}/status"
            codes = [(await client.get(url)).status_code for client in [a, b] * 4]
            lookup = f"/pay/{inv['id']}/jetton-wallet?owner={HOT}"
            lookups = [(await client.get(lookup)).status_code for client in [a, b, a]]
            others = [(await other.get(url)).status_code for _ in range(6)]
            assert not first.state.rate_limiter.store_down
    # Per process each instance would let 6 through: 8 in all. Shared: 6.
    assert codes == [200] * 6 + [429] * 2
    assert lookups == [409, 409, 429]
    assert others == [200] * 6


def counting_toncenter(upstream: str, asked: list[str]) -> FastAPI:
    """A toncenter in front of the local network that records every request's path."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request) -> Response:
        asked.append(path)
        async with httpx.AsyncClient() as client:
            r = await client.request(
                request.method,
                f"{upstream.rstrip('/')}/{path}",
                params=request.query_params,
                content=await request.body(),
                headers={"content-type": request.headers.get("content-type", "")},
            )
        return Response(r.content, r.status_code, media_type=r.headers.get("content-type"))

    return app


async def test_the_lookup_asks_toncenter_once_per_owner(
    rail: Rail, payer: Any, settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    asked: list[str] = []
    srv, task, url = await serve(counting_toncenter(rail.net.v2, asked))
    try:
        shop = shop_settings(settings, rail).model_copy(update={"ton_api_url": url})
        transport = httpx.ASGITransport(app=create_app(shop, db))
        async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
            first, second = await invoice(c, auth, "3", "USDT"), await invoice(c, auth, "4", "USDT")
            owner = payer.address.to_str()
            # Three customers' tabs at once, then a reload and another invoice of the same owner.
            lookup = f"/pay/{first['id']}/jetton-wallet"
            at_once = await asyncio.gather(*(c.get(lookup, params={"owner": owner}) for _ in "abc"))
            asked_at_once = [p for p in asked if "runGetMethod" in p]
            again = await c.get(f"/pay/{second['id']}/jetton-wallet", params={"owner": owner})
            other = await c.get(f"/pay/{second['id']}/jetton-wallet", params={"owner": HOT})
    finally:
        srv.should_exit = True
        await task
    expected = await jetton_wallet_of(
        rail.api, rail.net.genesis.usdt_master.to_str(), raw(payer.address)
    )
    assert [r.status_code for r in at_once] == [200] * 3
    assert {r.json()["jetton_wallet"] for r in at_once} == {expected}
    assert again.status_code == 200 and again.json()["jetton_wallet"] == expected
    assert len(asked_at_once) == 1
    # The reload cost nothing; a new owner is asked once.
    assert other.status_code == 200 and other.json()["jetton_wallet"] != expected
    assert len([p for p in asked if "runGetMethod" in p]) == 2
