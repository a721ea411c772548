"""The TON rail's view of transactions: toncenter v3 transactions, normalized for matching.

The toncenter client (the `toncenter` package) parses the wire format; here hashes become
lowercase hex, addresses raw `wc:HEX`, opcodes unsigned 32-bit, and each message gets its
body hash, so that what we signed can be compared with what the chain did.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from ton_core import Address, Cell

from tonrail.rails.ton.toncenter import V3Message, V3Transaction

JETTON_TRANSFER_OP = 0x0F8A7EA5
JETTON_INTERNAL_TRANSFER_OP = 0x178D4519
JETTON_NOTIFY_OP = 0x7362D09C
EXCESSES_OP = 0xD53276DB
BOUNCE_OP = 0xFFFFFFFF
# A jetton wallet's compute phase exit code for "the TON attached does not cover my estimate
# of the transfer's fees": 709 (`error::not_enough_tons`) in the TEP-74 reference and the
# standard jetton wallet (what the local network deploys), 48 (`error::not_enough_gas`) in the
# stablecoin wallet of mainnet USDT. Not a balance error (706 / 47): those fail as bounced.
JETTON_NOT_ENOUGH_TON_EXIT_CODES = frozenset({709, 48})


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
    bounce: bool = True  # the bounce flag (unknown counts as bounceable: the safe reading)
    hash_norm: str | None = None  # an external message's TEP-467 normalized hash (hex)


@dataclass(frozen=True, slots=True)
class Tx:
    hash: str
    lt: int
    now: int
    account: str
    aborted: bool
    total_fees: int
    in_msg: Msg | None
    out_msgs: tuple[Msg, ...]
    exit_code: int | None = None  # the compute phase's; None when it was skipped


def _body_hash(body_b64: str | None) -> str | None:
    if not body_b64:
        return None
    return bytes(Cell.one_from_boc(base64.b64decode(body_b64)).hash).hex()


def msg_of(m: V3Message) -> Msg:
    return Msg(
        hash=to_hex(m.hash),
        source=raw(m.source) if m.source else None,
        destination=raw(m.destination) if m.destination else None,
        value=m.value or 0,
        fwd_fee=m.fwd_fee or 0,
        # toncenter v3 may give opcodes as signed int32 (0xd53276db is -718108709).
        opcode=m.opcode & 0xFFFFFFFF if m.opcode is not None else None,
        bounced=bool(m.bounced),
        # The indexer gives the body's hash; computing it means parsing the BOC.
        body_hash=to_hex(m.body_hash) if m.body_hash else _body_hash(m.body),
        body_b64=m.body,
        comment=m.comment,
        bounce=m.bounce is not False,
        hash_norm=to_hex(m.hash_norm) if m.hash_norm else None,
    )


def tx_of(t: V3Transaction) -> Tx:
    return Tx(
        hash=to_hex(t.hash),
        lt=t.lt,
        now=t.now,
        account=raw(t.account),
        aborted=t.aborted,
        total_fees=t.total_fees,
        in_msg=msg_of(t.in_msg) if t.in_msg is not None else None,
        out_msgs=tuple(msg_of(m) for m in t.out_msgs),
        exit_code=None if t.compute_skipped else t.compute_exit_code,
    )


def ton_change(tx: Tx) -> int:
    """Nanoton by which the transaction changed its account's balance: the value its inbound
    internal message brought, less what each out message took (its value and forward fee)
    and the transaction's own fees (the split the tracker's fees rest on, trace.py)."""
    brought = tx.in_msg.value if tx.in_msg is not None and tx.in_msg.source is not None else 0
    return brought - sum(m.value + m.fwd_fee for m in tx.out_msgs) - tx.total_fees


def _jetton_body(m: Msg) -> tuple[int, int, int] | None:
    """(opcode, query_id, jetton amount) of a TEP-74 transfer or internal_transfer body;
    a bounced message's body (0xffffffff, then the first 256 bits of the original) is read
    past its bounce prefix. None for any other body."""
    if not m.body_b64:
        return None
    try:
        body = Cell.one_from_boc(base64.b64decode(m.body_b64)).begin_parse()
        if m.bounced or m.opcode == BOUNCE_OP:
            if body.remaining_bits < 32 or int(body.load_uint(32)) != BOUNCE_OP:
                return None
        if body.remaining_bits < 32 + 64 + 4:
            return None
        op = int(body.load_uint(32))
        if op not in (JETTON_TRANSFER_OP, JETTON_INTERNAL_TRANSFER_OP):
            return None
        return op, int(body.load_uint(64)), int(body.load_coins())
    except Exception:
        return None


@dataclass(frozen=True, slots=True)
class JettonMove:
    """What one transaction of a jetton wallet did to its jetton balance (TEP-74)."""

    kind: str  # "debit" (transfer from the owner), "credit" (internal_transfer in), "bounce"
    amount: int  # signed: what the balance changed by
    query_id: int
    notification: Msg | None = None  # a credit's transfer_notification to the owner
    internal: Msg | None = None  # a debit's internal_transfer out


def jetton_move(tx: Tx) -> JettonMove | None:
    """The jetton balance change of a transaction of a standard jetton wallet, read from its
    messages: a `transfer` from the owner debits (its internal_transfer leaves), an
    `internal_transfer` credits, a bounced internal_transfer credits the amount back. An
    aborted transaction changes nothing (the wallet's state is not committed)."""
    m = tx.in_msg
    if tx.aborted or m is None or m.source is None:
        return None
    parsed = _jetton_body(m)
    if parsed is None:
        return None
    op, query_id, amount = parsed
    if m.bounced or m.opcode == BOUNCE_OP:
        if op != JETTON_INTERNAL_TRANSFER_OP:
            return None
        return JettonMove("bounce", amount, query_id)
    if op == JETTON_TRANSFER_OP:
        internal = next((o for o in tx.out_msgs if o.opcode == JETTON_INTERNAL_TRANSFER_OP), None)
        if internal is None:
            return None
        return JettonMove("debit", -amount, query_id, internal=internal)
    notification = next((o for o in tx.out_msgs if o.opcode == JETTON_NOTIFY_OP), None)
    return JettonMove("credit", amount, query_id, notification=notification)


def query_id_of(m: Msg) -> int | None:
    """The query_id of a TEP-74 message (transfer, internal_transfer, excesses: the 64 bits
    after the opcode), or None for a body without one."""
    if not m.body_b64:
        return None
    try:
        body = Cell.one_from_boc(base64.b64decode(m.body_b64)).begin_parse()
        if body.remaining_bits < 96:
            return None
        body.skip_bits(32)
        return int(body.load_uint(64))
    except Exception:
        return None


def same_address(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.upper() == b.upper()
