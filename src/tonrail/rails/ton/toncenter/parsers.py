"""toncenter JSON -> the dataclasses of models.py; what does not fit raises BadShape.

Each parser spells its fields out one by one (`name=_int(o.get("name"), "name")`): the
repetition is the field list itself, and keeping it literal lets mypy check every field's
type against its dataclass, which a table-driven `**kwargs` construction would not.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from tonrail.rails.ton.toncenter.models import (
    AddressInformation,
    BlockId,
    EstimatedFees,
    Fees,
    GetMethodResult,
    JettonWallet,
    MasterchainInfo,
    Message,
    SentMessage,
    Transaction,
    TransactionId,
    TransactionsPage,
    V3Message,
    V3Transaction,
    WalletInformation,
)


class BadShape(Exception):
    """The JSON does not have the shape the spec describes."""


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadShape(f"{what} is not an object")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise BadShape(f"{what} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0) if value.startswith(("0x", "-0x")) else int(value)
        except ValueError:
            pass
    raise BadShape(f"{what} is not an integer")


def _opt_int(value: Any, what: str) -> int | None:
    return None if value is None or value == "" else _int(value, what)


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadShape(f"{what} is not a string")
    return value


def _opt_str(value: Any, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _opt_bool(value: Any, what: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise BadShape(f"{what} is not a boolean")


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadShape(f"{what} is not a list")
    return value


def parse_transaction_id(v: Any) -> TransactionId:
    o = _obj(v, "transaction_id")
    return TransactionId(_int(o.get("lt"), "lt"), _str(o.get("hash"), "hash"))


def parse_block_id(v: Any) -> BlockId:
    o = _obj(v, "block id")
    return BlockId(
        workchain=_int(o.get("workchain"), "workchain"),
        shard=str(_int(o.get("shard"), "shard")),
        seqno=_int(o.get("seqno"), "seqno"),
        root_hash=_str(o.get("root_hash"), "root_hash"),
        file_hash=_str(o.get("file_hash"), "file_hash"),
    )


def parse_message(v: Any) -> Message:
    o = _obj(v, "message")
    data = _obj(o.get("msg_data"), "msg_data")
    data_type = _str(data.get("@type"), "msg_data @type")
    comment = None
    if data_type == "msg.dataText":
        try:
            comment = base64.b64decode(_str(data.get("text"), "text")).decode("utf-8", "replace")
        except (binascii.Error, ValueError) as exc:
            raise BadShape("msg.dataText text is not base64") from exc
    # Field by field, each checked: alike the other parsers in shape only.
    return Message(
        hash=_str(o.get("hash"), "hash"),
        source=_str(o.get("source", ""), "source"),
        destination=_str(o.get("destination", ""), "destination"),
        value=_int(o.get("value"), "value"),
        fwd_fee=_int(o.get("fwd_fee"), "fwd_fee"),
        ihr_fee=_int(o.get("ihr_fee"), "ihr_fee"),
        created_lt=_int(o.get("created_lt"), "created_lt"),
        body_hash=_str(o.get("body_hash"), "body_hash"),
        data_type=data_type,
        body=_opt_str(data.get("body"), "body"),
        init_state=_opt_str(data.get("init_state"), "init_state") or None,
        comment=comment,
    )


def parse_transaction(v: Any) -> Transaction:
    o = _obj(v, "transaction")
    return Transaction(
        account=_str(o.get("account"), "account"),
        utime=_int(o.get("utime"), "utime"),
        data=_str(o.get("data"), "data"),
        transaction_id=parse_transaction_id(o.get("transaction_id")),
        fee=_int(o.get("fee"), "fee"),
        storage_fee=_int(o.get("storage_fee"), "storage_fee"),
        other_fee=_int(o.get("other_fee"), "other_fee"),
        in_msg=parse_message(o["in_msg"]) if o.get("in_msg") else None,
        out_msgs=tuple(parse_message(m) for m in _list(o.get("out_msgs"), "out_msgs")),
    )


def parse_fees(v: Any) -> Fees:
    o = _obj(v, "fees")
    return Fees(
        _int(o.get("in_fwd_fee"), "in_fwd_fee"),
        _int(o.get("storage_fee"), "storage_fee"),
        _int(o.get("gas_fee"), "gas_fee"),
        _int(o.get("fwd_fee"), "fwd_fee"),
    )


def parse_v3_message(v: Any) -> V3Message:
    o = _obj(v, "message")
    content = o.get("message_content")
    body = comment = body_hash = None
    if content is not None:
        c = _obj(content, "message_content")
        body = _opt_str(c.get("body"), "body")
        body_hash = _opt_str(c.get("hash"), "hash")
        decoded = c.get("decoded")
        if isinstance(decoded, dict) and decoded.get("type") == "text_comment":
            comment = _opt_str(decoded.get("comment"), "comment")
    return V3Message(
        hash=_str(o.get("hash"), "hash"),
        hash_norm=_opt_str(o.get("hash_norm"), "hash_norm"),
        source=_opt_str(o.get("source"), "source"),
        destination=_opt_str(o.get("destination"), "destination"),
        value=_opt_int(o.get("value"), "value"),
        fwd_fee=_opt_int(o.get("fwd_fee"), "fwd_fee"),
        created_lt=_opt_int(o.get("created_lt"), "created_lt"),
        # The spec says integer; indexers also send "0x0f8a7ea5": accept both.
        opcode=_opt_int(o.get("opcode"), "opcode"),
        bounce=_opt_bool(o.get("bounce"), "bounce"),
        bounced=_opt_bool(o.get("bounced"), "bounced"),
        body=body,
        comment=comment,
        body_hash=body_hash,
    )


def parse_v3_transaction(v: Any) -> V3Transaction:
    o = _obj(v, "transaction")
    desc = _obj(o.get("description"), "description")
    compute = _obj(desc.get("compute_ph") or {}, "compute_ph")
    action = _obj(desc.get("action") or {}, "action")
    return V3Transaction(
        account=_str(o.get("account"), "account"),
        hash=_str(o.get("hash"), "hash"),
        lt=_int(o.get("lt"), "lt"),
        now=_int(o.get("now"), "now"),
        mc_block_seqno=_opt_int(o.get("mc_block_seqno"), "mc_block_seqno"),
        orig_status=_str(o.get("orig_status"), "orig_status"),
        end_status=_str(o.get("end_status"), "end_status"),
        total_fees=_int(o.get("total_fees"), "total_fees"),
        aborted=bool(_opt_bool(desc.get("aborted"), "aborted")),
        compute_skipped=bool(_opt_bool(compute.get("skipped", True), "skipped")),
        compute_success=_opt_bool(compute.get("success"), "success"),
        compute_exit_code=_opt_int(compute.get("exit_code"), "exit_code"),
        action_success=_opt_bool(action.get("success"), "action success"),
        action_result_code=_opt_int(action.get("result_code"), "result_code"),
        skipped_actions=_opt_int(action.get("skipped_actions"), "skipped_actions"),
        in_msg=parse_v3_message(o["in_msg"]) if o.get("in_msg") else None,
        out_msgs=tuple(parse_v3_message(m) for m in _list(o.get("out_msgs"), "out_msgs")),
        description=desc,
    )


def parse_transactions_page(v: Any) -> TransactionsPage:
    o = _obj(v, "response")
    book: dict[str, str] = {}
    for raw, entry in _obj(o.get("address_book") or {}, "address_book").items():
        book[raw] = _str(_obj(entry, "address_book entry").get("user_friendly"), "user_friendly")
    txs = tuple(parse_v3_transaction(t) for t in _list(o.get("transactions"), "transactions"))
    return TransactionsPage(txs, book)


def parse_jetton_wallet(v: Any) -> JettonWallet:
    o = _obj(v, "jetton wallet")
    return JettonWallet(
        address=_str(o.get("address"), "address"),
        balance=_int(o.get("balance"), "balance"),
        owner=_str(o.get("owner"), "owner"),
        jetton=_str(o.get("jetton"), "jetton"),
        last_transaction_lt=_opt_int(o.get("last_transaction_lt"), "last_transaction_lt"),
        code_hash=_opt_str(o.get("code_hash"), "code_hash"),
        data_hash=_opt_str(o.get("data_hash"), "data_hash"),
    )


# ------------------------------------------------------- results of the client's methods (v2)


def parse_sent_message(r: Any) -> SentMessage:
    o = _obj(r, "result")
    return SentMessage(_str(o.get("hash"), "hash"), _str(o.get("hash_norm"), "hash_norm"))


def parse_transactions(r: Any) -> list[Transaction]:
    return [parse_transaction(t) for t in _list(r, "result")]


def parse_get_method_result(r: Any) -> GetMethodResult:
    o = _obj(r, "result")
    return GetMethodResult(
        _int(o.get("exit_code"), "exit_code"),
        _int(o.get("gas_used"), "gas_used"),
        _list(o.get("stack"), "stack"),
    )


def parse_address_information(r: Any) -> AddressInformation:
    o = _obj(r, "result")
    return AddressInformation(
        balance=_int(o.get("balance"), "balance"),
        state=_str(o.get("state"), "state"),
        code=_str(o.get("code", ""), "code"),
        data=_str(o.get("data", ""), "data"),
        last_transaction_id=parse_transaction_id(o.get("last_transaction_id")),
        frozen_hash=_str(o.get("frozen_hash", ""), "frozen_hash"),
        sync_utime=_int(o.get("sync_utime"), "sync_utime"),
        block_id=parse_block_id(o.get("block_id")),
    )


def parse_wallet_information(r: Any) -> WalletInformation:
    o = _obj(r, "result")
    wallet = _opt_bool(o.get("wallet"), "wallet")
    if wallet is None:
        raise BadShape("wallet is missing")
    return WalletInformation(
        wallet=wallet,
        balance=_int(o.get("balance"), "balance"),
        account_state=_str(o.get("account_state"), "account_state"),
        last_transaction_id=parse_transaction_id(o.get("last_transaction_id")),
        wallet_type=_opt_str(o.get("wallet_type"), "wallet_type"),
        seqno=_opt_int(o.get("seqno"), "seqno"),
        wallet_id=_opt_int(o.get("wallet_id"), "wallet_id"),
    )


def parse_balance(r: Any) -> int:
    return _int(r, "balance")


def parse_config_param(r: Any) -> str:
    config = _obj(_obj(r, "result").get("config"), "config")
    return _str(config.get("bytes"), "config.bytes")


def parse_out_msg_queue_size(r: Any) -> int:
    shards = _list(_obj(r, "result").get("shards"), "shards")
    return sum(_int(_obj(x, "shard").get("size"), "size") for x in shards)


def parse_masterchain_info(r: Any) -> MasterchainInfo:
    o = _obj(r, "result")
    return MasterchainInfo(
        parse_block_id(o.get("last")),
        parse_block_id(o.get("init")),
        _str(o.get("state_root_hash"), "state_root_hash"),
    )


def parse_estimated_fees(r: Any) -> EstimatedFees:
    o = _obj(r, "result")
    return EstimatedFees(
        parse_fees(o.get("source_fees")),
        tuple(parse_fees(f) for f in _list(o.get("destination_fees"), "destination_fees")),
    )


# ------------------------------------------------------- results of the client's methods (v3)


def parse_jetton_wallets(r: Any) -> list[JettonWallet]:
    o = _obj(r, "response")
    return [parse_jetton_wallet(w) for w in _list(o.get("jetton_wallets"), "jetton_wallets")]
