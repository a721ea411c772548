"""What toncenter answers, as typed values (per its v2 and v3 OpenAPI descriptions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Api = Literal["v2", "v3"]  # toncenter's two HTTP APIs
# The methods that send a message: a node's refusal of one is `rejected`, not `api_error`.
SEND_METHODS: dict[Api, frozenset[str]] = {
    "v2": frozenset({"sendBoc", "sendBocReturnHash"}),
    "v3": frozenset({"message"}),
}


# Plain frozen dataclasses, a few typed fields each: alike others in shape only.
@dataclass(frozen=True, slots=True)
class SentMessage:
    """sendBocReturnHash: the external message's hash and its TEP-467 normalized hash (base64)."""

    hash: str
    hash_norm: str


@dataclass(frozen=True, slots=True)
class TransactionId:
    lt: int
    hash: str  # base64


@dataclass(frozen=True, slots=True)
class BlockId:
    workchain: int
    shard: str
    seqno: int
    root_hash: str
    file_hash: str


@dataclass(frozen=True, slots=True)
class Message:
    """A v2 message (`ext.message`). Addresses as toncenter gives them; "" for none."""

    hash: str
    source: str
    destination: str
    value: int
    fwd_fee: int
    ihr_fee: int
    created_lt: int
    body_hash: str
    data_type: str  # msg.dataRaw | msg.dataText | msg.dataDecryptedText | msg.dataEncryptedText
    body: str | None  # base64 BOC of the body (msg.dataRaw)
    init_state: str | None  # base64 BOC (msg.dataRaw), None when absent
    comment: str | None  # the decoded text of msg.dataText


@dataclass(frozen=True, slots=True)
class Transaction:
    """A v2 transaction (`ext.transaction`)."""

    account: str
    utime: int
    data: str  # the transaction BOC, base64
    transaction_id: TransactionId
    fee: int
    storage_fee: int
    other_fee: int
    in_msg: Message | None
    out_msgs: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class AddressInformation:
    balance: int
    state: str  # uninitialized | active | frozen
    code: str
    data: str
    last_transaction_id: TransactionId
    frozen_hash: str
    sync_utime: int
    block_id: BlockId


@dataclass(frozen=True, slots=True)
class WalletInformation:
    wallet: bool
    balance: int
    account_state: str  # uninit | active | frozen
    last_transaction_id: TransactionId
    wallet_type: str | None
    seqno: int | None
    wallet_id: int | None


@dataclass(frozen=True, slots=True)
class MasterchainInfo:
    last: BlockId
    init: BlockId
    state_root_hash: str


@dataclass(frozen=True, slots=True)
class GetMethodResult:
    exit_code: int
    gas_used: int
    stack: list[Any]  # toncenter's legacy entries: ["num", "0x.."], ["cell", {...}], ...

    @property
    def success(self) -> bool:
        return self.exit_code in (0, 1)


@dataclass(frozen=True, slots=True)
class Fees:
    in_fwd_fee: int
    storage_fee: int
    gas_fee: int
    fwd_fee: int

    @property
    def total(self) -> int:
        return self.in_fwd_fee + self.storage_fee + self.gas_fee + self.fwd_fee


@dataclass(frozen=True, slots=True)
class EstimatedFees:
    source_fees: Fees
    destination_fees: tuple[Fees, ...]


@dataclass(frozen=True, slots=True)
class V3Message:
    """A v3 message. Addresses raw (`0:ABC..`); None where the message kind has no value."""

    hash: str
    hash_norm: str | None
    source: str | None
    destination: str | None
    value: int | None
    fwd_fee: int | None
    created_lt: int | None
    opcode: int | None
    bounce: bool | None
    bounced: bool | None
    body: str | None  # message_content.body, base64 BOC
    comment: str | None  # message_content.decoded.comment for text comments
    body_hash: str | None = None  # message_content.hash: the body cell's hash


@dataclass(frozen=True, slots=True)
class V3Transaction:
    """A v3 transaction with the phases we judge payouts by; `description` is kept whole."""

    account: str
    hash: str
    lt: int
    now: int
    mc_block_seqno: int | None
    orig_status: str
    end_status: str
    total_fees: int
    aborted: bool
    compute_skipped: bool
    compute_success: bool | None
    compute_exit_code: int | None
    action_success: bool | None
    action_result_code: int | None
    skipped_actions: int | None
    in_msg: V3Message | None
    out_msgs: tuple[V3Message, ...]
    description: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TransactionsPage:
    transactions: tuple[V3Transaction, ...]
    address_book: dict[str, str]  # raw address -> user-friendly form


@dataclass(frozen=True, slots=True)
class JettonWallet:
    address: str
    balance: int
    owner: str
    jetton: str
    last_transaction_lt: int | None
    code_hash: str | None
    data_hash: str | None
