"""Fees, limits and currency conversion of the backup rails: pure, exact integer arithmetic.

Rounding rule (docs/BACKUP-RAILS.md): the percentage part of a fee is rounded half up to
the rail currency's minor unit, as card processors do, then the fixed part is added. A
conversion into the rail currency rounds up for money we collect (`in`) and half-even for
money we send (`out`), so an invoice is never under-collected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from tonrail import clock
from tonrail.money import convert
from tonrail.rates import Rate

BPS = 10_000


# Plain frozen dataclasses, a few typed fields each: alike others in shape only.
@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """A rail's price list in minor units of its currency: `bps` basis points plus `fixed`."""

    bps: int
    fixed: int
    max_amount: int
    international_bps: int = 0

    def __post_init__(self) -> None:
        if min(self.bps, self.fixed, self.max_amount, self.international_bps) < 0:
            raise ValueError("fee schedule values must be non-negative")


def percentage_fee(amount: int, bps: int) -> int:
    """`amount * bps / 10000`, rounded half up to the minor unit (amount, bps >= 0)."""
    if amount < 0 or bps < 0:
        raise ValueError("amount and bps must be non-negative")
    return (amount * bps + BPS // 2) // BPS


def fee_for(schedule: FeeSchedule, amount: int, international: bool = False) -> int:
    """The exact fee of moving `amount` on a rail with `schedule`."""
    bps = schedule.bps + (schedule.international_bps if international else 0)
    return percentage_fee(amount, bps) + schedule.fixed


def within_max(schedule: FeeSchedule, amount: int) -> bool:
    return 0 < amount <= schedule.max_amount


class RateFeed(Protocol):
    """Any source of rates: `tonrail.rates.Rates` or a live feed with the same shape."""

    def rate(self, asset: str) -> Rate: ...


@dataclass(frozen=True, slots=True)
class Conversion:
    """An amount converted into a rail's currency, with the rates used (stored on attempts)."""

    amount: int
    asset: str
    from_amount: int
    from_asset: str
    rate: str  # units of `asset` per one whole `from_asset`
    rate_source: str
    rate_at: datetime

    def as_details(self) -> dict[str, str | int]:
        return {
            "rail_amount": self.amount,
            "rail_asset": self.asset,
            "rate": self.rate,
            "rate_source": self.rate_source,
            "rate_at": self.rate_at.isoformat(),
        }


def cross_rate(source: Rate, target: Rate) -> Decimal:
    """Whole `target` units per whole `source` unit, from two USDT rates."""
    return source.usdt_per_unit / target.usdt_per_unit


def convert_for_rail(
    rates: RateFeed, amount: int, asset: str, rail_asset: str, direction: Literal["in", "out"]
) -> Conversion:
    """Convert a payment amount into the rail's currency (identity when they match)."""
    src = rates.rate(asset)
    if asset == rail_asset:
        return Conversion(amount, asset, amount, asset, "1", src.source, src.at)
    rate = cross_rate(src, rates.rate(rail_asset))
    converted = convert(
        amount, asset, rail_asset, rate, rounding="ceiling" if direction == "in" else "half_even"
    )
    return Conversion(converted, rail_asset, amount, asset, str(rate), src.source, src.at)


class RailRates:
    """Static rates from configuration, TON/USDT/USD from `fixed_rates` plus EUR for rails."""

    def __init__(self, static: RateFeed, eur_usdt: str):
        self._static = static
        value = Decimal(eur_usdt)
        if not value.is_finite() or value <= 0:
            raise ValueError("RATE_EUR_USDT must be a positive decimal")
        self._eur = value

    def rate(self, asset: str) -> Rate:
        if asset == "EUR":
            return Rate(usdt_per_unit=self._eur, at=clock.now(), source="static")
        return self._static.rate(asset)
