"""Faults set at start and at run time through /localnet/faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from nacl.signing import SigningKey
from ton_core import Address

from tonrail.localnet.boc import b64
from tonrail.localnet.chain import Chain
from tonrail.localnet.faults import Faults
from tonrail.localnet.genesis import TON
from tonrail.localnet.server import create_app

from .wallets import V4Wallet


@pytest.fixture
async def http(chain: Chain) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(chain, manage_lifecycle=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://localnet") as c:
        yield c


async def test_http_429_and_5xx_injection(http: httpx.AsyncClient) -> None:
    r = await http.post("/localnet/faults", json={"http_429_rate": 1.0})
    assert r.json()["http_429_rate"] == 1.0
    limited = await http.get("/api/v2/getMasterchainInfo")
    assert limited.status_code == 429 and limited.json()["ok"] is False
    await http.post("/localnet/faults", json={"http_429_rate": 0.0, "http_5xx_rate": 1.0})
    broken = await http.get("/api/v3/masterchainInfo")
    assert broken.status_code in (502, 503, 504)
    assert (await http.delete("/localnet/faults")).json()["http_5xx_rate"] == 0.0
    assert (await http.get("/api/v2/getMasterchainInfo")).status_code == 200


async def test_invalid_fault_is_refused(http: httpx.AsyncClient) -> None:
    assert (await http.post("/localnet/faults", json={"nope": 1})).status_code == 422
    assert (await http.post("/localnet/faults", json={"drop_external_rate": 2})).status_code == 422


async def test_congestion_builds_a_queue(chain: Chain, http: httpx.AsyncClient) -> None:
    await http.post("/localnet/faults", json={"max_tx_per_block": 2})
    targets = [Address((0, bytes([i]) * 32)) for i in range(1, 7)]
    for t in targets:
        chain.faucet(t, TON)
    status = (await http.get("/localnet/status")).json()
    assert status["queue_size"] == 6
    await chain.produce_block()
    status = (await http.get("/localnet/status")).json()
    assert status["last_block_tx_count"] <= 2
    assert status["queue_size"] > 0
    for _ in range(20):
        await chain.produce_block()
    assert all(chain.account(t).balance == TON for t in targets)


async def test_inclusion_delay(chain: Chain) -> None:
    chain.faults.update({"inclusion_delay_ms": 300})
    w = V4Wallet(SigningKey(b"\x41" * 32))
    chain.faucet(w.address, 2 * TON)
    await chain.produce_block()
    chain.send_external(b64(w.external(w.body(0, chain.now() + 60, w.address, 1), deploy=True)))
    await chain.produce_block()
    assert chain.account(w.address).status == "uninit"  # still waiting
    await asyncio.sleep(0.35)
    await chain.produce_block()
    assert chain.account(w.address).status == "active"


async def test_dropped_externals_never_land(chain: Chain) -> None:
    chain.faults.update({"drop_external_rate": 1.0})
    w = V4Wallet(SigningKey(b"\x42" * 32))
    chain.faucet(w.address, 2 * TON)
    await chain.produce_block()
    h, _ = chain.send_external(
        b64(w.external(w.body(0, chain.now() + 60, w.address, 1), deploy=True))
    )
    await chain.produce_block()
    assert chain.account(w.address).status == "uninit"
    assert not chain.store.messages(msg_hash=h)


async def test_stalled_producer_and_time_travel(http: httpx.AsyncClient, chain: Chain) -> None:
    await http.post("/localnet/faults", json={"stall_blocks": True})
    await chain.start()
    try:
        seqno = chain.seqno
        await asyncio.sleep(0.3)
        assert chain.seqno == seqno  # no blocks while stalled
        await http.post("/localnet/faults", json={"stall_blocks": False})
        await asyncio.sleep(0.3)
        assert chain.seqno > seqno
    finally:
        await chain.stop()
    before = chain.now()
    await http.post("/localnet/faults", json={"time_offset_s": 3600})
    assert chain.now() >= before + 3600
    block = await chain.produce_block()
    assert block.utime >= before + 3600


def test_faults_at_start() -> None:
    chain = Chain.open(None, faults=Faults(max_tx_per_block=1, seed=7))
    try:
        assert chain.faults.max_tx_per_block == 1
    finally:
        chain.close()


async def test_faucet_endpoint(chain: Chain, http: httpx.AsyncClient) -> None:
    target = Address((0, b"\x51" * 32))
    r = await http.post(
        "/localnet/faucet", json={"address": target.to_str(), "amount": 5 * 10**6, "asset": "USDT"}
    )
    assert r.status_code == 202
    await chain.produce_block()
    jw = chain.genesis.jetton_wallet_address(target)
    assert chain.account(jw).status == "active"
    g = (await http.get("/localnet/genesis")).json()
    assert g["usdt"]["master"] == chain.genesis.usdt_master.to_str(False)
    assert {w["name"] for w in g["wallets"]} == {"customer", "deposit", "hot"}


async def test_admin_endpoints_refuse_bad_json(http: httpx.AsyncClient) -> None:
    for path in ("/localnet/faults", "/localnet/faucet"):
        r = await http.post(path, content=b"{not json")
        assert r.status_code == 422 and r.json()["ok"] is False
    r = await http.post("/localnet/faucet", json={"address": "0:" + "1" * 64})
    assert r.status_code == 422
