"""The toncenter v3 subset through the ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from nacl.signing import SigningKey
from ton_core import Address, begin_cell

from tonrail.localnet.boc import b64
from tonrail.localnet.chain import Chain
from tonrail.localnet.genesis import TON

from .wallets import V4Wallet


@pytest.fixture
async def http(chain: Chain) -> AsyncIterator[httpx.AsyncClient]:
    from tonrail.localnet.server import create_app

    transport = httpx.ASGITransport(app=create_app(chain, manage_lifecycle=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://localnet") as c:
        yield c


async def _send(chain: Chain, http: httpx.AsyncClient) -> tuple[V4Wallet, dict[str, str]]:
    w = V4Wallet(SigningKey(b"\x31" * 32))
    chain.faucet(w.address, 10 * TON)
    await chain.produce_block()
    dest = Address((0, b"\x32" * 32))
    boc = b64(w.external(w.body(0, chain.now() + 60, dest, TON), deploy=True))
    r = await http.post("/api/v3/message", json={"boc": boc})
    assert r.status_code == 200
    await chain.produce_block()
    return w, r.json()


async def test_message_then_transactions_by_message(chain: Chain, http: httpx.AsyncClient) -> None:
    w, sent = await _send(chain, http)
    assert set(sent) == {"message_hash", "message_hash_norm"}
    for key in ("message_hash", "message_hash_norm"):
        r = await http.get("/api/v3/transactionsByMessage", params={"msg_hash": sent[key]})
        txs = r.json()["transactions"]
        assert len(txs) == 1
        tx = txs[0]
        assert tx["account"] == w.address.to_str(False).upper()
        assert tx["in_msg"]["hash"] == sent["message_hash"]
        assert tx["in_msg"]["hash_norm"] == sent["message_hash_norm"]
        assert tx["description"]["compute_ph"]["success"] is True
        assert tx["description"]["action"]["success"] is True
        assert tx["mc_block_seqno"] == chain.seqno
    out_hash = txs[0]["out_msgs"][0]["hash"]
    rx = await http.get(
        "/api/v3/transactionsByMessage", params={"msg_hash": out_hash, "direction": "in"}
    )
    assert rx.json()["transactions"][0]["in_msg"]["value"] == str(TON)
    assert rx.json()["transactions"][0]["trace_id"] == txs[0]["trace_id"]


async def test_transactions_and_messages(chain: Chain, http: httpx.AsyncClient) -> None:
    w, sent = await _send(chain, http)
    r = await http.get("/api/v3/transactions", params={"account": w.address.to_str(), "limit": 10})
    body = r.json()
    assert len(body["transactions"]) == 2
    assert body["transactions"][0]["lt"] > body["transactions"][1]["lt"]
    assert w.address.to_str(False).upper() in body["address_book"]
    msgs = await http.get("/api/v3/messages", params={"msg_hash": sent["message_hash"]})
    m = msgs.json()["messages"][0]
    assert m["in_msg_tx_hash"] == body["transactions"][0]["hash"]
    by_source = await http.get(
        "/api/v3/messages", params={"source": w.address.to_str(), "direction": "out"}
    )
    assert by_source.json()["messages"][0]["value"] == str(TON)


async def test_account_endpoints(chain: Chain, http: httpx.AsyncClient) -> None:
    w, _ = await _send(chain, http)
    info = (
        await http.get("/api/v3/addressInformation", params={"address": w.address.to_str()})
    ).json()
    assert info["status"] == "active" and int(info["balance"]) > 0
    wallet = (
        await http.get("/api/v3/walletInformation", params={"address": w.address.to_str()})
    ).json()
    assert wallet["wallet_type"] == "wallet v4 r2" and wallet["seqno"] == 1
    hot = chain.genesis.wallet("hot")
    mc = (await http.get("/api/v3/masterchainInfo")).json()
    assert mc["last"]["seqno"] == chain.seqno and mc["first"]["seqno"] == 1
    assert hot.address is not None


async def test_jetton_wallets_and_transfers(chain: Chain, http: httpx.AsyncClient) -> None:
    g = chain.genesis
    customer = g.wallet("customer")
    r = await http.get(
        "/api/v3/jetton/wallets",
        params={
            "owner_address": customer.address.to_str(),
            "jetton_address": g.usdt_master.to_str(),
        },
    )
    wallets = r.json()["jetton_wallets"]
    assert len(wallets) == 1
    assert wallets[0]["balance"] == str(customer.usdt)
    assert wallets[0]["jetton"] == g.usdt_master.to_str(False).upper()
    t = await http.get(
        "/api/v3/jetton/transfers", params={"owner_address": customer.address.to_str()}
    )
    transfers = t.json()["jetton_transfers"]
    assert transfers and transfers[0]["amount"] == str(customer.usdt)


async def test_run_get_method_and_estimate_fee(chain: Chain, http: httpx.AsyncClient) -> None:
    g = chain.genesis
    owner = g.wallet("customer").address
    arg = b64(begin_cell().store_address(owner).end_cell())
    r = await http.post(
        "/api/v3/runGetMethod",
        json={
            "address": g.usdt_master.to_str(),
            "method": "get_wallet_address",
            "stack": [{"type": "slice", "value": arg}],
        },
    )
    res = r.json()
    assert res["exit_code"] == 0 and res["stack"][0]["type"] == "slice"
    w, _ = await _send(chain, http)
    body = w.body(1, chain.now() + 60, w.address, 1)
    fee = await http.post(
        "/api/v3/estimateFee", json={"address": w.address.to_str(), "body": b64(body)}
    )
    assert fee.json()["source_fees"]["gas_fee"] > 0
    bad = await http.get("/api/v3/transactionsByMessage", params={"msg_hash": "zz"})
    assert bad.status_code == 400 and "error" in bad.json()


async def test_outgoing_jetton_transfer_is_listed(chain: Chain, http: httpx.AsyncClient) -> None:
    from ton_core import JettonTransferBody

    g = chain.genesis
    w = V4Wallet(SigningKey(b"\x33" * 32))
    chain.faucet(w.address, 5 * TON)
    chain.faucet(w.address, 100 * 10**6, asset="USDT")
    await chain.produce_block()
    receiver = Address((0, b"\x34" * 32))
    note = begin_cell().store_uint(0, 32).store_snake_string("order 42").end_cell()
    transfer = JettonTransferBody(
        destination=receiver,
        jetton_amount=30 * 10**6,
        response_address=w.address,
        forward_amount=1,
        forward_payload=note,
        query_id=7,
    ).serialize()
    mine = g.jetton_wallet_address(w.address)
    body = w.body(0, chain.now() + 60, mine, TON // 10, bounce=True, payload=transfer)
    chain.send_external(b64(w.external(body, deploy=True)))
    await chain.produce_block()
    out = await http.get(
        "/api/v3/jetton/transfers", params={"owner_address": w.address.to_str(), "direction": "out"}
    )
    [t] = out.json()["jetton_transfers"]
    assert t["amount"] == str(30 * 10**6) and t["query_id"] == "7"
    assert t["destination"] == receiver.to_str(False).upper()
    assert t["source_wallet"] == mine.to_str(False).upper()
    assert t["forward_ton_amount"] == "1"
    assert t["transaction_aborted"] is False
    from tonrail.localnet.boc import cell_from

    assert cell_from(t["forward_payload"]).hash == note.hash
    incoming = await http.get(
        "/api/v3/jetton/transfers", params={"owner_address": receiver.to_str(), "direction": "in"}
    )
    [t_in] = incoming.json()["jetton_transfers"]
    assert t_in["source"] == w.address.to_str(False).upper()
    assert t_in["amount"] == str(30 * 10**6)
    wallets = await http.get("/api/v3/jetton/wallets", params={"owner_address": receiver.to_str()})
    assert wallets.json()["jetton_wallets"][0]["balance"] == str(30 * 10**6)


async def test_a_transaction_is_parsed_once_and_listed_the_same_every_time(
    chain: Chain, http: httpx.AsyncClient
) -> None:
    """A client following an account lists the same transactions again and again: each is
    parsed and rendered once (by hash), and every listing answers the same."""
    from tonrail.localnet import toncenter_v3

    w, _ = await _send(chain, http)
    params = {"account": w.address.to_str(), "limit": 10, "sort": "asc"}
    first = (await http.get("/api/v3/transactions", params=params)).json()
    decoded: list[bytes] = []
    real = toncenter_v3.decode_tx

    def counting(row: toncenter_v3.TxRow) -> toncenter_v3.DecodedTx:
        decoded.append(row.hash)
        return real(row)

    toncenter_v3.decode_tx = counting  # type: ignore[assignment]
    try:
        again = (await http.get("/api/v3/transactions", params=params)).json()
    finally:
        toncenter_v3.decode_tx = real  # type: ignore[assignment]
    assert first["transactions"] and again == first
    assert decoded == []
