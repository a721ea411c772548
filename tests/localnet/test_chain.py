"""The chain runs real signed messages: replay, expiry, signatures, bounces, fees, persistence."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey
from ton_core import Address

from tonrail.localnet.boc import b64
from tonrail.localnet.chain import Chain, SendError
from tonrail.localnet.genesis import TON

from .wallets import V4Wallet

NOW = 1_800_000_000


@pytest.fixture
def frozen() -> Chain:
    # A fixed clock makes storage fees, and so every fee, reproducible.
    c = Chain.open(None, clock=lambda: NOW)
    yield c  # type: ignore[misc]
    c.close()


async def _funded(chain: Chain, seed: bytes, amount: int = 10 * TON) -> V4Wallet:
    w = V4Wallet(SigningKey(seed))
    chain.faucet(w.address, amount)
    await chain.produce_block()
    assert chain.account(w.address).balance == amount
    return w


async def test_genesis_is_deterministic_and_funded(chain: Chain) -> None:
    again = Chain.open(None)
    try:
        assert again.genesis.to_json() == chain.genesis.to_json()
    finally:
        again.close()
    g = chain.genesis
    assert chain.account(g.usdt_master).status == "active"
    for w in g.demo_wallets:
        assert chain.account(w.address).balance == w.ton
    result = chain.run_get_method(g.usdt_master, "get_jetton_data", _empty_stack())
    assert result.success and result.vm_exit_code == 0


def _empty_stack():  # type: ignore[no-untyped-def]
    from ton_core import VmStack

    return VmStack.serialize([])


async def test_transfer_deploys_and_delivers(frozen: Chain) -> None:
    w = await _funded(frozen, b"\x01" * 32)
    dest = Address((0, b"\x10" * 32))
    frozen.send_external(b64(w.external(w.body(0, NOW + 60, dest, TON), deploy=True)))
    seqno_before = frozen.seqno
    block = await frozen.produce_block()
    assert block.seqno == seqno_before + 1
    assert block.tx_count == 2  # the wallet's external, then the recipient's internal
    assert frozen.account(w.address).status == "active"
    assert frozen.account(dest).balance == TON
    rows = frozen.store.account_transactions(w.address.to_str(False), limit=10)
    assert rows[0].lt > rows[1].lt
    first = rows[0]
    recv = frozen.store.account_transactions(dest.to_str(False), limit=1)[0]
    assert recv.trace_id == first.hash  # one trace from the external to the delivery
    assert recv.lt > first.lt


async def test_replayed_external_is_rejected(frozen: Chain) -> None:
    w = await _funded(frozen, b"\x02" * 32)
    msg = b64(w.external(w.body(0, NOW + 60, w.address, TON // 10), deploy=True))
    frozen.send_external(msg)
    await frozen.produce_block()
    with pytest.raises(SendError) as err:
        frozen.send_external(msg)
    assert err.value.exit_code == 33  # wallet v4: seqno mismatch


async def test_expired_external_is_rejected(frozen: Chain) -> None:
    w = await _funded(frozen, b"\x03" * 32)
    with pytest.raises(SendError) as err:
        frozen.send_external(b64(w.external(w.body(0, NOW - 1, w.address, 1), deploy=True)))
    assert err.value.exit_code == 36


async def test_wrong_signature_is_rejected(frozen: Chain) -> None:
    w = await _funded(frozen, b"\x04" * 32)
    body = w.body(0, NOW + 60, w.address, 1, signer=SigningKey(b"\x05" * 32))
    with pytest.raises(SendError) as err:
        frozen.send_external(b64(w.external(body, deploy=True)))
    assert err.value.exit_code == 35


async def test_external_rejected_at_block_time_leaves_no_transaction(frozen: Chain) -> None:
    w = await _funded(frozen, b"\x06" * 32)
    msg = w.external(w.body(0, NOW + 60, w.address, TON // 10), deploy=True)
    h1, _ = frozen.send_external(b64(msg))
    # The same seqno signed differently passes the pre-check but loses the race in the block.
    other = w.external(w.body(0, NOW + 61, w.address, TON // 10), deploy=True)
    h2, _ = frozen.send_external(b64(other))
    await frozen.produce_block()
    assert frozen.rejected_reason(h2) is not None
    assert frozen.store.messages(msg_hash=h1, direction="in")
    assert not frozen.store.messages(msg_hash=h2, direction="in")


async def test_bounceable_transfer_to_missing_account_bounces_minus_fees(frozen: Chain) -> None:
    w = await _funded(frozen, b"\x07" * 32)
    frozen.send_external(b64(w.external(w.body(0, NOW + 60, w.address, 1), deploy=True)))
    await frozen.produce_block()
    before = frozen.account(w.address).balance
    missing = Address((0, b"\x99" * 32))
    frozen.send_external(b64(w.external(w.body(1, NOW + 60, missing, 2 * TON, bounce=True))))
    block = await frozen.produce_block()
    assert block.tx_count == 3  # send, bounce at the missing account, bounced back
    assert frozen.account(missing).status == "nonexist"
    after = frozen.account(w.address).balance
    lost = before - after
    assert 0 < lost < TON // 100  # only fees are gone; the 2 TON came back
    back = frozen.store.account_transactions(w.address.to_str(False), limit=1)[0]
    from tonrail.localnet.render import decode_tx

    d = decode_tx(back)
    assert d.in_msg is not None and d.in_msg.bounced
    assert 2 * TON - TON // 100 < d.in_msg.value < 2 * TON


async def test_fees_charged_equal_estimate(frozen: Chain) -> None:
    w = await _funded(frozen, b"\x08" * 32)
    frozen.send_external(b64(w.external(w.body(0, NOW + 60, w.address, 1), deploy=True)))
    await frozen.produce_block()
    dest = Address((0, b"\x11" * 32))
    body = w.body(1, NOW + 60, dest, TON)
    estimate = frozen.estimate_fee(w.external(body), ignore_chksig=False)
    unsigned = frozen.estimate_fee(w.external(body), ignore_chksig=True)
    before = frozen.account(w.address).balance
    frozen.send_external(b64(w.external(body)))
    await frozen.produce_block()
    spent = before - frozen.account(w.address).balance - TON
    predicted = estimate.in_fwd_fee + estimate.storage_fee + estimate.gas_fee + estimate.fwd_fee
    assert spent == predicted
    assert unsigned == estimate


async def test_state_persists_across_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "chain.sqlite3")
    first = Chain.open(path)
    w = V4Wallet(SigningKey(b"\x09" * 32))
    first.faucet(w.address, 3 * TON)
    await first.produce_block()
    seqno, lt = first.seqno, first.lt
    first.close()
    second = Chain.open(path)
    try:
        assert second.seqno == seqno and second.lt == lt
        assert second.account(w.address).balance == 3 * TON
        await second.produce_block()
        assert second.seqno == seqno + 1
        assert second.genesis.usdt_master == first.genesis.usdt_master
    finally:
        second.close()


async def test_logical_time_order_across_a_trace(frozen: Chain) -> None:
    g = frozen.genesis
    w = await _funded(frozen, b"\x0a" * 32)
    frozen.faucet(w.address, 5 * 10**6, asset="USDT")
    await frozen.produce_block()
    rows = frozen.store.transactions(limit=50, mc_seqno=frozen.seqno)
    lts = [r.lt for r in rows]
    assert lts == sorted(lts, reverse=True) and len(set(lts)) == len(lts)
    jw = g.jetton_wallet_address(w.address)
    assert frozen.account(jw).status == "active"
    assert len({r.trace_id for r in rows}) == 1


async def test_producer_stops_between_blocks(chain: Chain) -> None:
    await chain.start()
    await asyncio.sleep(0.3)
    await chain.stop()
    seqno = chain.seqno
    last = chain.store.last_block()
    assert last is not None and last.seqno == seqno > 4  # genesis made 3; the timer made more
    await asyncio.sleep(0.15)
    assert chain.seqno == seqno  # nothing runs after stop()


async def test_fund_settles_in_one_block(chain: Chain) -> None:
    target = Address((0, b"\x88" * 32))
    await chain.fund(target, 2 * TON)
    await chain.fund(target, 7 * 10**6, asset="USDT")
    assert chain.account(target).balance == 2 * TON
    jw = chain.genesis.jetton_wallet_address(target)
    data = chain.account(jw).data
    assert data is not None and data.begin_parse().load_coins() == 7 * 10**6
    with pytest.raises(ValueError):
        await chain.fund(target, 1, asset="BTC")


async def test_wait_block_returns_after_the_next_block(chain: Chain) -> None:
    seqno = chain.seqno
    await chain.start()
    try:
        async with asyncio.timeout(2):
            await chain.wait_block()
        assert chain.seqno > seqno
    finally:
        await chain.stop()


async def test_a_copy_of_a_waiting_external_is_queued_once(frozen: Chain) -> None:
    w = await _funded(frozen, b"\x0b" * 32)
    frozen.faults.update({"inclusion_delay_ms": 60_000})  # it waits in the queue
    boc = b64(w.external(w.body(0, NOW + 60, w.address, 1), deploy=True))
    first = frozen.send_external(boc)
    assert frozen.send_external(boc) == first  # the copy: accepted, not queued again
    assert frozen.queue_size() == 1
    frozen.faults.update({"inclusion_delay_ms": 0})
    await frozen.produce_block()
    assert frozen.account(w.address).status == "active"
    assert len(frozen.store.messages(msg_hash=first[0])) == 1
    with pytest.raises(SendError):
        frozen.send_external(boc)  # landed: a copy now is a replay


async def test_a_copy_sent_while_its_block_runs_is_not_queued_again(
    frozen: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await _funded(frozen, b"\x0c" * 32)
    boc = b64(w.external(w.body(0, NOW + 60, w.address, 1), deploy=True))
    first = frozen.send_external(boc)
    copies: list[tuple[bytes, bytes]] = []
    apply = frozen._apply

    def apply_after_a_copy(*args: Any) -> None:
        if not copies:
            copies.append(frozen.send_external(boc))  # a sender's re-send, mid-block
        apply(*args)

    monkeypatch.setattr(frozen, "_apply", apply_after_a_copy)
    await frozen.produce_block()
    monkeypatch.undo()
    assert copies == [first]
    assert frozen.queue_size() == 0
    assert frozen.rejected_reason(first[0]) is None  # the copy was not run again as a replay
    assert frozen.account(w.address).status == "active"
    with pytest.raises(SendError):
        frozen.send_external(boc)  # once written, a copy is checked, and is a replay
