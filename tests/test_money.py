"""Money: exact parsing of decimal strings, formatting, conversion with explicit rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tonrail.errors import InvalidAmount, UnknownAsset
from tonrail.money import ASSET_DECIMALS, Money, convert, format_minor, parse_minor

assets = st.sampled_from(sorted(ASSET_DECIMALS))


@given(asset=assets, amount=st.integers(0, 10**24))
def test_format_then_parse_round_trips(asset: str, amount: int) -> None:
    assert parse_minor(format_minor(amount, asset), asset) == amount


@given(asset=assets, whole=st.integers(0, 10**12), frac=st.integers(0, 10**9 - 1))
def test_parse_matches_decimal_arithmetic(asset: str, whole: int, frac: int) -> None:
    decimals = ASSET_DECIMALS[asset]
    frac %= 10**decimals
    text = f"{whole}.{frac:0{decimals}d}" if decimals else str(whole)
    assert parse_minor(text, asset) == whole * 10**decimals + frac


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "-1",
        "+1",
        "1.",
        ".5",
        "01",
        "1e3",
        "1E3",
        "NaN",
        "inf",
        "1_000",
        "1,5",
        "0x10",
        "\u0661",
        "1.2.3",
        "9" * 41,
    ],
)
def test_malformed_strings(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_minor(text, "USDT")


@pytest.mark.parametrize("value", [1.5, 1, True, None, [1], {"a": 1}])
def test_non_strings(value: object) -> None:
    with pytest.raises(InvalidAmount):
        parse_minor(value, "USDT")


def test_too_many_decimals_exact_and_rounded() -> None:
    with pytest.raises(InvalidAmount) as err:
        parse_minor("1.0000005", "USDT")
    assert "6 decimals" in err.value.message
    assert parse_minor("1.0000005", "USDT", "half_even") == 1_000_000
    assert parse_minor("1.0000015", "USDT", "half_even") == 1_000_002
    assert parse_minor("1.0000001", "USDT", "ceiling") == 1_000_001
    assert parse_minor("1.0000009", "USDT", "down") == 1_000_000


def test_unknown_asset() -> None:
    with pytest.raises(UnknownAsset):
        parse_minor("1", "BTC")
    with pytest.raises(UnknownAsset):
        Money(1, "BTC")


def test_money_arithmetic_keeps_assets_apart() -> None:
    assert Money(5, "TON") + Money(7, "TON") == Money(12, "TON")
    with pytest.raises(ValueError):
        Money(5, "TON") + Money(7, "USDT")
    assert Money.parse("0.000000001", "TON").amount == 1
    assert Money(1_500_000, "USDT").to_decimal_string() == "1.500000"
    assert format_minor(-5, "USD") == "-0.05"
    with pytest.raises(InvalidAmount):
        Money(1.5, "TON")  # type: ignore[arg-type]


@given(amount=st.integers(0, 10**20), rate=st.decimals("0.0001", "100000", places=4))
def test_conversion_ceiling_never_undercounts(amount: int, rate: Decimal) -> None:
    up = convert(amount, "TON", "USDT", rate, "ceiling")
    down = convert(amount, "TON", "USDT", rate, "down")
    exact = Decimal(amount) / 10**9 * rate * 10**6
    assert down <= exact <= up and up - down <= 1


def test_conversion_requires_rounding() -> None:
    with pytest.raises(ValueError):
        convert(1, "TON", "USDT", Decimal(5), "exact")
