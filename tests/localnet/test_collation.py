"""Blocks as mainnet's collators make them: a block of the timer takes messages for at most
`collate_ms`, and the rest of a trace waits, persisted, for the next block."""

from __future__ import annotations

from pathlib import Path

import pytest
from ton_core import Address

from tonrail.localnet.chain import Chain
from tonrail.localnet.faults import Faults
from tonrail.localnet.genesis import TON

USDT = 10**6


def _jetton_balance(chain: Chain, owner: Address) -> int:
    data = chain.account(chain.genesis.jetton_wallet_address(owner)).data
    assert data is not None
    return int(data.begin_parse().load_coins())


def _trace_rows(chain: Chain, since_seqno: int) -> list[tuple[int, int, bytes]]:
    """(block seqno, lt, trace id) of every transaction after block `since_seqno`."""
    rows = chain.store.transactions(limit=1000)
    return sorted((r.mc_seqno, r.lt, r.trace_id) for r in rows if r.mc_seqno > since_seqno)


async def test_a_timed_block_stops_at_its_budget_and_the_rest_follows() -> None:
    chain = Chain.open(None, block_ms=50, collate_ms=1)
    try:
        start = chain.seqno
        owners = [Address((0, bytes([0x60 + i]) * 32)) for i in range(3)]
        for owner in owners:
            chain.faucet(owner, 2 * TON)
            chain.faucet(owner, 7 * USDT, asset="USDT")
        first = await chain.produce_block(timed=True)
        assert first.tx_count >= 1  # a block always takes a message
        assert chain.queue_size() > 0  # 1 ms is far less than these traces take
        for _ in range(200):
            if chain.queue_size() == 0:
                break
            await chain.produce_block(timed=True)
        assert chain.queue_size() == 0
        for owner in owners:
            assert chain.account(owner).balance == 2 * TON
            assert _jetton_balance(chain, owner) == 7 * USDT
        rows = _trace_rows(chain, start)
        assert len({seqno for seqno, _, _ in rows}) > 1  # the traces spanned blocks
        lts = [lt for _, lt, _ in rows]
        assert lts == sorted(lts) and len(set(lts)) == len(lts)  # lt grows across blocks
    finally:
        chain.close()


async def test_a_block_by_hand_runs_every_trace_whole() -> None:
    chain = Chain.open(None, block_ms=50, collate_ms=1)
    try:
        owner = Address((0, b"\x70" * 32))
        chain.faucet(owner, 7 * USDT, asset="USDT")
        await chain.produce_block()  # not the timer's: no budget
        assert chain.queue_size() == 0
        assert _jetton_balance(chain, owner) == 7 * USDT
    finally:
        chain.close()


async def test_a_trace_cut_between_blocks_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "chain.sqlite3")
    first = Chain.open(path)  # genesis whole, then one transaction a block
    first.faults.update({"max_tx_per_block": 1})
    owner = Address((0, b"\x71" * 32))
    first.faucet(owner, 7 * USDT, asset="USDT")
    block = await first.produce_block()
    assert block.tx_count == 1 and first.queue_size() > 0  # the trace's rest is in flight
    start, waiting = block.seqno - 1, first.queue_size()
    first.close()
    second = Chain.open(path, faults=Faults(max_tx_per_block=1))
    try:
        assert second.queue_size() == waiting  # restored from the block's snapshot
        for _ in range(50):
            if second.queue_size() == 0:
                break
            await second.produce_block()
        assert second.queue_size() == 0
        assert _jetton_balance(second, owner) == 7 * USDT
        rows = _trace_rows(second, start)
        assert len({trace for _, _, trace in rows}) == 1  # one trace across the restart
        assert len(rows) >= 3  # mint, internal transfer, notification...: one a block
        assert len({seqno for seqno, _, _ in rows}) == len(rows)
    finally:
        second.close()


def test_a_limit_of_nothing_is_refused() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match="collate_ms must be more than 0"):
            Chain.open(None, block_ms=50, collate_ms=bad)
