"""Deep links for USDT invoices carry the jetton master and the amount in jetton units."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from tonrail.chain.links import transfer_link

MASTER = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"


def test_usdt_link() -> None:
    link = transfer_link("EQabc", "USDT", 12_500_000, "TR-ABC", MASTER)
    assert link is not None
    q = parse_qs(urlparse(link).query)
    assert q == {"jetton": [MASTER], "amount": ["12500000"], "text": ["TR-ABC"]}


def test_comment_is_escaped() -> None:
    link = transfer_link("EQabc", "TON", 1, "a b&c=d", None)
    assert link is not None and "a%20b%26c%3Dd" in link


def test_no_link_without_master_or_for_fiat() -> None:
    assert transfer_link("EQabc", "USDT", 1, "x", None) is None
    assert transfer_link("EQabc", "USD", 1, "x", MASTER) is None
