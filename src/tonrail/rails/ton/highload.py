"""Highload wallet v3: the hot wallet's address and the signed external messages it accepts.

Layout of a request (the contract's own TL-B): the external body is
`signature:bits512 ^[subwallet_id:uint32 ^message send_mode:uint8 query_id:uint23
created_at:uint64 timeout:uint22]`. We always send the message to ourselves with an
`internal_transfer` body carrying the out actions, so every batch, of 1 or of 254 payouts,
produces the same two transactions (external, then internal_transfer) to confirm against.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from ton_core import (
    CONTRACT_CODES,
    Address,
    Cell,
    ContractVersion,
    ExternalMsgInfo,
    InternalMessage,
    JettonTransferBody,
    MessageAny,
    OutActionSendMsg,
    PublicKey,
    StateInit,
    TextCommentBody,
    WalletHighloadV3Data,
    WalletMessage,
    begin_cell,
    normalize_hash,
    to_cell,
)

from tonrail.chain.address import BASECHAIN, asset_workchain_refusal

INTERNAL_TRANSFER_OP = 0xAE42E5A4
SUBWALLET_ID = 0x10AD
MAX_ACTIONS_PER_PACK = 253  # 254 with the nested pack that carries the rest
# Pay the forward fee from the wallet, not from the value; a failing action is skipped
# (visible as a missing out message) instead of failing every payout of the batch.
PAYOUT_SEND_MODE = 1 | 2
QUERY_ID_SPACE = 8192 * 1023  # shift:13 bits x bit_number:10 bits, bit_number < 1023
# The contract's refusal of an external whose query_id it has already executed
# (`error::already_executed`); 33-35 are a bad signature, subwallet or created_at.
EXIT_ALREADY_EXECUTED = 36
# How a node words an external's refusal: toncenter (liteserver) "exitcode=36, steps=...",
# toncenter v2's documented form "Exit code 36 != 0".
_EXIT_CODE = re.compile(r"exit\s?code[=\s]+(-?\d+)", re.IGNORECASE)


def refused_as_executed(error: BaseException) -> bool:
    """Whether a node refused a request because the wallet has already executed its
    query_id: for a copy of one of our requests, proof that it landed (what `processed?`
    would say), so re-sending it is pointless."""
    found = _EXIT_CODE.search(str(error))
    return found is not None and int(found.group(1)) == EXIT_ALREADY_EXECUTED


def query_id_for(n: int) -> int:
    """The n-th usable query_id (bit_number 1023 is not valid in highload v3)."""
    n %= QUERY_ID_SPACE
    shift, bit_number = divmod(n, 1023)
    return (shift << 10) | bit_number


@dataclass(frozen=True)
class HighloadWallet:
    public_key: bytes
    subwallet_id: int = SUBWALLET_ID
    timeout: int = 3600
    workchain: int = 0

    # Computed once: the address is asked for on every out message the tracker reads.
    @cached_property
    def state_init(self) -> StateInit:
        data = WalletHighloadV3Data(
            public_key=PublicKey(self.public_key),
            subwallet_id=self.subwallet_id,
            timeout=self.timeout,
        ).serialize()
        return StateInit(
            code=to_cell(CONTRACT_CODES[ContractVersion.WalletHighloadV3R1]), data=data
        )

    @cached_property
    def address(self) -> Address:
        return Address((self.workchain, self.state_init.serialize().hash))


def hot_wallet_address(public_key: bytes, subwallet_id: int, timeout: int) -> str:
    """User-friendly (bounceable) address of the highload v3 hot wallet."""
    addr = HighloadWallet(public_key, subwallet_id, timeout).address
    return str(addr.to_str(is_user_friendly=True, is_bounceable=True))


@dataclass(frozen=True, slots=True)
class OutTransfer:
    """One out message of a batch, fully determined before signing."""

    destination: Address
    value: int  # nanoton carried by the message
    bounce: bool
    body: Cell
    # Deploys the destination with the message (a hot wallet rotation's sweep: the new wallet)
    state_init: StateInit | None = None

    def message(self) -> InternalMessage:
        return InternalMessage(
            bounce=self.bounce,
            dest=self.destination,
            value=self.value,
            body=self.body,
            state_init=self.state_init,
        )

    @property
    def body_hash(self) -> str:
        return bytes(self.body.hash).hex()


HASH_BYTES = 32


def destination_refusal(destination: Address, asset: str) -> str | None:
    """Why no out message may be built to `destination` for `asset`, or None.

    A hash of another length than 32 bytes is stored as given and the chain reads the rest
    of the message from the wrong bits: another address, another value (a 33-byte hash sent
    hundreds of TON to a stranger on the local network). Jetton wallets take owners on the
    basechain only (TEP-74 wallets `force_chain`): any other workchain bounces, fees spent."""
    if destination.wc not in (BASECHAIN, -1):
        return f"workchain {destination.wc} is not supported"
    if len(bytes(destination.hash_part)) != HASH_BYTES:
        return f"the address hash is {len(bytes(destination.hash_part))} bytes, not {HASH_BYTES}"
    return asset_workchain_refusal(destination.wc, asset)


def comment_body(text: str) -> Cell:
    return TextCommentBody(text).serialize()


def ton_transfer(destination: Address, amount: int, bounce: bool, comment: str) -> OutTransfer:
    refused = destination_refusal(destination, "TON")
    if refused is not None:
        raise ValueError(f"no message to this destination: {refused}")
    return OutTransfer(destination, amount, bounce, comment_body(comment))


def jetton_transfer(
    our_jetton_wallet: Address,
    recipient: Address,
    jetton_amount: int,
    *,
    attach_ton: int,
    forward_ton: int,
    response: Address,
    query_id: int,
    comment: str,
) -> OutTransfer:
    """TEP-74 transfer from our jetton wallet; excess TON returns to `response`."""
    refused = destination_refusal(recipient, "USDT")
    if refused is not None:
        raise ValueError(f"no jetton transfer to this recipient: {refused}")
    body = JettonTransferBody(
        destination=recipient,
        jetton_amount=jetton_amount,
        response_address=response,
        forward_amount=forward_ton,
        forward_payload=comment_body(comment) if forward_ton > 0 else None,
        query_id=query_id,
    ).serialize()
    return OutTransfer(our_jetton_wallet, attach_ton, True, body)


def _actions(transfers: Sequence[OutTransfer], self_address: Address, query_id: int) -> Cell:
    """The out-action list; beyond 253 transfers the rest go in a nested internal_transfer."""
    messages = [WalletMessage(PAYOUT_SEND_MODE, t.message()) for t in transfers]
    if len(messages) > MAX_ACTIONS_PER_PACK:
        rest = _internal_transfer(transfers[MAX_ACTIONS_PER_PACK:], self_address, query_id)
        messages = [*messages[:MAX_ACTIONS_PER_PACK], WalletMessage(PAYOUT_SEND_MODE, rest)]
    actions = Cell.empty()
    for msg in messages:
        actions = (
            begin_cell().store_ref(actions).store_cell(OutActionSendMsg(msg).serialize())
        ).end_cell()
    return actions


def _internal_transfer(
    transfers: Sequence[OutTransfer], self_address: Address, query_id: int
) -> InternalMessage:
    body = (
        begin_cell()
        .store_uint(INTERNAL_TRANSFER_OP, 32)
        .store_uint(query_id, 64)
        .store_ref(_actions(transfers, self_address, query_id))
        .end_cell()
    )
    # The self-message carries enough for every nested pack's forward fees: 0.01 TON a pack.
    packs = 1 + (len(transfers) - 1) // MAX_ACTIONS_PER_PACK
    return InternalMessage(bounce=False, dest=self_address, value=10_000_000 * packs, body=body)


@dataclass(frozen=True, slots=True)
class SignedRequest:
    boc: str  # base64 BOC of the external message, exactly what is sent (and re-sent)
    message_hash_norm: str  # hex, TEP-467 normalized hash: how toncenter finds the transaction
    query_id: int
    created_at: int


def sign_request(
    wallet: HighloadWallet,
    sign: Callable[[bytes], bytes],
    transfers: Sequence[OutTransfer],
    *,
    query_id: int,
    created_at: int,
    deploy: bool,
) -> SignedRequest:
    """Build and sign one highload request carrying `transfers`."""
    if not transfers:
        raise ValueError("a request needs at least one transfer")
    if not 0 <= query_id < (1 << 23) or (query_id & 1023) == 1023:
        raise ValueError(f"invalid highload query_id {query_id}")
    self_message = _internal_transfer(transfers, wallet.address, query_id)
    unsigned = (
        begin_cell()
        .store_uint(wallet.subwallet_id, 32)
        .store_ref(self_message.serialize())
        .store_uint(PAYOUT_SEND_MODE, 8)
        .store_uint(query_id, 23)
        .store_uint(created_at, 64)
        .store_uint(wallet.timeout, 22)
        .end_cell()
    )
    signature = sign(bytes(unsigned.hash))
    body = begin_cell().store_bytes(signature).store_ref(unsigned).end_cell()
    info = ExternalMsgInfo(None, wallet.address, 0)
    message = MessageAny(info, wallet.state_init if deploy else None, body)
    boc = base64.b64encode(message.serialize().to_boc()).decode()
    return SignedRequest(boc, normalize_hash(message), query_id, created_at)
