"""Messages and state of TON's official multisig v2 (ton-blockchain/multisig-contract-v2).

Layouts from the contract's own TL-B (contracts/multisig.tlb), built with ton_core:

    multisig data: next_order_seqno:uint256 threshold:uint8 signers:^(Hashmap 8 MsgAddressInt)
                   signers_num:uint8 proposers:(HashmapE 8 MsgAddressInt) allow_arbitrary:Bool
    new_order#f718510f query_id:uint64 order_seqno:uint256 signer:Bool index:uint8
                   expiration_date:uint48 order:^(Hashmap 8 ^Action)
    send_message#f1381e5b mode:uint8 message:^MessageRelaxed = Action
    approve#a762230f query_id:uint64 signer_index:uint8   (sent to the order contract)
    order data before init: multisig:MsgAddressInt order_seqno:uint256

An order contract's address follows from the multisig's address and the order's seqno: its
code is the library cell naming the order code (see chain/multisig_code.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from ton_core import (
    Address,
    Cell,
    CellTypes,
    HashMap,
    InternalMessage,
    StateInit,
    TvmBitarray,
    begin_cell,
)

from tonrail.chain.multisig_code import multisig_code, order_code

OP_NEW_ORDER = 0xF718510F
OP_APPROVE = 0xA762230F
OP_EXECUTE = 0x75097F5D
OP_APPROVE_ACCEPTED = 0x82609BF6
OP_APPROVE_REJECTED = 0xAFAF283E
ACTION_SEND_MESSAGE = 0xF1381E5B
MAX_ORDER_SEQNO = (1 << 256) - 1  # "the next seqno": the contract picks next_order_seqno
MAX_SIGNERS = 255
MAX_ACTIONS = 255
# Pay the forward fee apart from the value; a failing action fails the execution (mode 2 off):
# a payout either goes out whole or the order stays unexecuted, never half of it.
SEND_MODE_PAY_FEES_SEPARATELY = 1


class MultisigConfigError(ValueError):
    """Signers, proposers or threshold the contract would refuse."""


@dataclass(frozen=True)
class MultisigConfig:
    """Who may propose and approve, and how many approvals execute an order."""

    threshold: int
    signers: tuple[Address, ...]
    proposers: tuple[Address, ...] = ()
    allow_arbitrary_seqno: bool = False

    def __post_init__(self) -> None:
        if not 1 <= len(self.signers) <= MAX_SIGNERS:
            raise MultisigConfigError(f"a multisig has 1 to {MAX_SIGNERS} signers")
        if not 1 <= self.threshold <= len(self.signers):
            raise MultisigConfigError(
                f"threshold {self.threshold} is not between 1 and {len(self.signers)} signers"
            )
        if len(self.proposers) > MAX_SIGNERS:
            raise MultisigConfigError(f"a multisig has at most {MAX_SIGNERS} proposers")
        for group, name in ((self.signers, "signer"), (self.proposers, "proposer")):
            if len({_raw(a) for a in group}) != len(group):
                raise MultisigConfigError(f"a {name} appears twice")

    def signer_index(self, address: Address) -> int | None:
        """The index of `address` among the signers (what `approve` carries), or None."""
        return _index_of(self.signers, address)

    def proposer_index(self, address: Address) -> int | None:
        return _index_of(self.proposers, address)


def _raw(address: Address) -> str:
    return f"{address.wc}:{bytes(address.hash_part).hex()}"


def _index_of(group: Sequence[Address], address: Address) -> int | None:
    for i, member in enumerate(group):
        if _raw(member) == _raw(address):
            return i
    return None


def address_dict(addresses: Sequence[Address]) -> Cell | None:
    """`Hashmap 8 MsgAddressInt` keyed 0..n-1 (the root cell), None when empty."""
    table = HashMap(8).with_address_values()
    for i, address in enumerate(addresses):
        table.set_int_key(i, address)
    root: Cell | None = table.serialize()
    return root


def multisig_data(config: MultisigConfig) -> Cell:
    signers = address_dict(config.signers)
    assert signers is not None  # the config has at least one signer
    return (
        begin_cell()
        .store_uint(0, 256)
        .store_uint(config.threshold, 8)
        .store_ref(signers)
        .store_uint(len(config.signers), 8)
        .store_dict(address_dict(config.proposers))
        .store_bit(config.allow_arbitrary_seqno)
        .end_cell()
    )


def multisig_state_init(config: MultisigConfig) -> StateInit:
    return StateInit(code=multisig_code(), data=multisig_data(config))


def multisig_address(config: MultisigConfig, workchain: int = 0) -> Address:
    """Where a multisig with this configuration lives (its state init's hash)."""
    return Address((workchain, multisig_state_init(config).serialize().hash))


@cache
def order_code_ref() -> Cell:
    """The exotic library cell naming the order code: the code every order contract has."""
    bits = TvmBitarray(8 + 256)
    bits.extend(
        format(CellTypes.library_ref, "08b")
        + format(int.from_bytes(bytes(order_code().hash), "big"), "0256b")
    )
    return Cell(bits, [], CellTypes.library_ref)


def order_state_init(multisig: Address, order_seqno: int) -> StateInit:
    data = begin_cell().store_address(multisig).store_uint(order_seqno, 256).end_cell()
    return StateInit(code=order_code_ref(), data=data)


def order_address(multisig: Address, order_seqno: int) -> Address:
    """The order contract of `multisig` for `order_seqno` (as `get_order_address` answers)."""
    return Address((0, order_state_init(multisig, order_seqno).serialize().hash))


def send_message_action(
    message: InternalMessage, mode: int = SEND_MODE_PAY_FEES_SEPARATELY
) -> Cell:
    """An order action sending `message` from the multisig with send `mode`."""
    return (
        begin_cell()
        .store_uint(ACTION_SEND_MESSAGE, 32)
        .store_uint(mode, 8)
        .store_ref(message.serialize())
        .end_cell()
    )


def order_cell(actions: Sequence[Cell]) -> Cell:
    """The order: `Hashmap 8 ^Action` keyed 0..n-1."""
    if not 1 <= len(actions) <= MAX_ACTIONS:
        raise ValueError(f"an order has 1 to {MAX_ACTIONS} actions")
    table = HashMap(8, value_serializer=lambda cell, b: b.store_ref(cell))
    for i, action in enumerate(actions):
        table.set_int_key(i, action)
    root: Cell | None = table.serialize()
    assert root is not None
    return root


def new_order_body(
    order: Cell,
    *,
    expiration_date: int,
    signer: bool,
    index: int,
    order_seqno: int = MAX_ORDER_SEQNO,
    query_id: int = 0,
) -> Cell:
    """`new_order` to the multisig from signer (or proposer) number `index`."""
    return (
        begin_cell()
        .store_uint(OP_NEW_ORDER, 32)
        .store_uint(query_id, 64)
        .store_uint(order_seqno, 256)
        .store_bit(signer)
        .store_uint(index, 8)
        .store_uint(expiration_date, 48)
        .store_ref(order)
        .end_cell()
    )


def approve_body(signer_index: int, query_id: int = 0) -> Cell:
    """`approve` to an order contract, sent from the wallet of signer `signer_index`."""
    return (
        begin_cell()
        .store_uint(OP_APPROVE, 32)
        .store_uint(query_id, 64)
        .store_uint(signer_index, 8)
        .end_cell()
    )
