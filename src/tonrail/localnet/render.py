"""Transactions and messages of the local chain, decoded once for both toncenter APIs."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from ton_core import Cell
from ton_core.tlb.account import AccountStatus
from ton_core.tlb.block import CurrencyCollection
from ton_core.tlb.transaction import MessageAny, TransactionDescr

from tonrail.localnet.boc import (
    b64,
    friendly,
    hash_b64,
    message_cells,
    raw_address,
    trusted_cell,
)
from tonrail.localnet.store import TxRow
from tonrail.localnet.tx_cells import TxCells


@dataclass
class DecodedMessage:
    hash: bytes
    cell: Cell
    kind: str  # int | ext_in | ext_out
    source: str | None  # raw
    destination: str | None  # raw
    value: int
    fwd_fee: int
    ihr_fee: int
    created_lt: int
    created_at: int
    bounce: bool | None
    bounced: bool | None
    import_fee: int
    body: Cell
    init: Cell | None
    opcode: int | None
    comment: str | None


def decode_message(cell: Cell) -> DecodedMessage:
    msg: Any = MessageAny.deserialize(cell.begin_parse())
    info: Any = msg.info
    body: Cell = msg.body if msg.body is not None else Cell.empty()
    init = msg.init.serialize() if msg.init is not None else None
    s = body.begin_parse()
    opcode = int(s.load_uint(32)) if s.remaining_bits >= 32 else None
    comment: str | None = None
    if opcode == 0:
        try:
            comment = s.load_snake_string()
        except Exception:  # a malformed comment is still a valid message
            comment = None
    internal, ext_in = msg.is_internal, not msg.is_internal and not msg.is_external_out
    return DecodedMessage(
        hash=bytes(cell.hash),
        cell=cell,
        kind="int" if internal else "ext_in" if ext_in else "ext_out",
        source=None if ext_in else raw_address(info.src),
        destination=raw_address(info.dest) if internal or ext_in else None,
        value=info.value.grams if internal else 0,
        fwd_fee=info.fwd_fee if internal else 0,
        ihr_fee=info.ihr_fee if internal else 0,
        created_lt=0 if ext_in else info.created_lt,
        created_at=0 if ext_in else info.created_at,
        bounce=info.bounce if internal else None,
        bounced=info.bounced if internal else None,
        import_fee=info.import_fee if ext_in else 0,
        body=body,
        init=init,
        opcode=opcode,
        comment=comment,
    )


@dataclass(frozen=True, slots=True)
class TxHead:
    """A transaction's own fields (TL-B `Transaction`) but its messages, which `decode_tx`
    reads once, as `DecodedMessage`s, rather than twice as ton_core's `Transaction` did."""

    prev_trans_hash: bytes
    prev_trans_lt: int
    orig_status: Any
    end_status: Any
    total_fees: Any  # CurrencyCollection
    description: Any  # TransactionDescr


def tx_head(cell: Cell) -> TxHead:
    s = cell.begin_parse()
    if s.load_uint(4) != 0b0111:
        raise ValueError("not a transaction")
    s.skip_bits(256 + 64)  # account_addr, lt
    prev_trans_hash = s.load_bytes(32)
    prev_trans_lt = int(s.load_uint(64))
    s.skip_bits(32 + 15)  # now, outmsg_cnt
    orig_status: Any = AccountStatus.deserialize(s)
    end_status: Any = AccountStatus.deserialize(s)
    s.load_ref()  # in_msg and out_msgs
    total_fees: Any = CurrencyCollection.deserialize(s)
    s.load_ref()  # state_update
    description: Any = TransactionDescr.deserialize(s.load_ref().begin_parse())
    return TxHead(prev_trans_hash, prev_trans_lt, orig_status, end_status, total_fees, description)


@dataclass
class DecodedTx:
    row: TxRow
    tx: TxHead
    cell: Cell
    in_msg: DecodedMessage | None
    out_msgs: list[DecodedMessage]

    @property
    def hash(self) -> bytes:
        return self.row.hash

    @property
    def storage_fee(self) -> int:
        d = self.tx.description
        ph = getattr(d, "storage_ph", None)
        return int(ph.storage_fees_collected) if ph is not None else 0

    @property
    def total_fees(self) -> int:
        return int(self.tx.total_fees.grams)


def decode_tx(row: TxRow, cells: TxCells | None = None) -> DecodedTx:
    """The transaction of `row`, from the block's parse when `cells` kept it."""
    cell = cells.take(row.hash, row.boc) if cells is not None else trusted_cell(row.boc)
    in_cell, outs = message_cells(cell)
    return DecodedTx(
        row,
        tx_head(cell),
        cell,
        decode_message(in_cell) if in_cell is not None else None,
        [decode_message(o) for o in outs],
    )


def _addr_friendly(raw: str | None) -> str:
    if raw is None:
        return ""
    from ton_core import Address

    return friendly(Address(raw), bounceable=True)


def v2_message(m: DecodedMessage) -> dict[str, Any]:
    if m.comment is not None:
        msg_data: dict[str, Any] = {
            "@type": "msg.dataText",
            "text": base64.b64encode(m.comment.encode()).decode(),
        }
    else:
        msg_data = {
            "@type": "msg.dataRaw",
            "body": b64(m.body),
            "init_state": b64(m.init) if m.init is not None else "",
        }
    return {
        "@type": "ext.message",
        "hash": hash_b64(m.hash),
        "source": _addr_friendly(m.source),
        "destination": _addr_friendly(m.destination),
        "value": str(m.value),
        "extra_currencies": [],
        "fwd_fee": str(m.fwd_fee),
        "ihr_fee": str(m.ihr_fee),
        "created_lt": str(m.created_lt),
        "body_hash": hash_b64(bytes(m.body.hash)),
        "msg_data": msg_data,
        "message": m.comment or "",
    }


def v2_transaction(d: DecodedTx) -> dict[str, Any]:
    acct = _addr_friendly(d.row.account)
    return {
        "@type": "ext.transaction",
        "address": {"@type": "accountAddress", "account_address": acct},
        "account": d.row.account,
        "utime": d.row.utime,
        "data": base64.b64encode(d.row.boc).decode(),
        "transaction_id": {
            "@type": "internal.transactionId",
            "lt": str(d.row.lt),
            "hash": hash_b64(d.row.hash),
        },
        "fee": str(d.total_fees),
        "storage_fee": str(d.storage_fee),
        "other_fee": str(d.total_fees - d.storage_fee),
        "in_msg": v2_message(d.in_msg) if d.in_msg else None,
        "out_msgs": [v2_message(m) for m in d.out_msgs],
    }


def compute_phase(d: DecodedTx) -> dict[str, Any]:
    ph = getattr(d.tx.description, "compute_ph", None)
    if ph is None:
        return {"skipped": True}
    if ph.type_ != "vm":
        return {"skipped": True, "reason": getattr(ph.reason, "type_", None)}
    return {
        "skipped": False,
        "success": bool(ph.success),
        "msg_state_used": bool(ph.msg_state_used),
        "account_activated": bool(ph.account_activated),
        "gas_fees": str(ph.gas_fees),
        "gas_used": str(ph.gas_used),
        "gas_limit": str(ph.gas_limit),
        "gas_credit": str(ph.gas_credit) if ph.gas_credit is not None else None,
        "mode": ph.mode,
        "exit_code": ph.exit_code,
        "exit_arg": ph.exit_arg,
        "vm_steps": ph.vm_steps,
        "vm_init_state_hash": hash_b64(ph.vm_init_state_hash),
        "vm_final_state_hash": hash_b64(ph.vm_final_state_hash),
    }


def action_phase(d: DecodedTx) -> dict[str, Any] | None:
    ph = getattr(d.tx.description, "action", None)
    if ph is None:
        return None
    return {
        "success": bool(ph.success),
        "valid": bool(ph.valid),
        "no_funds": bool(ph.no_funds),
        "status_change": getattr(ph.status_change, "type_", "unchanged"),
        "total_fwd_fees": str(ph.total_fwd_fees or 0),
        "total_action_fees": str(ph.total_action_fees or 0),
        "result_code": ph.result_code,
        "result_arg": ph.result_arg,
        "tot_actions": ph.tot_actions,
        "spec_actions": ph.spec_actions,
        "skipped_actions": ph.skipped_actions,
        "msgs_created": ph.msgs_created,
        "action_list_hash": hash_b64(ph.action_list_hash),
        "tot_msg_size": {
            "cells": str(ph.tot_msg_size.cells),
            "bits": str(ph.tot_msg_size.bits),
        },
    }


def bounce_phase(d: DecodedTx) -> dict[str, Any] | None:
    ph = getattr(d.tx.description, "bounce", None)
    if ph is None:
        return None

    # ton_core sets only the fields of the phase's own variant (ok / nofunds / negfunds).
    def grams(name: str) -> str | None:
        value = getattr(ph, name, None)
        return str(value) if value is not None else None

    return {
        "type": ph.type_,
        "req_fwd_fees": grams("req_fwd_fees"),
        "msg_fees": grams("msg_fees"),
        "fwd_fees": grams("fwd_fees"),
    }
