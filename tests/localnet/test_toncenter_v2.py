"""toncenter v2 shapes, field by field, through the ASGI app."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from nacl.signing import SigningKey
from ton_core import Address, Cell

from tonrail.localnet.boc import b64
from tonrail.localnet.chain import Chain
from tonrail.localnet.genesis import TON
from tonrail.localnet.server import create_app

from .wallets import V4Wallet


@pytest.fixture
async def http(chain: Chain) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(chain, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localnet") as c:
        yield c


async def _active_wallet(chain: Chain, http: httpx.AsyncClient) -> V4Wallet:
    w = V4Wallet(SigningKey(b"\x21" * 32))
    chain.faucet(w.address, 10 * TON)
    await chain.produce_block()
    now = chain.now()
    boc = b64(w.external(w.body(0, now + 60, w.address, 1), deploy=True))
    r = await http.post("/api/v2/sendBoc", json={"boc": boc})
    assert r.json() == {"ok": True, "result": {"@type": "ok"}, "@extra": ""}
    await chain.produce_block()
    return w


async def test_address_information(chain: Chain, http: httpx.AsyncClient) -> None:
    w = await _active_wallet(chain, http)
    r = await http.get("/api/v2/getAddressInformation", params={"address": w.address.to_str()})
    body = r.json()
    assert body["ok"] is True
    res = body["result"]
    assert res["@type"] == "raw.fullAccountState"
    assert res["state"] == "active"
    assert int(res["balance"]) == chain.account(w.address).balance
    assert Cell.one_from_boc(base64.b64decode(res["code"])).hash == w.state_init.code.hash
    assert res["last_transaction_id"]["lt"] == str(chain.account(w.address).last_lt)
    assert res["block_id"]["seqno"] == chain.seqno
    missing = await http.get("/api/v2/getAddressInformation", params={"address": "0:" + "ab" * 32})
    assert missing.json()["result"]["state"] == "uninitialized"
    assert missing.json()["result"]["balance"] == "0"


async def test_wallet_balance_and_state(chain: Chain, http: httpx.AsyncClient) -> None:
    w = await _active_wallet(chain, http)
    addr = w.address.to_str(False)
    info = (await http.get("/api/v2/getWalletInformation", params={"address": addr})).json()
    assert info["result"]["wallet"] is True
    assert info["result"]["wallet_type"] == "wallet v4 r2"
    assert info["result"]["seqno"] == 1
    assert info["result"]["wallet_id"] == 698983191
    bal = (await http.get("/api/v2/getAddressBalance", params={"address": addr})).json()
    assert bal["result"] == str(chain.account(w.address).balance)
    st = (await http.get("/api/v2/getAddressState", params={"address": addr})).json()
    assert st["result"] == "active"
    ext = (
        await http.get("/api/v2/getExtendedAddressInformation", params={"address": addr})
    ).json()["result"]
    assert ext["account_state"] == {
        "@type": "wallet.v4.accountState",
        "seqno": 1,
        "wallet_id": 698983191,
    }


async def test_transactions_with_cursor(chain: Chain, http: httpx.AsyncClient) -> None:
    w = await _active_wallet(chain, http)
    addr = w.address.to_str(False)
    page = (await http.get("/api/v2/getTransactions", params={"address": addr})).json()["result"]
    # Newest first: the 1 nanoton to itself, the deploying external, the faucet funding.
    assert len(page) == 3
    to_self, external, funding = page
    assert external["@type"] == "ext.transaction"
    assert external["in_msg"]["source"] == ""
    assert len(external["out_msgs"]) == 1
    assert to_self["in_msg"]["source"] == external["out_msgs"][0]["destination"]
    assert int(external["fee"]) == int(external["storage_fee"]) + int(external["other_fee"])
    assert funding["in_msg"]["value"] == str(10 * TON)
    cursor = {
        "address": addr,
        "lt": external["transaction_id"]["lt"],
        "hash": external["transaction_id"]["hash"],
        "limit": 5,
    }
    rest = (await http.get("/api/v2/getTransactions", params=cursor)).json()["result"]
    assert [t["transaction_id"] for t in rest] == [
        external["transaction_id"],
        funding["transaction_id"],
    ]
    bounded = (
        await http.get(
            "/api/v2/getTransactions",
            params={**cursor, "to_lt": funding["transaction_id"]["lt"]},
        )
    ).json()["result"]
    assert [t["transaction_id"] for t in bounded] == [external["transaction_id"]]
    bad = {**cursor, "hash": base64.b64encode(b"\1" * 32).decode()}
    err = await http.get("/api/v2/getTransactions", params=bad)
    assert err.status_code == 422 and err.json()["ok"] is False


async def test_run_get_method_stack_in_and_out(chain: Chain, http: httpx.AsyncClient) -> None:
    g = chain.genesis
    owner = g.wallet("customer").address
    from ton_core import begin_cell

    arg = b64(begin_cell().store_address(owner).end_cell())
    r = await http.post(
        "/api/v2/runGetMethod",
        json={
            "address": g.usdt_master.to_str(),
            "method": "get_wallet_address",
            "stack": [["tvm.Slice", arg]],
        },
    )
    res = r.json()["result"]
    assert res["exit_code"] == 0 and res["@type"] == "smc.runResult"
    kind, value = res["stack"][0]
    assert kind == "slice"
    got = Cell.one_from_boc(base64.b64decode(value["bytes"])).begin_parse().load_address()
    assert got == g.jetton_wallet_address(owner)
    data = await http.post(
        "/api/v2/runGetMethod",
        json={"address": g.usdt_master.to_str(), "method": "get_jetton_data", "stack": []},
    )
    stack = data.json()["result"]["stack"]
    assert stack[0][0] == "num" and stack[0][1].startswith("0x")
    assert int(stack[0][1], 16) > 0  # total supply after the genesis mints


async def test_send_boc_return_hash_and_errors(chain: Chain, http: httpx.AsyncClient) -> None:
    w = await _active_wallet(chain, http)
    now = chain.now()
    boc = b64(w.external(w.body(1, now + 60, w.address, 1)))
    r = await http.post("/api/v2/sendBocReturnHash", json={"boc": boc})
    res = r.json()["result"]
    assert res["@type"] == "raw.extMessageInfo" and res["hash"] and res["hash_norm"]
    await chain.produce_block()
    again = await http.post("/api/v2/sendBoc", json={"boc": boc})
    assert again.status_code == 500
    assert again.json()["ok"] is False and again.json()["code"] == 500
    garbage = await http.post("/api/v2/sendBoc", json={"boc": "bm90IGEgYm9j"})
    assert garbage.status_code == 422 and garbage.json()["ok"] is False
    bad_addr = await http.get("/api/v2/getAddressBalance", params={"address": "nope"})
    assert bad_addr.status_code == 422 and bad_addr.json()["code"] == 422
    unknown = await http.get("/api/v2/noSuchMethod")
    assert unknown.status_code == 404


async def test_estimate_fee_shape(chain: Chain, http: httpx.AsyncClient) -> None:
    w = await _active_wallet(chain, http)
    body = w.body(1, chain.now() + 60, Address((0, b"\3" * 32)), TON)
    r = await http.post(
        "/api/v2/estimateFee",
        json={"address": w.address.to_str(), "body": b64(body), "ignore_chksig": True},
    )
    res = r.json()["result"]
    assert res["@type"] == "query.fees"
    fees = res["source_fees"]
    assert fees["@type"] == "fees"
    assert fees["gas_fee"] > 0 and fees["fwd_fee"] > 0 and fees["in_fwd_fee"] > 0


async def test_masterchain_and_config(chain: Chain, http: httpx.AsyncClient) -> None:
    before = (await http.get("/api/v2/getMasterchainInfo")).json()["result"]
    await chain.produce_block()
    after = (await http.get("/api/v2/getMasterchainInfo")).json()["result"]
    assert after["last"]["seqno"] == before["last"]["seqno"] + 1
    assert after["last"]["workchain"] == -1
    p21 = (await http.get("/api/v2/getConfigParam", params={"config_id": 21})).json()
    cell = Cell.one_from_boc(base64.b64decode(p21["result"]["config"]["bytes"]))
    assert cell.begin_parse().load_uint(8) in (0xD1, 0xDE, 0xDD)  # gas_flat_pfx or gas_prices
    whole = (await http.get("/api/v2/getConfigAll")).json()["result"]
    assert whole["config"]["bytes"] == chain.config_b64


async def test_try_locate_tx_and_json_rpc(chain: Chain, http: httpx.AsyncClient) -> None:
    w = await _active_wallet(chain, http)
    addr = w.address.to_str(False)
    txs = (await http.get("/api/v2/getTransactions", params={"address": addr})).json()["result"]
    funding = txs[-1]["in_msg"]
    located = (
        await http.get(
            "/api/v2/tryLocateTx",
            params={
                "source": funding["source"],
                "destination": funding["destination"],
                "created_lt": funding["created_lt"],
            },
        )
    ).json()["result"]
    assert located["transaction_id"] == txs[-1]["transaction_id"]
    source_tx = (
        await http.get(
            "/api/v2/tryLocateSourceTx",
            params={
                "source": funding["source"],
                "destination": funding["destination"],
                "created_lt": funding["created_lt"],
            },
        )
    ).json()["result"]
    assert source_tx["account"] == chain.genesis.faucet_address.to_str(False)
    rpc = await http.post(
        "/api/v2/jsonRPC",
        json={
            "jsonrpc": "2.0",
            "id": "7",
            "method": "getAddressBalance",
            "params": {"address": addr},
        },
    )
    assert rpc.json() == {
        "ok": True,
        "result": str(chain.account(w.address).balance),
        "@extra": "",
        "jsonrpc": "2.0",
        "id": "7",
    }
    bad = await http.post(
        "/api/v2/jsonRPC", json={"jsonrpc": "2.0", "id": "8", "method": "nope", "params": {}}
    )
    assert bad.json()["ok"] is False and bad.json()["id"] == "8"


async def test_block_transactions_and_shards(chain: Chain, http: httpx.AsyncClient) -> None:
    w = await _active_wallet(chain, http)
    seqno = chain.seqno
    shards = (await http.get("/api/v2/getShards", params={"seqno": seqno})).json()["result"]
    shard = shards["shards"][0]
    params = {"workchain": 0, "shard": shard["shard"], "seqno": seqno, "count": 1}
    first = (await http.get("/api/v2/getBlockTransactions", params=params)).json()["result"]
    assert first["incomplete"] is True and len(first["transactions"]) == 1
    after = {
        "after_lt": first["transactions"][0]["lt"],
        "after_hash": first["transactions"][0]["hash"],
    }
    rest = (
        await http.get("/api/v2/getBlockTransactions", params={**params, "count": 10, **after})
    ).json()["result"]
    accounts = [t["account"] for t in first["transactions"] + rest["transactions"]]
    assert accounts == [w.address.to_str(False)] * 2  # the external, then the 1 nanoton to self
    assert rest["incomplete"] is False
    missing = await http.get("/api/v2/getBlockTransactions", params={**params, "seqno": seqno + 5})
    assert missing.status_code == 422


async def test_fee_charged_equals_estimate_fee_over_http() -> None:
    now = 1_800_000_000
    chain = Chain.open(None, clock=lambda: now)  # a fixed clock fixes the storage fee
    try:
        transport = httpx.ASGITransport(app=create_app(chain, manage_lifecycle=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://localnet") as http:
            w = await _active_wallet(chain, http)
            body = w.body(1, now + 60, Address((0, b"\4" * 32)), 2 * TON)
            r = await http.post(
                "/api/v2/estimateFee",
                json={"address": w.address.to_str(), "body": b64(body), "ignore_chksig": True},
            )
            fees = r.json()["result"]["source_fees"]
            before = chain.account(w.address).balance
            sent = await http.post("/api/v2/sendBoc", json={"boc": b64(w.external(body))})
            assert sent.json()["ok"] is True
            await chain.produce_block()
            charged = before - chain.account(w.address).balance - 2 * TON
            assert charged == (
                fees["in_fwd_fee"] + fees["storage_fee"] + fees["gas_fee"] + fees["fwd_fee"]
            )
    finally:
        chain.close()


async def test_deploy_fee_equals_estimate_with_init_code_and_data() -> None:
    now = 1_800_000_000
    chain = Chain.open(None, clock=lambda: now)
    try:
        transport = httpx.ASGITransport(app=create_app(chain, manage_lifecycle=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://localnet") as http:
            w = V4Wallet(SigningKey(b"\x61" * 32))
            chain.faucet(w.address, 10 * TON)
            await chain.produce_block()
            body = w.body(0, now + 60, Address((0, b"\5" * 32)), TON)
            r = await http.post(
                "/api/v2/estimateFee",
                json={
                    "address": w.address.to_str(),
                    "body": b64(body),
                    "init_code": b64(w.state_init.code),
                    "init_data": b64(w.state_init.data),
                },
            )
            fees = r.json()["result"]["source_fees"]
            before = chain.account(w.address).balance
            boc = b64(w.external(body, deploy=True))
            assert (await http.post("/api/v2/sendBoc", json={"boc": boc})).json()["ok"]
            await chain.produce_block()
            assert chain.account(w.address).status == "active"
            charged = before - chain.account(w.address).balance - TON
            assert charged == sum(
                fees[k] for k in ("in_fwd_fee", "storage_fee", "gas_fee", "fwd_fee")
            )
    finally:
        chain.close()


async def test_shards_by_its_jsonrpc_name(chain: Chain, http: httpx.AsyncClient) -> None:
    """`shards` is what @ton/ton's getWorkchainShards sends to jsonRPC: the same answer as
    getShards, which toncenter's spec describes."""
    from .openapi import errors, load, response_schema

    spec = load("toncenter-v2.json")
    seqno = chain.seqno
    rpc = await http.post(
        "/api/v2/jsonRPC",
        json={"jsonrpc": "2.0", "id": "1", "method": "shards", "params": {"seqno": seqno}},
    )
    assert rpc.status_code == 200, rpc.text
    body = rpc.json()
    assert body["ok"] is True and body["id"] == "1"
    shards = body["result"]["shards"]
    assert body["result"]["@type"] == "blocks.shards"
    assert [(s["workchain"], s["shard"], s["seqno"]) for s in shards] == [
        (0, "-9223372036854775808", seqno)
    ]
    rest = (await http.get("/api/v2/getShards", params={"seqno": seqno})).json()
    assert rest["result"] == body["result"]
    assert (await http.get("/api/v2/shards", params={"seqno": seqno})).json() == rest
    schema = response_schema(spec, "/api/v2/getShards", "get")
    assert not errors(spec, schema, rest)
    no_seqno = await http.post(
        "/api/v2/jsonRPC", json={"jsonrpc": "2.0", "id": "2", "method": "shards", "params": {}}
    )
    assert no_seqno.status_code == 422 and no_seqno.json()["error"] == "seqno required"
