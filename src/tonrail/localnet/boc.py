"""Cell and address helpers shared by the chain and the HTTP APIs."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ton_core import Address, Cell, HashMap, StateInit, begin_cell

from tonrail.localnet import fast_boc

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


_BOC_HAS_CRC32C = 0x40


def trusted_cell(raw: bytes) -> Cell:
    """Parse a BOC this process made or stored itself (the emulator's output, the chain's own
    database) without checking its CRC-32C: the checksum guards a BOC that crossed a wire, and
    pytoniq_core computes it in pure Python (a third of the parse, measured). A BOC from a
    client goes through `cell_from`, which checks it. The emulator's plain BOCs take the
    faster parse of `fast_boc`, the same cells."""
    try:
        return fast_boc.parse(raw)
    except fast_boc.Unusual:
        pass  # pytoniq_core's general parse
    if raw[:4] == fast_boc.BOC_MAGIC and len(raw) > 9 and raw[4] & _BOC_HAS_CRC32C:
        raw = raw[:4] + bytes((raw[4] & ~_BOC_HAS_CRC32C,)) + raw[5:-4]
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


def external_route(cell: Cell) -> tuple[str, bytes]:
    """(destination, TEP-467 normalized hash) of an external-in message, read directly."""
    s = cell.begin_parse()
    if s.load_uint(2) != 0b10:
        raise ValueError("only external inbound messages can be sent")
    s.load_address()  # src: addr_none or extern
    dest: Any = s.load_address()
    s.load_coins()  # import fee
    if s.load_bit():
        if s.load_bit():
            s.load_ref()
        else:
            StateInit.deserialize(s)
    body = s.load_ref() if s.load_bit() else s.to_cell()
    norm = (
        begin_cell()
        .store_uint(0b10, 2)
        .store_uint(0, 2)
        .store_address(dest)
        .store_coins(0)
        .store_bit(0)
        .store_bit(1)
        .store_ref(body)
        .end_cell()
    )
    return raw_address(dest), bytes(norm.hash)


def message_cells(tx_cell: Cell) -> tuple[Cell | None, list[Cell]]:
    """The in message and the out messages (in index order) of a Transaction cell."""
    s = tx_cell.refs[0].begin_parse()
    in_msg = s.load_ref() if s.load_bit() else None
    outs: list[Cell] = []
    if s.load_bit():
        parsed: Any = HashMap.parse(
            s.load_ref().begin_parse(), 15, value_deserializer=lambda v: v.load_ref()
        )
        outs = [parsed[k] for k in sorted(parsed or {})]
    return in_msg, outs


def method_id(name: str) -> int:
    """Get-method id as FunC computes it: crc16(name) | 0x10000."""
    return (binascii.crc_hqx(name.encode(), 0) & 0xFFFF) | 0x10000
