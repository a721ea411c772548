"""TON address validation: raw (`0:hex`) and user-friendly forms, checksum included."""

from __future__ import annotations

from pytoniq_core.boc.address import Address

from tonrail.errors import InvalidAddress


def parse_address(text: object, param: str = "destination") -> Address:
    """Parse a TON address or raise InvalidAddress (bad form, bad checksum, odd workchain)."""
    if not isinstance(text, str) or not text or len(text) > 80:
        raise InvalidAddress("a TON address is required", param=param)
    try:
        address = Address(text.strip())
    except Exception:  # pytoniq raises several types for malformed input
        raise InvalidAddress(f"{text[:80]!r} is not a valid TON address", param=param) from None
    if address.wc not in (0, -1):
        raise InvalidAddress("only workchains 0 and -1 are supported", param=param)
    return address


def raw_form(address: Address) -> str:
    """Canonical raw form `wc:hex`, the one we store and compare."""
    return str(address.to_str(is_user_friendly=False))  # type: ignore[no-untyped-call]
