"""Money as integers in minor units with an explicit asset; exact decimal parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext
from typing import Literal

from tonrail.errors import InvalidAmount, UnknownAsset

ASSET_DECIMALS: dict[str, int] = {"TON": 9, "USDT": 6, "USD": 2, "EUR": 2}

Rounding = Literal["exact", "down", "half_even", "ceiling"]
_ROUNDING = {"down": ROUND_DOWN, "half_even": ROUND_HALF_EVEN, "ceiling": ROUND_CEILING}
DECIMAL_PATTERN = r"^(0|[1-9][0-9]*)(\.[0-9]+)?$"  # an amount as the API takes it
_DECIMAL_RE = re.compile(DECIMAL_PATTERN)
MAX_DIGITS = 40


def decimals_of(asset: str) -> int:
    """Number of decimals of an asset; raises UnknownAsset for anything not configured."""
    try:
        return ASSET_DECIMALS[asset]
    except (KeyError, TypeError):
        raise UnknownAsset(f"unknown asset {asset!r}", param="asset") from None


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units (nanoton, micro-USDT, cents) of one asset."""

    amount: int
    asset: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise InvalidAmount("amount must be an integer number of minor units")
        decimals_of(self.asset)

    @classmethod
    def parse(cls, text: object, asset: str, rounding: Rounding = "exact") -> Money:
        """Parse a decimal string in major units ("12.5") into minor units.

        `exact` (the API default) refuses digits beyond the asset's precision instead of
        rounding them away; the other modes round as named.
        """
        return cls(parse_minor(text, asset, rounding), asset)

    def to_decimal_string(self) -> str:
        return format_minor(self.amount, self.asset)

    def __add__(self, other: Money) -> Money:
        self._same_asset(other)
        return Money(self.amount + other.amount, self.asset)

    def __sub__(self, other: Money) -> Money:
        self._same_asset(other)
        return Money(self.amount - other.amount, self.asset)

    def _same_asset(self, other: Money) -> None:
        if other.asset != self.asset:
            raise ValueError(f"cannot combine {self.asset} with {other.asset}")


def parse_minor(
    text: object, asset: str, rounding: Rounding = "exact", param: str = "amount"
) -> int:
    """Decimal string in major units -> integer minor units of `asset`."""
    decimals = decimals_of(asset)
    if isinstance(text, bool) or isinstance(text, int | float):
        raise InvalidAmount(
            'amount must be a decimal string such as "12.50", not a JSON number', param=param
        )
    if not isinstance(text, str):
        raise InvalidAmount("amount must be a decimal string", param=param)
    if len(text) > MAX_DIGITS or not _DECIMAL_RE.match(text):
        raise InvalidAmount(
            f"amount {text[:50]!r} is not a non-negative decimal number like 12.50", param=param
        )
    value = Decimal(text)
    fraction = text.partition(".")[2]
    if len(fraction) > decimals:
        if rounding == "exact":
            raise InvalidAmount(
                f"{asset} has {decimals} decimals; {text!r} has {len(fraction)}", param=param
            )
        with localcontext() as ctx:
            ctx.prec = 80
            value = value.quantize(Decimal(1).scaleb(-decimals), rounding=_ROUNDING[rounding])
    with localcontext() as ctx:
        ctx.prec = 80
        return int(value.scaleb(decimals))


def format_minor(amount: int, asset: str) -> str:
    """Integer minor units -> canonical decimal string with all the asset's decimals."""
    decimals = decimals_of(asset)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}" if decimals else f"{sign}{whole}"


def convert(amount: int, from_asset: str, to_asset: str, rate: Decimal, rounding: Rounding) -> int:
    """Convert minor units with `rate` = units of to_asset per one whole from_asset."""
    if rounding == "exact":
        raise ValueError("conversion needs an explicit rounding mode")
    with localcontext() as ctx:
        ctx.prec = 80
        major = Decimal(amount).scaleb(-decimals_of(from_asset)) * rate
        minor = major.scaleb(decimals_of(to_asset))
        return int(minor.quantize(Decimal(1), rounding=_ROUNDING[rounding]))
