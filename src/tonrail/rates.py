"""Exchange rates into USDT for limits; the rate and its time are recorded on each payment.

`RATE_SOURCE` picks where rates come from:

- `fixed`: the table in configuration (RATE_TON_USDT, RATE_USD_USDT); always current.
- `http`: a price API answering CoinGecko's `GET {RATE_HTTP_URL}/simple/price?ids=...&
  vs_currencies=usd` shape, `{"the-open-network": {"usd": 5.12}, "tether": {"usd": 1.0}}`.
  TON in USDT is TON's USD price over USDT's; USD in USDT is 1 over USDT's. Numbers are read as
  decimals, never floats.
- `dex`: a STON.fi v1 TON/USDT pool on chain (RATE_DEX_POOL), read with its get-method
  `get_pool_data` by the `GetMethodReader` the caller hands in: the TON rail's toncenter client
  (rails/ton/toncenter, `run_get_method` over every TON_API_URL of TON_NETWORK with its
  failover, retries and error parsing; payments/service.py wires it). rates never imports the
  rail (tests/test_layers.py: rails reads rates). Its stack,
  as STON.fi's SDKs read it: reserve0 (int), reserve1 (int), token0_wallet_address (slice),
  token1_wallet_address (slice), lp_fee, protocol_fee, ref_fee (ints), protocol_fee_address
  (slice), collected_token0_protocol_fee, collected_token1_protocol_fee (ints). Only the
  two reserves are read; RATE_DEX_TON_RESERVE says which of them is TON (0 or 1, as the
  pool orders its tokens); TON in USDT = (USDT reserve / 10^6) / (TON reserve / 10^9), the
  pool's spot price. USD is priced by the fixed table (RATE_USD_USDT): a TON/USDT pool says
  nothing of the dollar. A pool that cannot be read (no such account, a failing get-method, a
  stack of another shape, an empty reserve, toncenter down on every URL) is a failed read,
  like an HTTP error.
  A spot price is what one swap moves: a TON rate that moved more than RATE_DEX_MAX_MOVE_PCT
  from the last accepted one while that one is still fresh (younger than
  RATE_MAX_AGE_SECONDS) is refused like a failed read (the last rate is kept, then turns
  stale and holds the payouts that need it); once the last accepted rate is stale, the next
  read is accepted whatever it says (a manipulation held that long is not caught: docs/API.md).

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


GET_POOL_DATA = "get_pool_data"
TON_DECIMALS, USDT_DECIMALS = 9, 6


class SourceUnreadable(ValueError):
    """The source answered, but not with rates (a failed get-method, a stack of another shape)."""


class GetMethodAnswer(Protocol):
    """What a get-method returned (rails/ton/toncenter's GetMethodResult has this shape)."""

    @property
    def exit_code(self) -> int: ...

    @property
    def stack(self) -> list[Any]: ...  # toncenter's legacy entries: ["num", "0x.."], ...


class GetMethodReader(Protocol):
    """Runs a contract's get-method; raises when it cannot (the TON rail's toncenter client:
    `ToncenterClient.run_get_method`, handed in by the caller, since rails imports rates)."""

    async def run_get_method(
        self, address: str, method: str, stack: list[Any] | None = None
    ) -> GetMethodAnswer: ...


class DexSource:
    """A STON.fi v1 TON/USDT pool's `get_pool_data` on chain (RATE_DEX_POOL), read with
    `reader` (the TON rail's toncenter client)."""

    name = "dex"

    def __init__(self, settings: Settings, reader: GetMethodReader):
        if not settings.rate_dex_pool.strip():
            raise ValueError("RATE_SOURCE=dex needs RATE_DEX_POOL (the pool's address)")
        if settings.rate_dex_ton_reserve not in (0, 1):
            raise ValueError("RATE_DEX_TON_RESERVE must be 0 or 1")
        self.reader = reader
        self.pool = settings.rate_dex_pool.strip()
        self.ton_index = settings.rate_dex_ton_reserve
        self.usd = _positive(settings.rate_usd_usdt, "RATE_USD_USDT")

    async def fetch(self) -> dict[str, Decimal]:
        try:
            result = await self.reader.run_get_method(self.pool, GET_POOL_DATA, [])
        except Exception as exc:  # the reader's own failure (every URL down, a refusal)
            raise SourceUnreadable(f"{GET_POOL_DATA} on {self.pool}: {exc}") from exc
        if result.exit_code != 0:
            raise SourceUnreadable(f"{GET_POOL_DATA} on {self.pool} exited with {result.exit_code}")
        reserves = pool_reserves(list(result.stack))
        ton = Decimal(reserves[self.ton_index]) / 10**TON_DECIMALS
        usdt = Decimal(reserves[1 - self.ton_index]) / 10**USDT_DECIMALS
        return {"TON": usdt / ton, "USD": self.usd}


def pool_reserves(stack: list[Any]) -> tuple[int, int]:
    """reserve0 and reserve1 of a `get_pool_data` stack (toncenter v2 entries: ["num", hex]);
    SourceUnreadable unless it has the pool's ten entries and both reserves are positive."""
    if len(stack) != 10:
        raise SourceUnreadable(f"{GET_POOL_DATA} returned {len(stack)} entries, not 10")
    values = []
    for entry in stack[:2]:
        if not (isinstance(entry, list | tuple) and len(entry) == 2 and entry[0] == "num"):
            raise SourceUnreadable(f"{GET_POOL_DATA}: a reserve is not a number: {entry!r:.80}")
        value = int(str(entry[1]), 16)
        if value <= 0:
            raise SourceUnreadable(f"{GET_POOL_DATA}: an empty reserve ({value})")
        values.append(value)
    return values[0], values[1]


def rate_source(settings: Settings, get_methods: GetMethodReader | None = None) -> RateSource:
    """The source RATE_SOURCE names; `dex` reads the pool with `get_methods`."""
    if settings.rate_source == "http":
        return HttpSource(settings)
    if settings.rate_source == "dex":
        if get_methods is None:
            raise ValueError("RATE_SOURCE=dex needs a get-method reader (the toncenter client)")
        return DexSource(settings, get_methods)
    return FixedSource(settings)


class Rates:
    """The last rates read from the source, refreshed when older than RATE_REFRESH_SECONDS
    (a failed read is tried again after that long, not on every call)."""

    def __init__(
        self,
        settings: Settings,
        source: RateSource | None = None,
        get_methods: GetMethodReader | None = None,
    ):
        self.source = source or rate_source(settings, get_methods)
        self.max_age = timedelta(seconds=settings.rate_max_age_seconds)
        self.max_move = Decimal(str(settings.rate_dex_max_move_pct)) / 100
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
        jump = self._jump(table)
        if jump is not None:
            log.warning("exchange rates unavailable", source=self.source.name, error=jump)
            return False
        at = clock.now()
        for asset, value in table.items():
            self._rates[asset] = Rate(usdt_per_unit=value, at=at, source=self.source.name)
        return True

    def _jump(self, table: dict[str, Decimal]) -> str | None:
        """Why a DEX read is refused: its TON price moved more than RATE_DEX_MAX_MOVE_PCT
        from the last accepted one, which is still fresh (None: accepted)."""
        if self.source.name != "dex" or self.max_move <= 0 or "TON" not in table:
            return None
        last = self.fresh("TON")
        if last is None:
            return None
        move = abs(table["TON"] / last.usdt_per_unit - 1)
        if move <= self.max_move:
            return None
        return (
            f"the pool's TON price {table['TON']} moved {move * 100:.2f}% from the last "
            f"accepted {last.usdt_per_unit} (RATE_DEX_MAX_MOVE_PCT={self.max_move * 100}): "
            "refused as a possible manipulation"
        )


class RateStale(ValueError):
    """No fresh rate: the caller must hold, never guess."""


def fixed_rates(settings: Settings) -> Rates:
    """The fixed table whatever RATE_SOURCE says: the backup rails' prices (not limits)."""
    return Rates(settings, FixedSource(settings))
