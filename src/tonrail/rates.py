"""Exchange rates into USDT for limits; the rate and its time are recorded on each payment.

`RATE_SOURCE` picks where rates come from:

- `fixed`: the table in configuration (RATE_TON_USDT, RATE_USD_USDT); always current.
- `http`: a price API answering CoinGecko's `GET {RATE_HTTP_URL}/simple/price?ids=...&
  vs_currencies=usd` shape, `{"the-open-network": {"usd": 5.12}, "tether": {"usd": 1.0}}`.
  TON in USDT is TON's USD price over USDT's; USD in USDT is 1 over USDT's. Numbers are read as
  decimals, never floats.

`Rates` keeps the last rates read, with their time. A rate older than RATE_MAX_AGE_SECONDS is
stale and is not used: `fresh` answers None and the caller holds what needs it (a payout is
held with `hold_reason = rate_stale`) instead of guessing. USDT is 1 by definition.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import httpx
import structlog

from tonrail import clock
from tonrail.money import convert
from tonrail.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Rate:
    """Whole USDT per one whole unit of an asset, as read at `at` from `source`."""

    usdt_per_unit: Decimal
    at: datetime
    source: str

    def usdt_equivalent(self, amount: int, asset: str) -> int:
        # Round up: a limit must never under-count what a payout is worth.
        return convert(amount, asset, "USDT", self.usdt_per_unit, rounding="ceiling")


def _positive(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError(f"{what}={value!r} is not a decimal") from None
    if not number.is_finite() or number <= 0:
        raise ValueError(f"{what} must be positive")
    return number


# What every source prices (USDT by definition): payments in another asset have no value.
PRICED_ASSETS = frozenset({"USDT", "TON", "USD"})


class RateSource(Protocol):
    name: str

    async def fetch(self) -> dict[str, Decimal]:
        """USDT per whole unit of each asset the source knows; raises when it cannot read."""
        ...


class FixedSource:
    """The table in configuration (RATE_TON_USDT, RATE_USD_USDT)."""

    name = "fixed"

    def __init__(self, settings: Settings):
        self.table = {
            "TON": _positive(settings.rate_ton_usdt, "RATE_TON_USDT"),
            "USD": _positive(settings.rate_usd_usdt, "RATE_USD_USDT"),
        }

    async def fetch(self) -> dict[str, Decimal]:
        return dict(self.table)


class HttpSource:
    """A CoinGecko-style `simple/price` endpoint at RATE_HTTP_URL (any base URL)."""

    name = "http"

    def __init__(self, settings: Settings):
        self.url = settings.rate_http_url.rstrip("/") + "/simple/price"
        self.ids = {"TON": settings.rate_http_ton_id, "USDT": settings.rate_http_usdt_id}
        self.timeout = settings.rate_http_timeout_seconds
        self.headers = (
            {"x-cg-pro-api-key": settings.rate_http_api_key.get_secret_value()}
            if settings.rate_http_api_key.get_secret_value()
            else {}
        )

    async def fetch(self) -> dict[str, Decimal]:
        params = {"ids": ",".join(self.ids.values()), "vs_currencies": "usd"}
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            r = await client.get(self.url, params=params, headers=self.headers)
        r.raise_for_status()
        prices = json.loads(r.text, parse_float=Decimal, parse_int=Decimal)
        if not isinstance(prices, dict):
            raise ValueError("the price answer is not a JSON object")

        def usd(asset: str) -> Decimal:
            entry = prices.get(self.ids[asset])
            if not isinstance(entry, dict) or "usd" not in entry:
                raise ValueError(f"the price answer has no usd price of {self.ids[asset]}")
            return _positive(entry["usd"], f"{self.ids[asset]}.usd")

        usdt_usd = usd("USDT")
        return {"TON": usd("TON") / usdt_usd, "USD": 1 / usdt_usd}


def rate_source(settings: Settings) -> RateSource:
    if settings.rate_source == "http":
        return HttpSource(settings)
    return FixedSource(settings)


class Rates:
    """The last rates read from the source, refreshed when older than RATE_REFRESH_SECONDS
    (a failed read is tried again after that long, not on every call)."""

    def __init__(self, settings: Settings, source: RateSource | None = None):
        self.source = source or rate_source(settings)
        self.max_age = timedelta(seconds=settings.rate_max_age_seconds)
        self.refresh_every = float(settings.rate_refresh_seconds)
        self._rates: dict[str, Rate] = {}
        self._tried_at: float | None = None  # monotonic time of the last read
        self._reading = asyncio.Lock()

    @property
    def always_fresh(self) -> bool:
        return isinstance(self.source, FixedSource)

    def fresh(self, asset: str) -> Rate | None:
        """The asset's rate if it is not stale; None otherwise. ValueError for an asset no
        source prices."""
        if asset == "USDT":
            return Rate(usdt_per_unit=Decimal(1), at=clock.now(), source="definition")
        if isinstance(self.source, FixedSource):
            value = self.source.table.get(asset)
            if value is None:
                raise ValueError(f"no rate configured for {asset}")
            return Rate(usdt_per_unit=value, at=clock.now(), source="static")
        rate = self._rates.get(asset)
        if rate is None or clock.now() - rate.at > self.max_age:
            return None
        return rate

    def has(self, asset: str) -> bool:
        """Every source prices `asset` (payments in it can be valued for limits)."""
        return asset in PRICED_ASSETS

    def rate(self, asset: str) -> Rate:
        """`fresh`, for callers that cannot hold: a stale rate raises RateStale."""
        rate = self.fresh(asset)
        if rate is None:
            raise RateStale(f"no fresh rate of {asset} (RATE_SOURCE={self.source.name})")
        return rate

    async def ensure(self) -> None:
        """Read the source if the rates are due for a refresh; failures are logged, the
        rates kept (they turn stale by themselves)."""
        if self.always_fresh:
            return
        due = self._tried_at is None or time.monotonic() - self._tried_at >= self.refresh_every
        if not due:
            return
        async with self._reading:
            if (
                self._tried_at is not None
                and time.monotonic() - self._tried_at < self.refresh_every
            ):
                return  # another task read them meanwhile
            await self.refresh()

    async def refresh(self) -> bool:
        """Read the source now; True when it answered."""
        self._tried_at = time.monotonic()
        try:
            table = await self.source.fetch()
        except (httpx.HTTPError, ValueError, ArithmeticError) as exc:
            log.warning("exchange rates unavailable", source=self.source.name, error=str(exc))
            return False
        at = clock.now()
        for asset, value in table.items():
            self._rates[asset] = Rate(usdt_per_unit=value, at=at, source=self.source.name)
        return True


class RateStale(ValueError):
    """No fresh rate: the caller must hold, never guess."""


def fixed_rates(settings: Settings) -> Rates:
    """The fixed table whatever RATE_SOURCE says: the backup rails' prices (not limits)."""
    return Rates(settings, FixedSource(settings))
