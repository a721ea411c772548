"""tonutils' own ToncenterClient, unchanged, against the local network over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from ton_core import Address, NetworkGlobalID, PrivateKey, WalletHighloadV3Config
from tonutils.clients import ToncenterClient
from tonutils.contracts import (
    JettonTransferBuilder,
    TONTransferBuilder,
    WalletHighloadV3R1,
    WalletV5R1,
)

from tonrail.localnet.chain import Chain
from tonrail.localnet.genesis import HOT_SUBWALLET, HOT_TIMEOUT, TON, derive_key


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def client(server: str) -> AsyncIterator[ToncenterClient]:
    c = ToncenterClient(
        NetworkGlobalID.MAINNET, base_url=f"{server}/api/v2", api_key="local", rps_limit=1000
    )
    await c.connect()
    try:
        yield c
    finally:
        await c.close()


def _key(label: str) -> PrivateKey:
    return PrivateKey(bytes(derive_key("tonutils-test", label)))


async def test_deploy_v5r1_send_ton_and_read_history(chain: Chain, client: ToncenterClient) -> None:
    wallet = WalletV5R1.from_private_key(client, _key("alice"))
    chain.faucet(wallet.address, 10 * TON)

    async def funded() -> bool:
        await wallet.refresh()
        return wallet.balance == 10 * TON

    await eventually(funded)
    assert wallet.is_uninit
    bob = Address((0, b"\x42" * 32))
    await wallet.transfer(bob, TON, body="hello", bounce=False)

    async def sent() -> bool:
        await wallet.refresh()
        return wallet.is_active and chain.account(bob).balance == TON

    await eventually(sent)
    assert 10 * TON - TON > wallet.balance > 10 * TON - TON - TON // 100
    txs = await wallet.get_transactions(limit=10)
    assert len(txs) == 2  # the faucet transfer in, then the deploying external
    assert txs[0].lt > txs[1].lt
    assert txs[0].in_msg is not None and txs[0].in_msg.is_external
    # Paginate with the lt/hash cursor one transaction at a time.
    older = await client.get_transactions(wallet.address, limit=1, from_lt=txs[1].lt)
    assert [t.lt for t in older] == [txs[1].lt]
    seqno = await wallet.run_get_method("seqno")
    assert seqno == [1]
    info = await client.get_info(bob)
    assert info.balance == TON and info.state.value == "uninit"
    config = await client.get_config()  # getConfigAll, parsed by tonutils itself
    assert 21 in config and 25 in config


async def test_jetton_transfer(chain: Chain, client: ToncenterClient) -> None:
    g = chain.genesis
    wallet = WalletV5R1.from_private_key(client, _key("payer"))
    chain.faucet(wallet.address, 5 * TON)
    chain.faucet(wallet.address, 1_000 * 10**6, asset="USDT")
    mine = g.jetton_wallet_address(wallet.address)

    async def has_usdt() -> bool:
        return chain.account(mine).status == "active" and chain.account(wallet.address).balance > 0

    await eventually(has_usdt)
    receiver = Address((0, b"\x77" * 32))
    await wallet.transfer_message(
        JettonTransferBuilder(
            destination=receiver,
            jetton_amount=250 * 10**6,
            jetton_master_address=g.usdt_master,
            forward_amount=1,
            forward_payload="invoice 17",
            bounce=True,
        )
    )
    theirs = g.jetton_wallet_address(receiver)

    async def arrived() -> bool:
        return chain.account(theirs).status == "active"

    await eventually(arrived)
    data = await client.run_get_method(theirs.to_str(False), "get_wallet_data")
    assert data[0] == 250 * 10**6
    data = await client.run_get_method(mine.to_str(False), "get_wallet_data")
    assert data[0] == 750 * 10**6
    # The receiver got a transfer_notification with 1 nanoton; the excess came back to us.
    rx = await client.get_transactions(receiver.to_str(False), limit=5)
    assert rx and rx[0].in_msg is not None
    assert rx[0].in_msg.body.begin_parse().load_uint(32) == 0x7362D09C


@pytest.mark.slow
async def test_highload_v3_batch_of_254(chain: Chain, client: ToncenterClient) -> None:
    hot = chain.genesis.wallet("hot")
    config = WalletHighloadV3Config(subwallet_id=HOT_SUBWALLET, timeout=HOT_TIMEOUT)
    wallet = WalletHighloadV3R1.from_private_key(
        client, PrivateKey(bytes.fromhex(hot.private_key_hex)), config=config
    )
    assert wallet.address == hot.address  # the genesis keys work as published
    recipients = [Address((0, i.to_bytes(2, "big") * 16)) for i in range(254)]
    messages = [TONTransferBuilder(r, TON // 100, bounce=False) for r in recipients]
    started = time.monotonic()
    batch = await wallet.batch_transfer_message(messages)

    async def settled() -> bool:
        return all(chain.account(r).balance == TON // 100 for r in recipients)

    await eventually(settled, within=30)
    assert time.monotonic() - started < 10
    txs = await wallet.get_transactions(limit=5)
    # External in, then the internal-to-self that carried 254 out messages.
    assert any(len(t.out_msgs) == 254 for t in txs)
    # The same signed batch again: highload v3 remembers its query_id and refuses it.
    with pytest.raises(Exception) as err:
        await client.send_message(batch.as_hex)
    assert "Exit code 36 != 0" in str(err.value)  # toncenter's words; 36: already executed
    rows = chain.store.account_transactions(hot.address.to_str(False), limit=10)
    (root,) = [r for r in rows if r.trace_id == r.hash]  # the batch's external starts a trace
    # tonutils packs 253 transfers plus a nested internal-to-self carrying the 254th:
    # external, two internals to itself, 254 deliveries, all in one settled trace.
    assert len(chain.store.trace_transactions(root.trace_id)) == 257


async def test_replayed_v5r1_message_is_refused_over_http(
    chain: Chain, client: ToncenterClient
) -> None:
    wallet = WalletV5R1.from_private_key(client, _key("replayer"))
    chain.faucet(wallet.address, 3 * TON)

    async def funded() -> bool:
        await wallet.refresh()
        return wallet.balance == 3 * TON

    await eventually(funded)
    sent = await wallet.transfer(wallet.address, TON // 10, bounce=False)

    async def landed() -> bool:
        await wallet.refresh()
        return wallet.is_active

    await eventually(landed)
    with pytest.raises(Exception) as err:
        await client.send_message(sent.as_hex)
    assert "Exit code 133 != 0" in str(err.value)  # toncenter's words; v5r1: bad seqno
    assert (await wallet.run_get_method("seqno")) == [1]
