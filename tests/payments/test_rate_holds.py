"""A TON payout created without a fresh rate is held (`rate_stale`, alert `rate_stale`), never
valued with a guess; the `rate_holds` loop values it once a fresh rate arrives: limits,
approval and the day's volume as for any payout. Both databases, a local price API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.helpers import row_counts
from tests.test_rates import PRICES, PriceServer, http_settings, prices, shift_clock  # noqa: F401
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.ledger.service import check_books
from tonrail.limits.models import DailyVolume
from tonrail.monitoring.jobs import evaluate_once
from tonrail.monitoring.models import Alert
from tonrail.payments.service import PaymentService
from tonrail.processing.rate_holds import release_rate_holds
from tonrail.settings import Settings

PAYEE = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"


@pytest.fixture
def live(settings: Settings, prices: PriceServer) -> Settings:  # noqa: F811
    return http_settings(
        settings,
        prices,
        rate_refresh_seconds=0,
        rate_max_age_seconds=60,
        approval_threshold_usdt=1_000 * 10**6,
        daily_volume_limit_usdt=2_000 * 10**6,
    )


@pytest.fixture
async def api(live: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(live, db))
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
        yield c


async def pay(api: httpx.AsyncClient, auth: dict[str, str], amount: str, asset: str = "TON") -> Any:
    r = await api.post(
        "/v1/payouts", json={"amount": amount, "asset": asset, "destination": PAYEE}, headers=auth
    )
    assert r.status_code == 201, r.text
    return r.json()


async def get(api: httpx.AsyncClient, auth: dict[str, str], pid: str) -> Any:
    return (await api.get(f"/v1/payouts/{pid}", headers=auth)).json()


def usdt_of(payout: Any) -> Decimal:
    return Decimal(payout["usdt_equivalent"])


async def used_today(db: Database) -> int:
    async with db.transaction() as session:
        return int(sum((await session.execute(select(DailyVolume.used_usdt))).scalars()))


async def alert(db: Database, live: Settings) -> str | None:
    await evaluate_once(db, live, {})
    async with db.transaction() as session:
        stmt = select(Alert.status).where(Alert.dedup_key == "rate_stale")
        return (await session.execute(stmt)).scalar_one_or_none()


async def test_held_while_the_source_is_down_released_when_a_fresh_rate_arrives(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    live: Settings,
    prices: PriceServer,  # noqa: F811
) -> None:
    prices.status = 503
    small = await pay(api, auth, "10")  # 50 USDT at 5
    big = await pay(api, auth, "300")  # 1,500 USDT: above the approval threshold
    usdt = await pay(api, auth, "7", "USDT")  # needs no rate
    for p in (small, big):
        assert (p["status"], p["hold_reason"], usdt_of(p)) == ("queued", "rate_stale", 0)
    assert (usdt["status"], usdt["hold_reason"]) == ("queued", None)
    assert await used_today(db) == 7 * 10**6  # held payouts are not counted yet
    assert await alert(db, live) == "open"

    worker = PaymentService(db, live)  # the worker's own rates
    assert await release_rate_holds(db, worker) == 0  # still down: still held, no guess
    assert (await get(api, auth, small["id"]))["hold_reason"] == "rate_stale"

    prices.status = 200
    assert await release_rate_holds(db, worker) == 2
    small, big = await get(api, auth, small["id"]), await get(api, auth, big["id"])
    assert (small["status"], small["hold_reason"], usdt_of(small)) == ("queued", None, 50)
    assert (big["status"], big["hold_reason"], usdt_of(big)) == ("requires_approval", None, 1500)
    assert await used_today(db) == (7 + 50 + 1500) * 10**6
    assert await alert(db, live) == "resolved"
    async with db.transaction() as session:
        assert (await check_books(session)).ok


async def test_a_stale_rate_is_never_used_and_the_daily_limit_holds(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    live: Settings,
    prices: PriceServer,  # noqa: F811
) -> None:
    first = await pay(api, auth, "20")  # fresh rate read: valued at once (100 USDT)
    assert (first["hold_reason"], usdt_of(first)) == (None, 100)
    prices.status = 503
    shift_clock(61)  # the last good rate is now older than RATE_MAX_AGE_SECONDS
    held = await pay(api, auth, "390")  # 1,950 USDT: over the day's 2,000 with the first
    assert held["hold_reason"] == "rate_stale"
    prices.status = 200
    assert await release_rate_holds(db, PaymentService(db, live)) == 1
    held = await get(api, auth, held["id"])
    assert (held["status"], held["failure_code"]) == ("failed", "daily_limit_exceeded")
    assert await used_today(db) == 100 * 10**6
    async with db.transaction() as session:
        assert (await check_books(session)).ok


async def test_a_held_payout_can_be_canceled_and_is_never_released(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    live: Settings,
    prices: PriceServer,  # noqa: F811
) -> None:
    prices.status = 503
    held = await pay(api, auth, "1")
    r = await api.post(f"/v1/payouts/{held['id']}/cancel", headers=auth)
    assert r.status_code == 200, r.text
    prices.status = 200
    assert await release_rate_holds(db, PaymentService(db, live)) == 0
    assert (await get(api, auth, held["id"]))["status"] == "canceled"
    assert await used_today(db) == 0


async def test_an_invoice_without_a_fresh_rate_is_refused_with_a_code(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    prices: PriceServer,  # noqa: F811
) -> None:
    """An invoice is valued when it is made (its USDT equivalent); with the price source
    down there is nothing to value a TON invoice with: 503 `rate_stale`, nothing written,
    never a 500. A USDT invoice needs no rate."""
    prices.status = 503
    before = await row_counts(db)
    r = await api.post("/v1/invoices", json={"amount": "3", "asset": "TON"}, headers=auth)
    assert r.status_code == 503, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["param"]) == ("rate_stale", "asset")
    assert await row_counts(db) == before
    r = await api.post("/v1/invoices", json={"amount": "3", "asset": "USDT"}, headers=auth)
    assert r.status_code == 201, r.text
    prices.status = 200
    r = await api.post("/v1/invoices", json={"amount": "3", "asset": "TON"}, headers=auth)
    assert r.status_code == 201, r.text
