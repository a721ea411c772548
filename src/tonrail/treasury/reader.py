"""Reading the multisig and its orders through their get-methods (toncenter v2 stacks).

`get_multisig_data` -> (next_order_seqno, threshold, signers, proposers);
`get_order_data` -> (multisig, order_seqno, threshold, executed?, signers, approvals_mask,
approvals_num, expiration_date, order), the fields after order_seqno null until the order
contract received its init from the multisig.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from ton_core import Address, Cell, HashMap

from tonrail.errors import TonrailError
from tonrail.rails.ton.api import TonApi


class TreasuryReadError(TonrailError):
    """A get-method of the multisig or an order failed or answered an unexpected stack."""

    code = "treasury_read_failed"
    status = 502


@dataclass(frozen=True)
class MultisigState:
    next_order_seqno: int  # -1 when the multisig takes arbitrary seqnos
    threshold: int
    signers: tuple[Address, ...]
    proposers: tuple[Address, ...]


@dataclass(frozen=True)
class OrderState:
    multisig: Address
    order_seqno: int
    initialized: bool
    threshold: int
    executed: bool
    signers: tuple[Address, ...]
    approvals_mask: int
    approvals: int
    expiration_date: int
    order: Cell | None

    def approved_by(self, signer_index: int) -> bool:
        return bool(self.approvals_mask >> signer_index & 1)


def _num(entry: list[Any]) -> int | None:
    kind, value = entry[0], entry[1]
    if kind == "null":
        return None
    if kind != "num":
        raise TreasuryReadError(f"expected a number on the stack, got {kind}")
    return int(str(value), 16)


def _cell(entry: list[Any]) -> Cell | None:
    kind, value = entry[0], entry[1]
    if kind == "null":
        return None
    if kind not in ("cell", "slice"):
        raise TreasuryReadError(f"expected a cell on the stack, got {kind}")
    boc = value["bytes"] if isinstance(value, dict) else value
    return Cell.one_from_boc(base64.b64decode(boc))


def addresses_of(root: Cell | None) -> tuple[Address, ...]:
    """The addresses of a `Hashmap 8 MsgAddressInt`, in key order."""
    if root is None:
        return ()
    table = HashMap.parse(root.begin_parse(), 8, value_deserializer=lambda s: s.load_address())
    if table is None:
        raise TreasuryReadError("an address dictionary is not an ordinary cell")
    return tuple(table[k] for k in sorted(table))


async def _run(api: TonApi, address: str, method: str, size: int) -> list[list[Any]]:
    exit_code, stack = await api.run_get_method(address, method, [])
    if exit_code != 0 or len(stack) != size:
        raise TreasuryReadError(
            f"{method} on {address} failed (exit code {exit_code}, {len(stack)} stack entries)"
        )
    return stack


async def multisig_state(api: TonApi, multisig: str) -> MultisigState:
    """The multisig's seqno, threshold, signers and proposers, as the contract holds them."""
    stack = await _run(api, multisig, "get_multisig_data", 4)
    seqno, threshold = _num(stack[0]), _num(stack[1])
    if seqno is None or threshold is None:
        raise TreasuryReadError("get_multisig_data answered null seqno or threshold")
    return MultisigState(
        seqno, threshold, addresses_of(_cell(stack[2])), addresses_of(_cell(stack[3]))
    )


async def order_state(api: TonApi, order: str) -> OrderState:
    """An order contract's approvals and status."""
    stack = await _run(api, order, "get_order_data", 9)
    multisig = _cell(stack[0])
    seqno = _num(stack[1])
    if multisig is None or seqno is None:
        raise TreasuryReadError("get_order_data answered no multisig or seqno")
    address = multisig.begin_parse().load_address()
    if not isinstance(address, Address):
        raise TreasuryReadError("get_order_data answered no internal multisig address")
    threshold = _num(stack[2])
    return OrderState(
        multisig=address,
        order_seqno=seqno,
        initialized=threshold is not None,
        threshold=threshold or 0,
        executed=bool(_num(stack[3])),
        signers=addresses_of(_cell(stack[4])),
        approvals_mask=_num(stack[5]) or 0,
        approvals=_num(stack[6]) or 0,
        expiration_date=_num(stack[7]) or 0,
        order=_cell(stack[8]),
    )
