"""Cell and address helpers shared by the chain and the HTTP APIs."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ton_core import Address, Builder, Cell, begin_cell
from ton_core.tlb.transaction import MessageAny

NONE_SHARD_ACCOUNT: Cell = (
    begin_cell()
    .store_ref(begin_cell().store_bit(0).end_cell())  # account_none$0
    .store_bytes(b"\0" * 32)
    .store_uint(0, 64)
    .end_cell()
)


def b64(cell: Cell) -> str:
    return base64.b64encode(cell.to_boc()).decode()


def cell_from(data: str | bytes) -> Cell:
    """Parse a BOC given as base64 or hex text, or as raw bytes."""
    if isinstance(data, bytes):
        return Cell.one_from_boc(data)
    text = data.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_")
    return Cell.one_from_boc(raw)


def raw_address(address: Any) -> str:
    """`wc:hex` form of an internal address (ton_core types it loosely, hence Any)."""
    return str(address.to_str(is_user_friendly=False))


def parse_address(text: str) -> Address:
    """Accept raw (`0:hex`) or user-friendly addresses; raise ValueError otherwise."""
    try:
        return Address(text.strip())
    except Exception as exc:
        raise ValueError(f"invalid address {text!r}") from exc


def friendly(address: Address, bounceable: bool = True) -> str:
    return str(address.to_str(is_user_friendly=True, is_bounceable=bounceable, is_url_safe=True))


def hash_b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def parse_hash(text: str) -> bytes:
    """Hashes arrive as hex or (url-safe) base64, as toncenter accepts both."""
    text = text.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_")
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"invalid hash {text!r}") from exc
    if len(raw) != 32:
        raise ValueError(f"invalid hash {text!r}")
    return raw


def normalized_external_hash(msg: MessageAny) -> bytes:
    """TEP-467: hash of the external-in message with src, import fee and init cleared."""
    dest: Any = msg.info.dest
    cell: Builder = (
        begin_cell()
        .store_uint(0b10, 2)  # ext_in_msg_info$10
        .store_uint(0, 2)  # src: addr_none
        .store_address(dest)
        .store_coins(0)
        .store_bit(0)  # no init
        .store_bit(1)  # body always as a ref
        .store_ref(msg.body)
    )
    return bytes(cell.end_cell().hash)


def method_id(name: str) -> int:
    """Get-method id as FunC computes it: crc16(name) | 0x10000."""
    return (binascii.crc_hqx(name.encode(), 0) & 0xFFFF) | 0x10000
