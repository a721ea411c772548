"""toncenter API v2 over the local chain, following toncenter's OpenAPI description."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from ton_core import CONTRACT_CODES, Cell, ContractVersion, StateInit, to_cell
from ton_core.tlb.transaction import ExternalMsgInfo, MessageAny

from tonrail.localnet.boc import (
    b64,
    cell_from,
    friendly,
    hash_b64,
    parse_address,
    parse_hash,
    raw_address,
)
from tonrail.localnet.chain import AccountState, Chain, SendError
from tonrail.localnet.config import parse_params
from tonrail.localnet.render import decode_tx, v2_transaction
from tonrail.localnet.stack import StackError, stack_from_v2, stack_to_v2


class ApiError(Exception):
    """An error toncenter reports as `{"ok": false, "error": ..., "code": ...}`."""

    def __init__(self, code: int, error: str) -> None:
        super().__init__(error)
        self.code = code
        self.error = error


def error_response(code: int, error: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": error, "code": code}, status_code=code)


def refused(exc: SendError) -> ApiError:
    """A message the account refuses, in toncenter's documented words (500_send): the exit
    code of the compute phase that did not accept it; without one, the liteserver's text."""
    if exc.exit_code is not None:
        return ApiError(500, f"Exit code {exc.exit_code} != 0")
    return ApiError(500, f"LITE_SERVER_UNKNOWN: {exc}")


_WALLET_TYPES: dict[bytes, str] = {}
for _version, _name in [
    (ContractVersion.WalletV3R1, "wallet v3 r1"),
    (ContractVersion.WalletV3R2, "wallet v3 r2"),
    (ContractVersion.WalletV4R1, "wallet v4 r1"),
    (ContractVersion.WalletV4R2, "wallet v4 r2"),
    (ContractVersion.WalletV5R1, "wallet v5 r1"),
]:
    _WALLET_TYPES[bytes(to_cell(CONTRACT_CODES[_version]).hash)] = _name
HIGHLOAD_V3_CODE_HASH = bytes(to_cell(CONTRACT_CODES[ContractVersion.WalletHighloadV3R1]).hash)


def block_id(seqno: int, workchain: int = -1) -> dict[str, Any]:
    """A block id; local blocks have no real root/file hashes, so they derive from the seqno."""
    seed = f"tonrail-localnet/{workchain}/{seqno}".encode()
    return {
        "@type": "ton.blockIdExt",
        "workchain": workchain,
        "shard": "-9223372036854775808",
        "seqno": seqno,
        "root_hash": hash_b64(hashlib.sha256(seed + b"/root").digest()),
        "file_hash": hash_b64(hashlib.sha256(seed + b"/file").digest()),
    }


def tx_id(lt: int, h: bytes) -> dict[str, Any]:
    return {"@type": "internal.transactionId", "lt": str(lt), "hash": hash_b64(h)}


def _state_name(acc: AccountState) -> str:
    return "uninitialized" if acc.status in ("uninit", "nonexist") else acc.status


def _wallet_fields(acc: AccountState) -> tuple[str | None, dict[str, Any]]:
    if acc.code is None or acc.data is None:
        return None, {}
    kind = _WALLET_TYPES.get(bytes(acc.code.hash))
    if kind is None:
        return None, {}
    s = acc.data.begin_parse()
    if kind == "wallet v5 r1":
        allowed = bool(s.load_bit())
        seqno = int(s.load_uint(32))
        return kind, {
            "seqno": seqno,
            "wallet_id": int(s.load_int(32)),
            "is_signature_allowed": allowed,
        }
    seqno = int(s.load_uint(32))
    return kind, {"seqno": seqno, "wallet_id": int(s.load_uint(32))}


class ToncenterV2:
    """The v2 methods, callable by name from the REST routes and from jsonRPC."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._config_params: dict[int, Cell] | None = None
        self.methods: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "getAddressInformation": self.get_address_information,
            "getExtendedAddressInformation": self.get_extended_address_information,
            "getWalletInformation": self.get_wallet_information,
            "getAddressBalance": self.get_address_balance,
            "getAddressState": self.get_address_state,
            "getTransactions": self.get_transactions,
            "runGetMethod": self.run_get_method,
            "sendBoc": self.send_boc,
            "sendBocReturnHash": self.send_boc_return_hash,
            "estimateFee": self.estimate_fee,
            "getMasterchainInfo": self.get_masterchain_info,
            "getConfigParam": self.get_config_param,
            "getConfigAll": self.get_config_all,
            "tryLocateTx": self.try_locate_tx,
            "tryLocateResultTx": self.try_locate_tx,
            "tryLocateSourceTx": self.try_locate_source_tx,
            "getOutMsgQueueSize": self.get_out_msg_queue_size,
            "getBlockTransactions": self.get_block_transactions,
            "getShards": self.get_shards,
            # The method's name in the jsonRPC of toncenter's older API, which @ton/ton's
            # getWorkchainShards calls: served under both names, REST and jsonRPC.
            "shards": self.get_shards,
        }

    # -- parameter helpers -------------------------------------------------------------

    @staticmethod
    def _req(params: dict[str, Any], name: str) -> Any:
        if name not in params or params[name] in (None, ""):
            raise ApiError(422, f"missing required parameter: {name}")
        return params[name]

    def _account(self, params: dict[str, Any]) -> AccountState:
        """The account at `address` (errors in toncenter's words: 422_address)."""
        value = params.get("address")
        if value in (None, ""):
            raise ApiError(422, "empty address")
        seqno = self._int(params, "seqno")
        if seqno is not None and seqno <= 0:
            raise ApiError(422, "seqno should be positive")
        try:
            return self.chain.account(parse_address(str(value)))
        except ValueError as exc:
            raise ApiError(422, "failed to parse address") from exc

    @staticmethod
    def _int(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
        value = params.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise ApiError(422, f"failed to parse {name}")
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ApiError(422, f"failed to parse {name}") from exc

    def _last_block(self) -> dict[str, Any]:
        return block_id(self.chain.seqno)

    # -- accounts ----------------------------------------------------------------------

    async def get_address_information(self, params: dict[str, Any]) -> Any:
        acc = self._account(params)
        return {
            "@type": "raw.fullAccountState",
            "balance": str(acc.balance),
            "extra_currencies": [],
            "code": b64(acc.code) if acc.code is not None else "",
            "data": b64(acc.data) if acc.data is not None else "",
            "last_transaction_id": tx_id(acc.last_lt, acc.last_hash),
            "block_id": self._last_block(),
            "frozen_hash": hash_b64(acc.frozen_hash) if acc.frozen_hash else "",
            "sync_utime": self.chain.now(),
            "state": _state_name(acc),
        }

    async def get_extended_address_information(self, params: dict[str, Any]) -> Any:
        acc = self._account(params)
        kind, fields = _wallet_fields(acc)
        state: dict[str, Any]
        if acc.status in ("uninit", "nonexist"):
            state = {"@type": "uninited.accountState", "frozen_hash": ""}
        elif kind == "wallet v4 r2":
            state = {"@type": "wallet.v4.accountState", **fields}
        elif kind in ("wallet v3 r1", "wallet v3 r2"):
            state = {"@type": "wallet.v3.accountState", **fields}
        else:
            state = {
                "@type": "raw.accountState",
                "code": b64(acc.code) if acc.code is not None else "",
                "data": b64(acc.data) if acc.data is not None else "",
                "frozen_hash": hash_b64(acc.frozen_hash) if acc.frozen_hash else "",
            }
        return {
            "@type": "fullAccountState",
            "address": {"@type": "accountAddress", "account_address": friendly(acc.address)},
            "balance": str(acc.balance),
            "extra_currencies": [],
            "last_transaction_id": tx_id(acc.last_lt, acc.last_hash),
            "block_id": self._last_block(),
            "sync_utime": self.chain.now(),
            "account_state": state,
            "revision": 0,
        }

    async def get_wallet_information(self, params: dict[str, Any]) -> Any:
        acc = self._account(params)
        kind, fields = _wallet_fields(acc)
        out: dict[str, Any] = {
            "@type": "ext.accounts.walletInformation",
            "wallet": kind is not None,
            "balance": str(acc.balance),
            "account_state": _state_name(acc),
            "last_transaction_id": tx_id(acc.last_lt, acc.last_hash),
        }
        if kind is not None:
            out["wallet_type"] = kind
            out.update(fields)
        return out

    async def get_address_balance(self, params: dict[str, Any]) -> Any:
        return str(self._account(params).balance)

    async def get_address_state(self, params: dict[str, Any]) -> Any:
        return _state_name(self._account(params))

    # -- transactions ------------------------------------------------------------------

    async def get_transactions(self, params: dict[str, Any]) -> Any:
        acc = self._account(params)
        limit = self._int(params, "limit", 10)
        if limit is None or limit <= 0:
            raise ApiError(422, "limit should be positive")
        if limit > 1000:
            raise ApiError(422, "limit should be less or equal 1000")
        lt = self._int(params, "lt")
        to_lt = self._int(params, "to_lt", 0) or 0
        if (lt is not None and lt < 0) or to_lt < 0:
            raise ApiError(422, "lt should be non-negative")
        start_hash = params.get("hash") or None
        if (lt is None) != (start_hash is None):
            raise ApiError(422, "lt and hash should be used together")
        if lt is not None and start_hash is not None:
            try:
                wanted = parse_hash(str(start_hash))
            except ValueError as exc:
                raise ApiError(422, "failed to parse hash") from exc
            first = self.chain.store.transaction(wanted)
            if first is None or first.lt != lt or first.account != raw_address(acc.address):
                raise ApiError(422, "LITE_SERVER_UNKNOWN: lt not in db")
        account = raw_address(acc.address)
        self.chain.tx_cells.follow(account)  # its new transactions: parsed once
        rows = self.chain.store.account_transactions(
            account, limit=limit, max_lt=lt, min_lt=to_lt + 1 if to_lt else None
        )
        return [v2_transaction(decode_tx(r, self.chain.tx_cells)) for r in rows]

    async def try_locate_tx(self, params: dict[str, Any]) -> Any:
        """The transaction that consumed the message (source, destination, created_lt)."""
        return self._locate(params, "in")

    async def try_locate_source_tx(self, params: dict[str, Any]) -> Any:
        """The transaction that sent the message (source, destination, created_lt)."""
        return self._locate(params, "out")

    def _locate(self, params: dict[str, Any], direction: str) -> Any:
        """The transaction that holds the message as its inbound ("in") or outbound ("out") one."""
        ends = []
        for name in ("source", "destination"):
            value = params.get(name)
            if value in (None, ""):
                raise ApiError(422, f"empty {name} address")
            try:
                ends.append(raw_address(parse_address(str(value))))
            except ValueError as exc:
                raise ApiError(422, "failed to parse address") from exc
        src, dest = ends
        created_lt = self._int(params, "created_lt")
        if created_lt is None:
            raise ApiError(422, "failed to parse created_lt")
        if created_lt < 0:
            raise ApiError(422, "created_lt should be non-negative")
        for m in self.chain.store.messages(
            source=src, destination=dest, direction=direction, limit=1000
        ):
            if m.created_lt == created_lt:
                row = self.chain.store.transaction(m.tx_hash)
                if row is not None:
                    return v2_transaction(decode_tx(row, self.chain.tx_cells))
        raise ApiError(404, "transaction not found")

    # -- get-methods -------------------------------------------------------------------

    async def run_get_method(self, params: dict[str, Any]) -> Any:
        acc = self._account(params)
        method = self._req(params, "method")
        stack_in = params.get("stack")
        if stack_in in (None, ""):
            stack_in = []
        if not isinstance(stack_in, list):
            raise ApiError(422, "Stack should be array")
        try:
            stack = stack_from_v2(stack_in)
        except StackError as exc:
            raise ApiError(exc.status, str(exc)) from exc
        except (ValueError, TypeError) as exc:
            raise ApiError(422, f"invalid stack: {exc}") from exc
        name_or_id: str | int = int(method) if str(method).lstrip("-").isdigit() else str(method)
        if acc.status != "active":
            # Toncenter reports a get-method on an inactive account as exit code -13.
            return self._run_result(-13, 0, [])
        result = await asyncio.to_thread(self.chain.run_get_method, acc.address, name_or_id, stack)
        if not result.success or result.stack is None:
            raise ApiError(500, f"LITE_SERVER_UNKNOWN: {result.error}")
        return self._run_result(result.vm_exit_code, result.gas_used, stack_to_v2(result.stack))

    def _run_result(self, exit_code: int, gas: int, stack: list[Any]) -> dict[str, Any]:
        return {
            "@type": "smc.runResult",
            "gas_used": gas,
            "stack": stack,
            "exit_code": exit_code,
            "block_id": self._last_block(),
            "last_transaction_id": tx_id(0, b"\0" * 32),
        }

    # -- sending -----------------------------------------------------------------------

    def _send(self, params: dict[str, Any]) -> tuple[bytes, bytes]:
        boc = params.get("boc")
        if boc in (None, ""):
            raise ApiError(422, "empty boc")
        try:
            return self.chain.send_external(str(boc))
        except SendError as exc:
            if exc.malformed:
                raise ApiError(422, str(exc)) from exc
            raise refused(exc) from exc

    async def send_boc(self, params: dict[str, Any]) -> Any:
        self._send(params)
        return {"@type": "ok"}

    async def send_boc_return_hash(self, params: dict[str, Any]) -> Any:
        h, norm = self._send(params)
        return {"@type": "raw.extMessageInfo", "hash": hash_b64(h), "hash_norm": hash_b64(norm)}

    async def estimate_fee(self, params: dict[str, Any]) -> Any:
        acc = self._account(params)
        try:
            body = cell_from(str(self._req(params, "body")))
            init_code = params.get("init_code")
            init_data = params.get("init_data")
            init = None
            if init_code or init_data:
                init = StateInit(
                    code=cell_from(str(init_code)) if init_code else None,
                    data=cell_from(str(init_data)) if init_data else None,
                )
        except ApiError:
            raise
        except Exception as exc:
            raise ApiError(422, f"invalid BOC: {exc}") from exc
        ignore = params.get("ignore_chksig", True)
        ignore_chksig = ignore not in (False, "false", "0", 0)
        msg = MessageAny(ExternalMsgInfo(None, acc.address, 0), init, body).serialize()
        try:
            fees = await asyncio.to_thread(
                self.chain.estimate_fee, msg, ignore_chksig=ignore_chksig
            )
        except SendError as exc:
            raise refused(exc) from exc
        return {
            "@type": "query.fees",
            "source_fees": {
                "@type": "fees",
                "in_fwd_fee": fees.in_fwd_fee,
                "storage_fee": fees.storage_fee,
                "gas_fee": fees.gas_fee,
                "fwd_fee": fees.fwd_fee,
            },
            "destination_fees": [],
        }

    # -- blocks and config -------------------------------------------------------------

    async def get_masterchain_info(self, params: dict[str, Any]) -> Any:
        return {
            "@type": "blocks.masterchainInfo",
            "last": self._last_block(),
            "state_root_hash": block_id(self.chain.seqno)["root_hash"],
            "init": block_id(0),
        }

    def _params(self) -> dict[int, Cell]:
        if self._config_params is None:
            self._config_params = parse_params(self.chain.config_b64)
        return self._config_params

    async def get_config_param(self, params: dict[str, Any]) -> Any:
        pid = self._int(params, "config_id")
        if pid is None:
            raise ApiError(422, "failed to parse config_id")
        if pid < 0:
            raise ApiError(422, "param should be non-negative")
        cell = self._params().get(pid)
        if cell is None:
            raise ApiError(422, f"config param {pid} not found")
        return {"@type": "configInfo", "config": {"@type": "tvm.cell", "bytes": b64(cell)}}

    async def get_config_all(self, params: dict[str, Any]) -> Any:
        return {
            "@type": "configInfo",
            "config": {"@type": "tvm.cell", "bytes": self.chain.config_b64},
        }

    async def get_shards(self, params: dict[str, Any]) -> Any:
        """The basechain shards at masterchain block `seqno` (required, as toncenter's spec
        says): one shard whose block seqno equals the masterchain seqno."""
        seqno = self._int(params, "seqno")
        if seqno is None:
            raise ApiError(422, "seqno required")
        if seqno <= 0:
            raise ApiError(422, "seqno should be positive")
        if seqno > self.chain.seqno:
            raise ApiError(422, "LITE_SERVER_UNKNOWN: block not found")
        return {"@type": "blocks.shards", "shards": [block_id(seqno, 0)]}

    async def get_block_transactions(self, params: dict[str, Any]) -> Any:
        """Short ids of a block's transactions; each local block is one basechain block."""
        for name in ("workchain", "shard", "seqno"):
            if params.get(name) in (None, ""):
                raise ApiError(422, f"{name} required")
        workchain = self._int(params, "workchain") or 0
        self._int(params, "shard")
        seqno = self._int(params, "seqno") or 0
        if seqno > self.chain.seqno or seqno < 1:
            raise ApiError(422, "LITE_SERVER_UNKNOWN: block not found")
        count = self._int(params, "count", 40)
        if count is None or count <= 0:
            raise ApiError(422, "count should be positive")
        if count > 10000:
            raise ApiError(422, "count should be less or equal 10000")
        after_lt = self._int(params, "after_lt", 0) or 0
        if after_lt < 0:
            raise ApiError(422, "after_lt should be non-negative")
        if (params.get("after_lt") in (None, "")) != (params.get("after_hash") in (None, "")):
            raise ApiError(422, "after_lt and after_hash should be used together")
        rows = (
            self.chain.store.block_transactions(seqno, after_lt=after_lt, limit=count + 1)
            if workchain == 0
            else []
        )
        return {
            "@type": "blocks.transactions",
            "id": block_id(seqno, workchain),
            "req_count": count,
            "incomplete": len(rows) > count,
            "transactions": [
                {
                    "@type": "blocks.shortTxId",
                    "mode": 135,
                    "account": account,
                    "lt": str(lt),
                    "hash": hash_b64(h),
                }
                for account, lt, h in rows[:count]
            ],
        }

    async def get_out_msg_queue_size(self, params: dict[str, Any]) -> Any:
        return {
            "@type": "blocks.outMsgQueueSizes",
            "shards": [
                {
                    "@type": "blocks.outMsgQueueSize",
                    "id": block_id(self.chain.seqno, 0),
                    "size": self.chain.queue_size(),
                }
            ],
            "ext_msg_queue_size_limit": 0,
        }

    # -- dispatch ----------------------------------------------------------------------

    async def call(self, name: str, params: dict[str, Any]) -> Any:
        handler = self.methods.get(name)
        if handler is None:
            raise ApiError(404, f"method {name} not found")
        return await handler(params)


async def json_object(
    request: Request, error: type[ApiError] = ApiError, status: int = 422
) -> dict[str, Any]:
    """The request body, which must be a JSON object (else `error` with `status`)."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise error(status, "request body must be JSON") from exc
    if not isinstance(body, dict):
        raise error(status, "request body must be a JSON object")
    return body


async def _params_of(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        params.update(await json_object(request))
    return params


def create_router(chain: Chain) -> APIRouter:
    api = ToncenterV2(chain)
    router = APIRouter()

    @router.post("/jsonRPC")
    async def json_rpc(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return error_response(422, "request body must be JSON")
        rid = body.get("id") if isinstance(body, dict) else None
        try:
            if not isinstance(body, dict) or not isinstance(body.get("method"), str):
                raise ApiError(422, "jsonRPC needs a method")
            params = body.get("params")
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise ApiError(422, "params must contain an object")
            result = await api.call(body["method"], params)
        except ApiError as exc:
            return JSONResponse(
                {
                    "ok": False,
                    "error": exc.error,
                    "code": exc.code,
                    "@extra": "",
                    "jsonrpc": "2.0",
                    "id": rid,
                },
                status_code=exc.code,
            )
        return JSONResponse(
            {"ok": True, "result": result, "@extra": "", "jsonrpc": "2.0", "id": rid}
        )

    @router.api_route("/{method}", methods=["GET", "POST"])
    async def rest(method: str, request: Request) -> JSONResponse:
        try:
            result = await api.call(method, await _params_of(request))
        except ApiError as exc:
            return error_response(exc.code, exc.error)
        return JSONResponse({"ok": True, "result": result, "@extra": ""})

    return router
