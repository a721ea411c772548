"""Responses validated against toncenter's own OpenAPI descriptions, field by field."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey
from ton_core import Address, begin_cell

from tonrail.localnet.boc import b64
from tonrail.localnet.chain import Chain
from tonrail.localnet.genesis import TON
from tonrail.localnet.server import create_app

from .openapi import errors, load, response_schema
from .wallets import V4Wallet

V2 = load("toncenter-v2.json")
V3 = load("toncenter-v3.yaml")


@pytest.fixture
async def http(chain: Chain) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(chain, manage_lifecycle=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://localnet") as c:
        yield c


@pytest.fixture
async def wallet(chain: Chain, http: httpx.AsyncClient) -> V4Wallet:
    w = V4Wallet(SigningKey(b"\x71" * 32))
    chain.faucet(w.address, 10 * TON)
    chain.faucet(w.address, 5 * 10**6, asset="USDT")
    await chain.produce_block()
    body = w.body(0, chain.now() + 60, Address((0, b"\x72" * 32)), TON, bounce=True)
    sent = await http.post("/api/v2/sendBoc", json={"boc": b64(w.external(body, deploy=True))})
    assert sent.json()["ok"] is True
    await chain.produce_block()
    return w


def _check(spec: dict[str, Any], path: str, method: str, body: Any) -> None:
    problems = errors(spec, response_schema(spec, path, method), body)
    assert not problems, "\n".join(problems[:20])


async def test_v2_responses_match_the_spec(
    chain: Chain, http: httpx.AsyncClient, wallet: V4Wallet
) -> None:
    addr = wallet.address.to_str()
    g = chain.genesis
    owner = b64(begin_cell().store_address(g.wallet("customer").address).end_cell())
    txs = (await http.get("/api/v2/getTransactions", params={"address": addr})).json()
    funding = txs["result"][-1]["in_msg"]
    locate = {
        "source": funding["source"],
        "destination": funding["destination"],
        "created_lt": funding["created_lt"],
    }
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("getAddressInformation", "get", {"address": addr}),
        ("getExtendedAddressInformation", "get", {"address": addr}),
        ("getExtendedAddressInformation", "get", {"address": "0:" + "ee" * 32}),
        ("getAddressInformation", "get", {"address": "0:" + "ee" * 32}),
        ("getWalletInformation", "get", {"address": "0:" + "ee" * 32}),
        ("getAddressState", "get", {"address": "0:" + "ee" * 32}),
        ("getWalletInformation", "get", {"address": g.wallet("hot").address.to_str()}),
        ("getWalletInformation", "get", {"address": addr}),
        ("getAddressBalance", "get", {"address": addr}),
        ("getAddressState", "get", {"address": addr}),
        ("getTransactions", "get", {"address": addr, "limit": 10}),
        ("getMasterchainInfo", "get", {}),
        ("getConfigParam", "get", {"config_id": 21}),
        ("getConfigAll", "get", {}),
        ("tryLocateTx", "get", locate),
        ("tryLocateResultTx", "get", locate),
        ("tryLocateSourceTx", "get", locate),
        ("getShards", "get", {"seqno": chain.seqno}),
        (
            "getBlockTransactions",
            "get",
            {"workchain": 0, "shard": "-9223372036854775808", "seqno": chain.seqno},
        ),
        ("getOutMsgQueueSize", "get", {}),
        (
            "runGetMethod",
            "post",
            {
                "address": g.usdt_master.to_str(),
                "method": "get_wallet_address",
                "stack": [["tvm.Slice", owner]],
            },
        ),
        (
            "runGetMethod",
            "post",
            {"address": g.usdt_master.to_str(), "method": "get_jetton_data", "stack": []},
        ),
        (
            "estimateFee",
            "post",
            {
                "address": addr,
                "body": b64(wallet.body(1, chain.now() + 60, wallet.address, 1)),
            },
        ),
    ]
    for method, verb, params in calls:
        if verb == "get":
            r = await http.get(f"/api/v2/{method}", params=params)
        else:
            r = await http.post(f"/api/v2/{method}", json=params)
        assert r.status_code == 200, (method, r.text)
        _check(V2, f"/api/v2/{method}", verb, r.json())
    boc = b64(wallet.external(wallet.body(1, chain.now() + 60, wallet.address, 1)))
    r = await http.post("/api/v2/sendBocReturnHash", json={"boc": boc})
    _check(V2, "/api/v2/sendBocReturnHash", "post", r.json())
    await chain.produce_block()
    boc = b64(wallet.external(wallet.body(2, chain.now() + 60, wallet.address, 1)))
    r = await http.post("/api/v2/sendBoc", json={"boc": boc})
    _check(V2, "/api/v2/sendBoc", "post", r.json())
    rpc = await http.post(
        "/api/v2/jsonRPC",
        json={
            "jsonrpc": "2.0",
            "id": "1",
            "method": "getMasterchainInfo",
            "params": {},
        },
    )
    _check(V2, "/api/v2/jsonRPC", "post", rpc.json())


async def test_v2_errors_match_the_spec(http: httpx.AsyncClient) -> None:
    r = await http.get("/api/v2/getAddressBalance", params={"address": "not-an-address"})
    problems = errors(V2, {"$ref": "#/components/schemas/TonlibErrorResponse"}, r.json())
    assert not problems and r.json()["ok"] is False


async def test_v3_responses_match_the_spec(
    chain: Chain, http: httpx.AsyncClient, wallet: V4Wallet
) -> None:
    addr = wallet.address.to_str()
    g = chain.genesis
    txs = (await http.get("/api/v3/transactions", params={"account": addr})).json()
    ext_hash = txs["transactions"][-1]["in_msg"]["hash"] if txs["transactions"] else None
    assert ext_hash is not None
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/api/v3/transactions", {"account": addr, "limit": 10}),
        ("/api/v3/transactionsByMessage", {"msg_hash": ext_hash}),
        ("/api/v3/messages", {"source": addr}),
        ("/api/v3/jetton/wallets", {"owner_address": addr}),
        ("/api/v3/jetton/transfers", {"owner_address": g.wallet("customer").address.to_str()}),
        ("/api/v3/walletInformation", {"address": addr}),
        ("/api/v3/addressInformation", {"address": addr}),
        ("/api/v3/masterchainInfo", {}),
    ]
    for path, params in calls:
        r = await http.get(path, params=params)
        assert r.status_code == 200, (path, r.text)
        _check(V3, path, "get", r.json())
    posts: list[tuple[str, dict[str, Any]]] = [
        (
            "/api/v3/runGetMethod",
            {"address": g.usdt_master.to_str(), "method": "get_jetton_data", "stack": []},
        ),
        (
            "/api/v3/estimateFee",
            {"address": addr, "body": b64(wallet.body(1, chain.now() + 60, wallet.address, 1))},
        ),
        (
            "/api/v3/message",
            {"boc": b64(wallet.external(wallet.body(1, chain.now() + 60, wallet.address, 1)))},
        ),
    ]
    for path, body in posts:
        r = await http.post(path, json=body)
        assert r.status_code == 200, (path, r.text)
        _check(V3, path, "post", r.json())


def test_the_validator_rejects_what_the_spec_forbids() -> None:
    schema = response_schema(V2, "/api/v2/getAddressInformation", "get")
    assert errors(V2, schema, {"ok": True})  # result missing
    assert errors(V2, schema, {"ok": True, "result": {"@type": "raw.fullAccountState"}})
    good = {
        "@type": "raw.fullAccountState",
        "balance": "1",
        "extra_currencies": [],
        "code": "",
        "data": "",
        "last_transaction_id": {"@type": "internal.transactionId", "lt": "0", "hash": "AA=="},
        "block_id": {
            "@type": "ton.blockIdExt",
            "workchain": -1,
            "shard": "-9223372036854775808",
            "seqno": 1,
            "root_hash": "AA==",
            "file_hash": "AA==",
        },
        "frozen_hash": "",
        "sync_utime": 1,
        "state": "active",
    }
    assert not errors(V2, schema, {"ok": True, "result": good})
    assert errors(V2, schema, {"ok": True, "result": {**good, "state": "uninit"}})
    assert errors(V2, schema, {"ok": True, "result": {**good, "surprise": 1}})
    assert errors(V2, schema, {"ok": True, "result": {**good, "balance": 1}})


async def test_v2_error_statuses_are_the_ones_the_spec_lists(
    chain: Chain, http: httpx.AsyncClient, wallet: V4Wallet
) -> None:
    replay = b64(wallet.external(wallet.body(0, chain.now() + 60, wallet.address, 1)))
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("getAddressInformation", "get", {"address": "nope"}, 422),
        (
            "getTransactions",
            "get",
            {"address": wallet.address.to_str(), "lt": 1, "hash": "A" * 44},
            422,
        ),
        (
            "tryLocateTx",
            "get",
            {"source": "0:" + "1" * 64, "destination": "0:" + "2" * 64, "created_lt": 5},
            404,
        ),
        ("getConfigParam", "get", {"config_id": 4242}, 422),
        ("getBlockTransactions", "get", {"workchain": 0, "shard": "1", "seqno": 10**6}, 422),
        ("sendBoc", "post", {"boc": "bm90IGEgYm9j"}, 422),
        ("sendBoc", "post", {"boc": replay}, 500),
        (
            "runGetMethod",
            "post",
            {"address": wallet.address.to_str(), "method": "seqno", "stack": [["x", 1]]},
            542,
        ),
    ]
    for method, verb, params, status in cases:
        if verb == "get":
            r = await http.get(f"/api/v2/{method}", params=params)
        else:
            r = await http.post(f"/api/v2/{method}", json=params)
        assert r.status_code == status, (method, r.status_code, r.text)
        listed = V2["paths"][f"/api/v2/{method}"][verb]["responses"]
        assert str(status) in listed, (method, status)
        assert not errors(V2, {"$ref": "#/components/schemas/TonlibErrorResponse"}, r.json())
        assert r.json()["code"] == status


def _documented_errors(method: str, verb: str, status: int) -> list[str]:
    """The error texts toncenter's v2 spec lists for `method` answering `status`."""
    response = V2["paths"][f"/api/v2/{method}"][verb]["responses"][str(status)]
    if "$ref" in response:
        response = V2["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    schema = response["content"]["application/json"]["schema"]
    texts: list[str] = schema["properties"]["error"]["enum"]
    return texts


def _is_documented(text: str, documented: list[str]) -> bool:
    """`text` is one of `documented`, where `<N>`, `<type>`... stand for any value."""
    for pattern in documented:
        parts = re.split(r"<[a-zA-Z]+>", pattern)
        if re.fullmatch(".+".join(re.escape(p) for p in parts), text):
            return True
    return False


def test_documented_error_matching_can_fail() -> None:
    texts = _documented_errors("sendBoc", "post", 500)
    assert _is_documented("Exit code 33 != 0", texts)
    assert not _is_documented("Exit code 33", texts)
    assert not _is_documented("LITE_SERVER_UNKNOWN: not accepted", texts)


async def test_v2_error_texts_are_toncenters(
    chain: Chain, http: httpx.AsyncClient, wallet: V4Wallet
) -> None:
    """Each refusal answers the status and the very text toncenter's v2 spec documents."""
    addr = wallet.address.to_str()
    other = "0:" + "2" * 64
    h = "A" * 43 + "="
    block = {"workchain": 0, "shard": "-9223372036854775808", "seqno": chain.seqno}
    replay = b64(wallet.external(wallet.body(0, chain.now() + 60, wallet.address, 1)))
    stale = b64(wallet.body(0, chain.now() + 60, wallet.address, 1))
    run = {"address": addr, "method": "seqno"}
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("getAddressInformation", "get", {}, 422, "empty address"),
        ("getAddressInformation", "get", {"address": "nope"}, 422, "failed to parse address"),
        ("getWalletInformation", "get", {"address": addr, "seqno": "x"}, 422,
         "failed to parse seqno"),
        ("getAddressState", "get", {"address": addr, "seqno": 0}, 422,
         "seqno should be positive"),
        ("getTransactions", "get", {"address": addr, "limit": 0}, 422,
         "limit should be positive"),
        ("getTransactions", "get", {"address": addr, "limit": 1001}, 422,
         "limit should be less or equal 1000"),
        ("getTransactions", "get", {"address": addr, "lt": 5}, 422,
         "lt and hash should be used together"),
        ("getTransactions", "get", {"address": addr, "lt": "x", "hash": h}, 422,
         "failed to parse lt"),
        ("getTransactions", "get", {"address": addr, "lt": -1, "hash": h}, 422,
         "lt should be non-negative"),
        ("getTransactions", "get", {"address": addr, "lt": 1, "hash": "!"}, 422,
         "failed to parse hash"),
        ("getTransactions", "get", {"address": "nope"}, 422, "failed to parse address"),
        ("tryLocateTx", "get", {}, 422, "empty source address"),
        ("tryLocateResultTx", "get", {"source": addr}, 422, "empty destination address"),
        ("tryLocateSourceTx", "get", {"source": addr, "destination": other, "created_lt": "x"},
         422, "failed to parse created_lt"),
        ("tryLocateTx", "get", {"source": addr, "destination": other, "created_lt": -1}, 422,
         "created_lt should be non-negative"),
        ("tryLocateTx", "get", {"source": addr, "destination": other, "created_lt": 5}, 404,
         "transaction not found"),
        ("getShards", "get", {}, 422, "seqno required"),
        ("getShards", "get", {"seqno": "x"}, 422, "failed to parse seqno"),
        ("getShards", "get", {"seqno": 0}, 422, "seqno should be positive"),
        ("getBlockTransactions", "get", {**block, "workchain": "x"}, 422,
         "failed to parse workchain"),
        ("getBlockTransactions", "get", {**block, "shard": "x"}, 422, "failed to parse shard"),
        ("getBlockTransactions", "get", {**block, "count": 0}, 422, "count should be positive"),
        ("getBlockTransactions", "get", {**block, "count": 10001}, 422,
         "count should be less or equal 10000"),
        ("getBlockTransactions", "get", {**block, "after_lt": 5}, 422,
         "after_lt and after_hash should be used together"),
        ("getBlockTransactions", "get", {**block, "after_lt": -5, "after_hash": h}, 422,
         "after_lt should be non-negative"),
        ("getConfigParam", "get", {}, 422, "failed to parse config_id"),
        ("getConfigParam", "get", {"config_id": "x"}, 422, "failed to parse config_id"),
        ("getConfigParam", "get", {"config_id": -1}, 422, "param should be non-negative"),
        ("sendBoc", "post", {}, 422, "empty boc"),
        ("sendBocReturnHash", "post", {"boc": ""}, 422, "empty boc"),
        ("sendBoc", "post", {"boc": replay}, 500, "Exit code 33 != 0"),
        ("sendBocReturnHash", "post", {"boc": replay}, 500, "Exit code 33 != 0"),
        ("runGetMethod", "post", {**run, "stack": "x"}, 422, "Stack should be array"),
        ("runGetMethod", "post", {**run, "stack": [["num"]]}, 422,
         "Invalid stack entry format: array of exact 2 elements expected"),
        ("runGetMethod", "post", {**run, "stack": [[1, 2]]}, 422,
         "Expected string as first element in stack entry"),
        ("runGetMethod", "post", {**run, "stack": [["num", "zz"]]}, 422,
         "Wrong type of number in stack entry"),
        ("runGetMethod", "post", {**run, "stack": [["num", 1.5]]}, 422,
         "Wrong type of number in stack entry"),
        ("runGetMethod", "post", {**run, "stack": [["tvm.Cell", 5]]}, 422,
         "Invalid tvm.Cell, base64 string expected"),
        ("runGetMethod", "post", {**run, "stack": [["tvm.Slice", "@@"]]}, 422,
         "Invalid tvm.Slice, base64 string expected"),
        ("runGetMethod", "post", {**run, "stack": [["tvm.Cell", ""]]}, 422, "Empty tvm.Cell"),
        ("runGetMethod", "post", {**run, "stack": [["tvm.Slice", " "]]}, 422, "Empty tvm.Slice"),
        ("runGetMethod", "post", {**run, "stack": [["float", 1]]}, 542,
         "Unsupported stack entry type: float"),
        ("estimateFee", "post", {"address": addr, "body": stale, "ignore_chksig": False}, 500,
         "Exit code 33 != 0"),
    ]  # fmt: skip
    for method, verb, params, status, text in cases:
        if verb == "get":
            r = await http.get(f"/api/v2/{method}", params=params)
        else:
            r = await http.post(f"/api/v2/{method}", json=params)
        body = r.json()
        assert (r.status_code, body.get("error")) == (status, text), (method, params, body)
        assert body == {"ok": False, "error": text, "code": status}
        assert _is_documented(text, _documented_errors(method, verb, status)), (method, text)
    rpc = await http.post(
        "/api/v2/jsonRPC",
        json={"jsonrpc": "2.0", "id": "1", "method": "getMasterchainInfo", "params": [1]},
    )
    assert rpc.status_code == 422 and rpc.json()["error"] == "params must contain an object"
    assert _is_documented(rpc.json()["error"], _documented_errors("jsonRPC", "post", 422))
    by_rpc = await http.post(
        "/api/v2/jsonRPC",
        json={"jsonrpc": "2.0", "id": "2", "method": "getAddressBalance", "params": {}},
    )
    assert by_rpc.status_code == 422 and by_rpc.json()["error"] == "empty address"


async def test_v3_bad_requests_answer_400_as_documented(
    http: httpx.AsyncClient, wallet: V4Wallet
) -> None:
    """toncenter v3 documents 400 with a RequestError ({code, error}) for a bad request."""
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("get", "/api/v3/transactions", {"account": "nope"}),
        ("get", "/api/v3/messages", {"source": "nope"}),
        ("get", "/api/v3/jetton/wallets", {"owner_address": "nope"}),
        ("get", "/api/v3/walletInformation", {"address": "nope"}),
        ("get", "/api/v3/addressInformation", {"address": "0:zz"}),
        ("get", "/api/v3/transactions", {"account": wallet.address.to_str(), "limit": "x"}),
        ("get", "/api/v3/transactionsByMessage", {"msg_hash": "zz"}),
        ("post", "/api/v3/estimateFee", {"address": "nope", "body": ""}),
        ("post", "/api/v3/runGetMethod", {"address": "nope", "method": "seqno", "stack": []}),
        ("post", "/api/v3/message", {}),
    ]
    for verb, path, params in cases:
        if verb == "get":
            r = await http.get(path, params=params)
        else:
            r = await http.post(path, json=params)
        assert r.status_code == 400, (path, params, r.status_code, r.text)
        assert r.json()["code"] == 400 and isinstance(r.json()["error"], str)
        schema = V3["paths"][path][verb]["responses"]["400"]["content"]["application/json"]
        _check_shape(schema["schema"], r.json())
    not_json = await http.post("/api/v3/message", content=b"{nope")
    assert not_json.status_code == 400 and not_json.json()["code"] == 400


def _check_shape(schema: dict[str, Any], body: Any) -> None:
    problems = errors(V3, schema, body)
    assert not problems, problems
    assert set(body) == {"code", "error"}
