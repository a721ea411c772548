"""TON address validation: raw (`0:hex`) and user-friendly forms, checksum included.

Also the network rule (testnet flag), the workchains payees may live on, and the bounce rule
for payouts (docs/TON-RAIL.md, "Address rules").

Parsing is strict, one spelling per form (pytoniq's own parser takes `+0:`, `00:`, hashes of
31 or 33 bytes, any tag byte and base64 with stray characters, so it only builds the result):
- raw: `<workchain>:<64 hex digits>`, the workchain spelled `0` or `-1` exactly;
- user-friendly: 48 characters of one base64 alphabet (url-safe `-_` or standard `+/`),
  36 bytes: tag (0x11 bounceable or 0x51 non-bounceable, plus 0x80 for testnet-only), the
  workchain byte (0x00 or 0xff), the 32-byte hash and its CRC16-XMODEM checksum.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache
from typing import TYPE_CHECKING

from pytoniq_core.boc.address import Address
from pytoniq_core.crypto.crc import crc16

from tonrail.errors import InvalidAddress

if TYPE_CHECKING:
    from tonrail.chain.network import TonNetwork

# Every workchain an address can name today: the basechain and the masterchain.
WORKCHAINS: tuple[int, ...] = (0, -1)
BASECHAIN = 0


def asset_workchain_refusal(workchain: int, asset: str) -> str | None:
    """Why `asset` cannot be paid to an address on `workchain`, or None. Jetton wallets take
    owners on the basechain only (TEP-74 wallets `force_chain`): any other workchain bounces
    and the fees are spent; TON goes to every workchain the service pays."""
    if asset != "TON" and workchain != BASECHAIN:
        return f"{asset} is paid to basechain (workchain 0) addresses only"
    return None


_RAW = re.compile(r"(0|-1):([0-9a-fA-F]{64})")
_FRIENDLY = re.compile(r"[A-Za-z0-9_-]{48}|[A-Za-z0-9+/]{48}")
_TAG_BOUNCEABLE, _TAG_NON_BOUNCEABLE, _TAG_TESTNET = 0x11, 0x51, 0x80
_WORKCHAIN_BYTE = {0x00: 0, 0xFF: -1}


def _parse_friendly(text: str) -> Address | None:
    """The address a user-friendly spelling names, or None if any byte of it is wrong."""
    if not _FRIENDLY.fullmatch(text):
        return None
    try:
        data = base64.b64decode(text, altchars=b"-_" if "-" in text or "_" in text else None)
    except (binascii.Error, ValueError):
        return None
    tag, wc = data[0] & ~_TAG_TESTNET, _WORKCHAIN_BYTE.get(data[1])
    if len(data) != 36 or tag not in (_TAG_BOUNCEABLE, _TAG_NON_BOUNCEABLE) or wc is None:
        return None
    if crc16(data[:34]) != data[34:]:
        return None
    address = Address((wc, data[2:34]))
    address.is_bounceable = tag == _TAG_BOUNCEABLE
    address.is_test_only = bool(data[0] & _TAG_TESTNET)
    return address


def parse_address(
    text: object, param: str = "destination", workchains: tuple[int, ...] = WORKCHAINS
) -> Address:
    """Parse a TON address or raise InvalidAddress: bad form, bad checksum, a workchain
    other than `workchains` (surrounding spaces are ignored; nothing else is)."""
    if not isinstance(text, str) or not text.strip(" ") or len(text) > 80:
        raise InvalidAddress("a TON address is required", param=param)
    spelled = text.strip(" ")
    raw = _RAW.fullmatch(spelled)
    if raw is not None:
        address = Address((int(raw.group(1)), bytes.fromhex(raw.group(2))))
    else:
        found = _parse_friendly(spelled)
        if found is None:
            raise InvalidAddress(
                f"{text[:80]!r} is not a valid TON address: expected <workchain>:<64 hex "
                "digits> or 48 base64 characters with a valid checksum",
                param=param,
            )
        address = found
    if address.wc not in workchains:
        allowed = " and ".join(str(w) for w in workchains)
        raise InvalidAddress(
            f"{param} is on workchain {address.wc}; this service pays workchain {allowed}",
            param=param,
            code="address_workchain_unsupported",
        )
    return address


def raw_form(address: Address) -> str:
    """Canonical raw form `wc:hex`, the one we store and compare."""
    return str(address.to_str(is_user_friendly=False))  # type: ignore[no-untyped-call]


# A pure function of its text, asked for on every payout (lockouts, screening, limits).
@lru_cache(maxsize=4096)
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
    accepts both flags. Only the network's workchains (`TON_WORKCHAINS`) are accepted.
    """
    address = parse_address(address_text, param, network.workchains)
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
