"""What the TON rail reads from the chain, parsed once from toncenter v3 JSON.

Hashes are kept as lowercase hex; addresses in raw form (`0:abcd...`, uppercase hex as v3
returns it, compared case-insensitively through `same_address`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from ton_core import Address

JETTON_TRANSFER_OP = 0x0F8A7EA5
JETTON_INTERNAL_TRANSFER_OP = 0x178D4519
JETTON_NOTIFY_OP = 0x7362D09C
EXCESSES_OP = 0xD53276DB
BOUNCE_OP = 0xFFFFFFFF


def to_hex(value: str) -> str:
    """toncenter hashes come as base64 (v3) or hex; we keep hex."""
    if len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    try:
        return base64.b64decode(value.replace("-", "+").replace("_", "/")).hex()
    except (binascii.Error, ValueError):
        raise ValueError(f"not a hash: {value[:80]!r}") from None


def raw(address: Address | str) -> str:
    """Canonical raw form `wc:HEX` (uppercase hex) for comparisons and storage."""
    addr = address if isinstance(address, Address) else Address(address)
    return f"{addr.wc}:{bytes(addr.hash_part).hex().upper()}"


@dataclass(frozen=True, slots=True)
class Msg:
    hash: str
    source: str | None
    destination: str | None
    value: int
    fwd_fee: int
    opcode: int | None
    bounced: bool
    body_hash: str | None
    body_b64: str | None
    comment: str | None


@dataclass(frozen=True, slots=True)
class Tx:
    hash: str
    lt: int
    now: int
    account: str
    aborted: bool
    compute_success: bool
    bounced_back: bool  # the bounce phase sent the value back
    total_fees: int
    in_msg: Msg | None
    out_msgs: tuple[Msg, ...]

    @property
    def out_cost(self) -> int:
        """Nanoton that left the account through out messages, forward fees included."""
        return sum(m.value + m.fwd_fee for m in self.out_msgs)


def _addr(value: Any) -> str | None:
    if not value:
        return None
    return raw(str(value))


def _opcode(value: Any) -> int | None:
    if value is None:
        return None
    number = int(str(value), 0) if isinstance(value, str) else int(value)
    # toncenter v3 gives opcodes as signed int32 (0xd53276db is -718108709): compare unsigned.
    return number & 0xFFFFFFFF


def parse_msg(m: dict[str, Any]) -> Msg:
    content = m.get("message_content") or {}
    decoded = content.get("decoded") or {}
    return Msg(
        hash=to_hex(str(m["hash"])),
        source=_addr(m.get("source")),
        destination=_addr(m.get("destination")),
        value=int(m.get("value") or 0),
        fwd_fee=int(m.get("fwd_fee") or 0),
        opcode=_opcode(m.get("opcode")),
        bounced=bool(m.get("bounced")),
        body_hash=to_hex(str(content["hash"])) if content.get("hash") else None,
        body_b64=content.get("body"),
        comment=decoded.get("comment") if decoded.get("type") == "text_comment" else None,
    )


def parse_tx(t: dict[str, Any]) -> Tx:
    desc = t.get("description") or {}
    compute = desc.get("compute_ph") or {}
    bounce = desc.get("bounce") or {}
    return Tx(
        hash=to_hex(str(t["hash"])),
        lt=int(t["lt"]),
        now=int(t.get("now") or 0),
        account=raw(str(t["account"])),
        aborted=bool(desc.get("aborted")),
        compute_success=bool(compute.get("success")),
        bounced_back=bounce.get("type") == "ok",
        total_fees=int(t.get("total_fees") or 0),
        in_msg=parse_msg(t["in_msg"]) if t.get("in_msg") else None,
        out_msgs=tuple(parse_msg(m) for m in t.get("out_msgs") or []),
    )


def same_address(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.upper() == b.upper()
