"""Rate sources (RATE_SOURCE): the fixed table, and an HTTP price API served locally in the
CoinGecko `simple/price` shape; cached, stale after RATE_MAX_AGE_SECONDS, never guessed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from pydantic import SecretStr

from tests.rails.ton.conftest import serve
from tonrail import clock
from tonrail.rates import HttpSource, Rates, RateStale
from tonrail.settings import Settings

PRICES = '{"the-open-network": {"usd": 5.125}, "tether": {"usd": 1.025}}'


@dataclass
class PriceServer:
    """A local price API: answers `body` with `status` and records the queries it got."""

    url: str = ""
    status: int = 200
    body: str = PRICES
    queries: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/api/v3/simple/price")
        async def price(request: Request) -> Response:
            self.queries.append(
                {**request.query_params, **{"key": request.headers.get("x-cg-pro-api-key")}}
            )
            return Response(self.body, status_code=self.status, media_type="application/json")

        return app


@pytest.fixture
async def prices() -> AsyncIterator[PriceServer]:
    server = PriceServer()
    srv, task, base = await serve(server.app())
    server.url = f"{base}/api/v3"
    try:
        yield server
    finally:
        srv.should_exit = True
        await task


def http_settings(settings: Settings, prices: PriceServer, **more: Any) -> Settings:
    return settings.model_copy(update={"rate_source": "http", "rate_http_url": prices.url, **more})


def shift_clock(seconds: float) -> None:
    clock.set_clock(lambda: datetime.now(UTC) + timedelta(seconds=seconds))


def test_the_fixed_table_is_always_fresh(settings: Settings) -> None:
    rates = Rates(settings.model_copy(update={"rate_ton_usdt": "4.20"}))
    shift_clock(10**6)
    rate = rates.rate("TON")
    assert rate.usdt_per_unit == Decimal("4.20") and rate.source == "static"
    assert rates.rate("USDT").usdt_per_unit == 1
    with pytest.raises(ValueError, match="RATE_TON_USDT"):
        Rates(settings.model_copy(update={"rate_ton_usdt": "-1"}))


async def test_http_prices_are_read_as_decimals_and_cross_rated(
    settings: Settings, prices: PriceServer
) -> None:
    rates = Rates(http_settings(settings, prices, rate_http_api_key=SecretStr("k-123")))
    assert rates.fresh("TON") is None  # nothing read yet: no rate, no guess
    await rates.ensure()
    ton = rates.rate("TON")
    assert ton.usdt_per_unit == Decimal("5.125") / Decimal("1.025") == Decimal(5)
    assert ton.source == "http"
    assert rates.rate("USD").usdt_per_unit == 1 / Decimal("1.025")
    assert ton.usdt_equivalent(2_000_000_000, "TON") == 10_000_000  # 2 TON = 10 USDT
    [query] = prices.queries
    assert query == {"ids": "the-open-network,tether", "vs_currencies": "usd", "key": "k-123"}
    await rates.ensure()  # within RATE_REFRESH_SECONDS: not read again
    assert len(prices.queries) == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, "{}"),
        (200, "not json"),
        (200, "[]"),
        (200, '{"tether": {"usd": 1}}'),
        (200, '{"the-open-network": {"usd": 0}, "tether": {"usd": 1}}'),
        (200, '{"the-open-network": {"usd": "NaN"}, "tether": {"usd": 1}}'),
        (200, '{"the-open-network": {"eur": 5}, "tether": {"usd": 1}}'),
    ],
)
async def test_a_bad_answer_keeps_the_last_rate_until_it_is_stale(
    settings: Settings, prices: PriceServer, status: int, body: str
) -> None:
    rates = Rates(http_settings(settings, prices, rate_refresh_seconds=0, rate_max_age_seconds=60))
    assert await rates.refresh()
    first = rates.rate("TON")
    prices.status, prices.body = status, body
    assert not await rates.refresh()
    assert rates.rate("TON") == first  # still fresh: the last good one
    shift_clock(61)
    assert rates.fresh("TON") is None
    with pytest.raises(RateStale):
        rates.rate("TON")
    prices.status, prices.body = 200, PRICES
    await rates.ensure()
    assert rates.rate("TON").at > first.at


async def test_an_unreachable_source_gives_no_rate(settings: Settings) -> None:
    from tests.rails.ton.conftest import free_port

    source = HttpSource(
        settings.model_copy(
            update={"rate_http_url": f"http://127.0.0.1:{free_port()}", "rate_source": "http"}
        )
    )
    rates = Rates(settings, source)
    assert not await rates.refresh()
    assert rates.fresh("TON") is None
    assert rates.fresh("USDT") is not None  # 1 by definition
