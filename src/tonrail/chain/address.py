"""TON address validation: raw (`0:hex`) and user-friendly forms, checksum included.

Also the network rule (testnet flag) and the bounce rule for payouts (docs/TON-RAIL.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytoniq_core.boc.address import Address

from tonrail.errors import InvalidAddress

if TYPE_CHECKING:
    from tonrail.chain.network import TonNetwork


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


def counterparty_key(text: str) -> str:
    """One key per counterparty: TON addresses in raw form (any spelling), others as given."""
    try:
        return raw_form(parse_address(text.strip(), "counterparty"))
    except Exception:
        return text.strip()


class AddressWrongNetwork(InvalidAddress):
    """A user-friendly address whose testnet flag does not match the configured network."""

    code = "address_wrong_network"


def is_user_friendly(text: str) -> bool:
    """User-friendly (base64, carries the bounceable and testnet flags) rather than raw `wc:hex`."""
    return ":" not in text


def check_network(address_text: str, network: TonNetwork, param: str = "destination") -> Address:
    """Parse an address and refuse it if its testnet flag does not fit `network`.

    Mainnet refuses testnet-only addresses (`0Q..`/`kQ..`), testnet refuses mainnet ones
    (`UQ..`/`EQ..`); raw addresses carry no flag and fit every network; the local network
    accepts both flags.
    """
    address = parse_address(address_text, param)
    flag = network.testnet_flag
    if flag is not None and is_user_friendly(address_text.strip()):
        if bool(address.is_test_only) != flag:
            wanted = "a testnet" if flag else "a mainnet"
            raise AddressWrongNetwork(
                f"{param} is not {wanted} address; this service runs on {network.name}",
                param=param,
            )
    return address


def payout_bounce(
    destination_text: str, asset: str, *, destination_uninitialized: bool = False
) -> bool:
    """The bounce flag of the message that pays `destination_text` in `asset`.

    - Jetton (USDT) payouts: always True. The message goes to our own jetton wallet, an
      active contract; a failure there must bring the TON back (TON-NOTES: bounce = true).
    - TON to a user-friendly address: the address's own bounceable flag. A non-bounceable
      form (`UQ..`/`0Q..`) is how a wallet says "I may not be deployed yet": sending it
      bounceable would return the money from an uninitialized wallet.
    - TON to a raw address (no flag): bounceable, so a mistyped or dead contract returns the
      money, unless the destination is known uninitialized (then it could never accept it).
    """
    if asset != "TON":
        return True
    text = destination_text.strip()
    address = parse_address(text)
    if is_user_friendly(text):
        return bool(address.is_bounceable)
    return not destination_uninitialized
