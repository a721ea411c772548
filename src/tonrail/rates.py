"""Exchange rates into USDT for limits; the rate and its time are recorded on each payment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from tonrail import clock
from tonrail.money import convert
from tonrail.settings import Settings


@dataclass(frozen=True, slots=True)
class Rate:
    """Whole USDT per one whole unit of an asset, as read at `at` from `source`."""

    usdt_per_unit: Decimal
    at: datetime
    source: str

    def usdt_equivalent(self, amount: int, asset: str) -> int:
        # Round up: a limit must never under-count what a payout is worth.
        return convert(amount, asset, "USDT", self.usdt_per_unit, rounding="ceiling")


class StaticRates:
    """Rates from configuration (RATE_TON_USDT, RATE_USD_USDT); USDT is 1 by definition."""

    def __init__(self, settings: Settings):
        self._rates: dict[str, Decimal] = {"USDT": Decimal(1)}
        for asset, text in (("TON", settings.rate_ton_usdt), ("USD", settings.rate_usd_usdt)):
            try:
                value = Decimal(text)
            except InvalidOperation:
                raise ValueError(f"RATE_{asset}_USDT={text!r} is not a decimal") from None
            if not value.is_finite() or value <= 0:
                raise ValueError(f"RATE_{asset}_USDT must be positive")
            self._rates[asset] = value

    def rate(self, asset: str) -> Rate:
        value = self._rates.get(asset)
        if value is None:
            raise ValueError(f"no rate configured for {asset}")
        return Rate(usdt_per_unit=value, at=clock.now(), source="static")
