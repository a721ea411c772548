"""A subset of toncenter API v3 (the indexer API) over the local chain."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from ton_core import Address, Cell
from ton_core.tlb.transaction import ExternalMsgInfo, MessageAny

from tonrail.localnet.boc import (
    b64,
    cell_from,
    external_route,
    friendly,
    hash_b64,
    parse_address,
    parse_hash,
    raw_address,
)
from tonrail.localnet.chain import Chain, SendError
from tonrail.localnet.render import (
    DecodedMessage,
    DecodedTx,
    action_phase,
    bounce_phase,
    compute_phase,
    decode_tx,
)
from tonrail.localnet.stack import stack_from_v3, stack_to_v3
from tonrail.localnet.store import TxRow
from tonrail.localnet.toncenter_v2 import (
    HIGHLOAD_V3_CODE_HASH,
    ApiError,
    _wallet_fields,
    block_id,
    json_object,
)

_JETTON_TRANSFER = 0x0F8A7EA5
_JETTON_INTERNAL_TRANSFER = 0x178D4519


class V3Error(ApiError):
    """An error toncenter v3 reports as `{"error": ..., "code": ...}` (no "ok" field): its
    spec's `RequestError`, with status 400 for every bad request."""


def _err(code: int, error: str) -> JSONResponse:
    return JSONResponse({"error": error, "code": code}, status_code=code)


def _addr(params: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = params.get(name)
    if value in (None, ""):
        if required:
            raise V3Error(400, f"missing required parameter: {name}")
        return None
    try:
        return raw_address(parse_address(str(value)))
    except ValueError as exc:
        raise V3Error(400, f"invalid address in {name}") from exc


def _int(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(str(value))
    except ValueError as exc:
        raise V3Error(400, f"{name} must be an integer") from exc


def _compact(value: Any) -> Any:
    """Drop null fields, as the Go indexer behind toncenter v3 omits empty ones."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def _opcode(op: int | None) -> int | None:
    """v3 reports opcodes as signed 32-bit integers."""
    if op is None:
        return None
    return op - (1 << 32) if op >= 1 << 31 else op


def _raw_upper(raw: str | None) -> str | None:
    """v3 spells raw addresses in upper-case hex (`0:ABCD...`)."""
    return raw.upper() if raw else None


def _message(m: DecodedMessage, in_tx: bytes | None, out_tx: bytes | None) -> dict[str, Any]:
    norm = hash_b64(external_route(m.cell)[1]) if m.kind == "ext_in" else None
    return {
        "hash": hash_b64(m.hash),
        "hash_norm": norm,
        "source": _raw_upper(m.source),
        "destination": _raw_upper(m.destination),
        "value": str(m.value) if m.kind == "int" else None,
        "value_extra_currencies": {},
        "fwd_fee": str(m.fwd_fee) if m.kind == "int" else None,
        "ihr_fee": str(m.ihr_fee) if m.kind == "int" else None,
        "import_fee": str(m.import_fee) if m.kind == "ext_in" else None,
        "created_lt": str(m.created_lt) if m.kind != "ext_in" else None,
        "created_at": str(m.created_at) if m.kind != "ext_in" else None,
        "opcode": _opcode(m.opcode),
        "ihr_disabled": True if m.kind == "int" else None,
        "bounce": m.bounce,
        "bounced": m.bounced,
        "in_msg_tx_hash": hash_b64(in_tx) if in_tx else None,
        "out_msg_tx_hash": hash_b64(out_tx) if out_tx else None,
        "message_content": {
            "hash": hash_b64(bytes(m.body.hash)),
            "body": b64(m.body),
            "decoded": {"type": "text_comment", "comment": m.comment}
            if m.comment is not None
            else None,
        },
        "init_state": {"hash": hash_b64(bytes(m.init.hash)), "body": b64(m.init)}
        if m.init is not None
        else None,
    }


def _status(s: Any) -> str:
    name = str(getattr(s, "type_", s))
    return {"nonexist": "nonexist", "uninit": "uninit", "frozen": "frozen"}.get(name, "active")


def transaction_v3(d: DecodedTx) -> dict[str, Any]:
    tx = d.tx
    desc = tx.description
    storage = getattr(desc, "storage_ph", None)
    credit = getattr(desc, "credit_ph", None)
    return {
        "account": _raw_upper(d.row.account),
        "hash": hash_b64(d.row.hash),
        "lt": str(d.row.lt),
        "now": d.row.utime,
        "mc_block_seqno": d.row.mc_seqno,
        "trace_id": hash_b64(d.row.trace_id),
        "trace_external_hash": None,
        "prev_trans_hash": hash_b64(tx.prev_trans_hash),
        "prev_trans_lt": str(tx.prev_trans_lt),
        "orig_status": _status(tx.orig_status),
        "end_status": _status(tx.end_status),
        "total_fees": str(d.total_fees),
        "total_fees_extra_currencies": {},
        "description": {
            "type": "ord",
            "aborted": bool(getattr(desc, "aborted", False)),
            "destroyed": bool(getattr(desc, "destroyed", False)),
            "credit_first": bool(getattr(desc, "credit_first", False)),
            "storage_ph": {
                "storage_fees_collected": str(storage.storage_fees_collected),
                "status_change": getattr(storage.status_change, "type_", "unchanged"),
            }
            if storage is not None
            else None,
            "credit_ph": {"credit": str(credit.credit.grams)} if credit is not None else None,
            "compute_ph": compute_phase(d),
            "action": action_phase(d),
            "bounce": bounce_phase(d),
        },
        "block_ref": {"workchain": 0, "shard": "8000000000000000", "seqno": d.row.mc_seqno},
        "in_msg": _message(d.in_msg, d.row.hash, None) if d.in_msg else None,
        "out_msgs": [_message(m, None, d.row.hash) for m in d.out_msgs],
        "account_state_before": None,
        "account_state_after": None,
        "emulated": False,
        "finality": 2,  # finalized: a local block is final when written
    }


def _book(rows: list[DecodedTx]) -> dict[str, Any]:
    book: dict[str, Any] = {}
    for d in rows:
        for raw in [d.row.account] + [
            a for m in [d.in_msg, *d.out_msgs] if m for a in (m.source, m.destination) if a
        ]:
            key = raw.upper()
            if key not in book:
                book[key] = {"user_friendly": friendly(Address(raw)), "domain": None}
    return book


RENDERED_KEPT = 8192  # transactions kept rendered: a client following its accounts lists them


class ToncenterV3:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        # A transaction never changes once in a block: parsed and rendered once, by hash.
        self._rendered: OrderedDict[bytes, tuple[dict[str, Any], dict[str, Any]]] = OrderedDict()

    def _render(self, row: TxRow) -> tuple[dict[str, Any], dict[str, Any]]:
        """The transaction as v3 renders it, with its address book entries."""
        hit = self._rendered.get(row.hash)
        if hit is not None:
            self._rendered.move_to_end(row.hash)
            return hit
        decoded = decode_tx(row, self.chain.tx_cells)
        hit = (transaction_v3(decoded), _book([decoded]))
        self._rendered[row.hash] = hit
        if len(self._rendered) > RENDERED_KEPT:
            self._rendered.popitem(last=False)
        return hit

    def _txs(self, rows: list[TxRow]) -> dict[str, Any]:
        lag = self.chain.faults.index_lag_blocks
        if lag:  # the indexer behind the node, as toncenter's v3 may be
            rows = [r for r in rows if r.mc_seqno <= self.chain.seqno - lag]
        rendered = [self._render(r) for r in rows]
        book: dict[str, Any] = {}
        for _, entries in rendered:
            book.update(entries)
        return {"transactions": [tx for tx, _ in rendered], "address_book": book}

    def transactions(self, p: dict[str, Any]) -> dict[str, Any]:
        store = self.chain.store
        limit = _int(p, "limit", 10) or 10
        offset = _int(p, "offset", 0) or 0
        asc = str(p.get("sort", "desc")) == "asc"
        if p.get("hash"):
            row = store.transaction(self._hash(p["hash"]))
            return self._txs([row] if row else [])
        account = _addr(p, "account", required=False)
        start_lt, end_lt = _int(p, "start_lt"), _int(p, "end_lt")
        lt = _int(p, "lt")
        if lt is not None:
            start_lt = end_lt = lt
        if account is not None:
            self.chain.tx_cells.follow(account)  # its new transactions: parsed once
            rows = store.account_transactions(
                account, limit=limit, offset=offset, min_lt=start_lt, max_lt=end_lt, ascending=asc
            )
        else:
            rows = store.transactions(
                limit=limit,
                offset=offset,
                ascending=asc,
                min_lt=start_lt,
                max_lt=end_lt,
                mc_seqno=_int(p, "mc_seqno"),
            )
        return self._txs(rows)

    @staticmethod
    def _hash(value: Any) -> bytes:
        try:
            return parse_hash(str(value))
        except ValueError as exc:
            raise V3Error(400, str(exc)) from exc

    def transactions_by_message(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("msg_hash"):
            raise V3Error(400, "missing required parameter: msg_hash")
        h = self._hash(p["msg_hash"])
        direction = p.get("direction")
        if direction not in (None, "", "in", "out"):
            raise V3Error(400, "direction must be in or out")
        msgs = self.chain.store.messages(msg_hash=h, direction=direction or None)
        rows = [r for m in msgs if (r := self.chain.store.transaction(m.tx_hash)) is not None]
        return self._txs(rows)

    def messages(self, p: dict[str, Any]) -> dict[str, Any]:
        store = self.chain.store
        direction = p.get("direction")
        rows = store.messages(
            msg_hash=self._hash(p["msg_hash"]) if p.get("msg_hash") else None,
            source=_addr(p, "source", required=False),
            destination=_addr(p, "destination", required=False),
            direction=direction if direction in ("in", "out") else None,
            limit=_int(p, "limit", 10) or 10,
            offset=_int(p, "offset", 0) or 0,
        )
        out: dict[bytes, dict[str, Any]] = {}
        decoded_all: list[DecodedTx] = []
        for m in rows:
            row = store.transaction(m.tx_hash)
            if row is None:
                continue
            d = decode_tx(row, self.chain.tx_cells)
            decoded_all.append(d)
            msg = (
                d.in_msg
                if m.direction == "in"
                else next((o for o in d.out_msgs if o.hash == m.hash), None)
            )
            if msg is None:
                continue
            entry = out.setdefault(m.hash, _message(msg, None, None))
            key = "in_msg_tx_hash" if m.direction == "in" else "out_msg_tx_hash"
            entry[key] = hash_b64(m.tx_hash)
        return {"messages": list(out.values()), "address_book": _book(decoded_all)}

    def send(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("boc"):
            raise V3Error(400, "missing required parameter: boc")
        try:
            h, norm = self.chain.send_external(str(p["boc"]))
        except SendError as exc:
            raise V3Error(400 if exc.malformed else 500, str(exc)) from exc
        return {"message_hash": hash_b64(h), "message_hash_norm": hash_b64(norm)}

    def _jetton_wallet(self, address: Address) -> dict[str, Any] | None:
        acc = self.chain.account(address)
        if acc.status != "active" or acc.data is None or acc.code is None:
            return None
        if bytes(acc.code.hash) != bytes(self.chain.genesis.jetton_wallet_code.hash):
            return None
        s = acc.data.begin_parse()
        balance = s.load_coins()
        owner: Any = s.load_address()
        master: Any = s.load_address()
        return {
            "address": _raw_upper(raw_address(address)),
            "balance": str(balance),
            "owner": _raw_upper(raw_address(owner)),
            "jetton": _raw_upper(raw_address(master)),
            "last_transaction_lt": str(acc.last_lt),
            "code_hash": hash_b64(bytes(acc.code.hash)),
            "data_hash": hash_b64(bytes(acc.data.hash)),
            "mintless_info": None,
        }

    def jetton_wallets(self, p: dict[str, Any]) -> dict[str, Any]:
        g = self.chain.genesis
        master = _addr(p, "jetton_address", required=False)
        if master is not None and master != raw_address(g.usdt_master):
            return {"jetton_wallets": [], "address_book": {}}
        candidates: list[Address] = []
        for key in ("address",):
            for value in _many(p.get(key)):
                candidates.append(parse_address(value))
        for value in _many(p.get("owner_address")):
            candidates.append(g.jetton_wallet_address(parse_address(value)))
        if not candidates:
            raise V3Error(400, "give address or owner_address")
        wallets = [w for a in candidates if (w := self._jetton_wallet(a)) is not None]
        return {"jetton_wallets": wallets, "address_book": {}}

    def jetton_transfers(self, p: dict[str, Any]) -> dict[str, Any]:
        """Transfers seen as the `transfer` a jetton wallet executed (TEP-74 op 0x0f8a7ea5)."""
        g = self.chain.genesis
        wallets: list[str] = []
        for value in _many(p.get("owner_address")):
            wallets.append(raw_address(g.jetton_wallet_address(parse_address(value))))
        for value in _many(p.get("jetton_wallet")):
            wallets.append(raw_address(parse_address(value)))
        if not wallets:
            raise V3Error(400, "give owner_address or jetton_wallet")
        limit = _int(p, "limit", 10) or 10
        direction = p.get("direction")
        found: list[dict[str, Any]] = []
        for wallet in wallets:
            if direction in (None, "", "out"):
                for m in self.chain.store.messages(destination=wallet, direction="in", limit=1000):
                    if m.opcode == _JETTON_TRANSFER:
                        found += self._jetton_transfer(m.tx_hash, incoming=False)
            if direction in (None, "", "in"):
                for m in self.chain.store.messages(destination=wallet, direction="in", limit=1000):
                    if m.opcode == _JETTON_INTERNAL_TRANSFER:
                        found += self._jetton_transfer(m.tx_hash, incoming=True)
        found.sort(key=lambda t: int(t["transaction_lt"]), reverse=True)
        return {"jetton_transfers": found[:limit], "address_book": {}, "metadata": {}}

    def _jetton_transfer(self, tx_hash: bytes, *, incoming: bool) -> list[dict[str, Any]]:
        """A jetton wallet's `transfer` (outgoing) or `internal_transfer` (incoming) as v3 shows it.

        The two bodies start alike: op, query_id, amount, an owner address (the destination of a
        transfer, the sender of an internal_transfer), the response address.
        """
        row = self.chain.store.transaction(tx_hash)
        if row is None:
            return []
        d = decode_tx(row, self.chain.tx_cells)
        if d.in_msg is None:
            return []
        s = d.in_msg.body.begin_parse()
        s.skip_bits(32)
        query_id = s.load_uint(64)
        amount = s.load_coins()
        owner: Any = s.load_address()
        resp: Any = s.load_address()
        custom = None if incoming else s.load_maybe_ref()
        fwd_ton = s.load_coins()
        fwd_payload: Cell | None = None
        if not incoming and s.remaining_bits:  # forward_payload:(Either Cell ^Cell)
            fwd_payload = s.load_ref() if s.load_bit() else s.to_cell()
        wallet = self._jetton_wallet(Address(row.account))
        if incoming:
            source = _raw_upper(raw_address(owner)) if owner else None
            destination = wallet["owner"] if wallet else None
            source_wallet = _raw_upper(d.in_msg.source)
        else:
            source = _raw_upper(d.in_msg.source)
            destination = _raw_upper(raw_address(owner))
            source_wallet = _raw_upper(row.account)
        return [
            {
                "query_id": str(query_id),
                "source": source,
                "destination": destination,
                "amount": str(amount),
                "source_wallet": source_wallet,
                "jetton_master": wallet["jetton"] if wallet else None,
                "transaction_hash": hash_b64(row.hash),
                "transaction_lt": str(row.lt),
                "transaction_now": row.utime,
                "transaction_aborted": bool(getattr(d.tx.description, "aborted", False)),
                "response_destination": _raw_upper(raw_address(resp)) if resp else None,
                "custom_payload": b64(custom) if custom is not None else None,
                "forward_ton_amount": str(fwd_ton),
                "forward_payload": b64(fwd_payload) if isinstance(fwd_payload, Cell) else None,
                "trace_id": hash_b64(row.trace_id),
            }
        ]

    def address_information(self, p: dict[str, Any]) -> dict[str, Any]:
        acc = self.chain.account(str(_addr(p, "address")))
        return {
            "balance": str(acc.balance),
            "code": b64(acc.code) if acc.code is not None else None,
            "data": b64(acc.data) if acc.data is not None else None,
            "frozen_hash": hash_b64(acc.frozen_hash) if acc.frozen_hash else None,
            "last_transaction_hash": hash_b64(acc.last_hash) if acc.last_lt else None,
            "last_transaction_lt": str(acc.last_lt) if acc.last_lt else None,
            "status": acc.status,
        }

    def wallet_information(self, p: dict[str, Any]) -> dict[str, Any]:
        acc = self.chain.account(str(_addr(p, "address")))
        kind, fields = _wallet_fields(acc)
        if kind is None and acc.code is not None and bytes(acc.code.hash) == HIGHLOAD_V3_CODE_HASH:
            kind = "highload wallet v3"
        return {
            "balance": str(acc.balance),
            "status": acc.status,
            "wallet_type": kind,
            "seqno": fields.get("seqno"),
            "wallet_id": fields.get("wallet_id"),
            "last_transaction_hash": hash_b64(acc.last_hash) if acc.last_lt else None,
            "last_transaction_lt": str(acc.last_lt) if acc.last_lt else None,
        }

    def masterchain_info(self) -> dict[str, Any]:
        def block(seqno: int) -> dict[str, Any]:
            bid = block_id(seqno)
            row = self.chain.store.get_block(seqno)
            return {
                "workchain": -1,
                "shard": "8000000000000000",
                "seqno": seqno,
                "root_hash": bid["root_hash"],
                "file_hash": bid["file_hash"],
                "gen_utime": str(row.utime) if row else "0",
                "start_lt": str(row.start_lt) if row else "0",
                "end_lt": str(row.end_lt) if row else "0",
                "tx_count": row.tx_count if row else 0,
            }

        return {"first": block(1), "last": block(self.chain.seqno)}

    async def estimate_fee(self, p: dict[str, Any]) -> dict[str, Any]:
        address = parse_address(str(_addr(p, "address")))
        try:
            body = cell_from(str(p.get("body", "")))
            from ton_core import StateInit

            init = None
            if p.get("init_code") or p.get("init_data"):
                init = StateInit(
                    code=cell_from(str(p["init_code"])) if p.get("init_code") else None,
                    data=cell_from(str(p["init_data"])) if p.get("init_data") else None,
                )
        except Exception as exc:
            raise V3Error(400, f"invalid BOC: {exc}") from exc
        msg = MessageAny(ExternalMsgInfo(None, address, 0), init, body).serialize()
        try:
            fees = await asyncio.to_thread(
                self.chain.estimate_fee, msg, ignore_chksig=bool(p.get("ignore_chksig", True))
            )
        except SendError as exc:
            raise V3Error(500, str(exc)) from exc
        return {
            "source_fees": {
                "in_fwd_fee": fees.in_fwd_fee,
                "storage_fee": fees.storage_fee,
                "gas_fee": fees.gas_fee,
                "fwd_fee": fees.fwd_fee,
            },
            "destination_fees": [],
        }

    async def run_get_method(self, p: dict[str, Any]) -> dict[str, Any]:
        address = str(_addr(p, "address"))
        method = p.get("method")
        if not method:
            raise V3Error(400, "missing required parameter: method")
        try:
            stack = stack_from_v3(list(p.get("stack") or []))
        except (ValueError, TypeError, AttributeError) as exc:
            raise V3Error(400, f"invalid stack: {exc}") from exc
        acc = self.chain.account(address)
        if acc.status != "active":
            return {"gas_used": 0, "exit_code": -13, "stack": []}
        mid: str | int = int(method) if str(method).lstrip("-").isdigit() else str(method)
        result = await asyncio.to_thread(self.chain.run_get_method, address, mid, stack)
        if not result.success or result.stack is None:
            raise V3Error(500, str(result.error))
        return {
            "gas_used": result.gas_used,
            "exit_code": result.vm_exit_code,
            "stack": stack_to_v3(result.stack),
        }


def _many(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v for v in str(value).split(",") if v]


def create_router(chain: Chain) -> APIRouter:
    api = ToncenterV3(chain)
    router = APIRouter()

    def query(request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, value in request.query_params.multi_items():
            if key in params:
                prev = params[key]
                params[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
            else:
                params[key] = value
        return params

    async def body(request: Request) -> dict[str, Any]:
        return await json_object(request, V3Error, 400)

    def guarded(fn: Any) -> Any:
        async def run(request: Request) -> JSONResponse:
            try:
                result = fn(request)
                if asyncio.iscoroutine(result):
                    result = await result
            except V3Error as exc:
                return _err(exc.code, exc.error)
            except ValueError as exc:
                return _err(400, str(exc))
            return JSONResponse(_compact(result))

        return run

    async def post_message(r: Request) -> dict[str, Any]:
        return api.send(await body(r))

    async def post_fee(r: Request) -> dict[str, Any]:
        return await api.estimate_fee(await body(r))

    async def post_get(r: Request) -> dict[str, Any]:
        return await api.run_get_method(await body(r))

    routes: list[tuple[str, str, Any]] = [
        ("/transactions", "GET", lambda r: api.transactions(query(r))),
        ("/transactionsByMessage", "GET", lambda r: api.transactions_by_message(query(r))),
        ("/messages", "GET", lambda r: api.messages(query(r))),
        ("/message", "POST", post_message),
        ("/jetton/wallets", "GET", lambda r: api.jetton_wallets(query(r))),
        ("/jetton/transfers", "GET", lambda r: api.jetton_transfers(query(r))),
        ("/walletInformation", "GET", lambda r: api.wallet_information(query(r))),
        ("/addressInformation", "GET", lambda r: api.address_information(query(r))),
        ("/masterchainInfo", "GET", lambda r: api.masterchain_info()),
        ("/estimateFee", "POST", post_fee),
        ("/runGetMethod", "POST", post_get),
    ]
    for path, method, fn in routes:
        router.add_api_route(path, guarded(fn), methods=[method])
    return router
