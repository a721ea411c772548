"""The fast parse of the network's own BOCs builds exactly the cells pytoniq_core builds."""

from __future__ import annotations

import random
from typing import Any

import pytest
from nacl.signing import SigningKey
from ton_core import Address, Cell, begin_cell

from tonrail.localnet import fast_boc
from tonrail.localnet.boc import trusted_cell
from tonrail.localnet.chain import Chain
from tonrail.localnet.genesis import TON

from .wallets import V4Wallet

USDT = 10**6


def _same(fast: Any, slow: Any, seen: set[bytes] | None = None) -> int:
    """Every field `Cell.__init__` sets, compared cell by cell; returns the cells compared."""
    seen = set() if seen is None else seen
    if slow.hash in seen:
        return 0
    seen.add(slow.hash)
    assert type(fast) is type(slow) is Cell
    assert type(fast.bits) is type(slow.bits)
    assert fast.bits == slow.bits
    assert fast.type_ == slow.type_ and fast.is_exotic == slow.is_exotic
    assert fast.level_mask.mask == slow.level_mask.mask
    assert fast._descriptors == slow._descriptors
    assert fast._data_bytes == slow._data_bytes
    assert fast._depths == slow._depths and fast.get_depth() == slow.get_depth()
    assert fast._hashes == slow._hashes and fast.hash == slow.hash
    assert len(fast.refs) == len(slow.refs)
    return 1 + sum(_same(f, s, seen) for f, s in zip(fast.refs, slow.refs, strict=True))


def _check(boc: bytes) -> int:
    fast = fast_boc.parse(boc)
    count = _same(fast, Cell.one_from_boc(boc))
    assert fast.to_boc() == Cell.one_from_boc(boc).to_boc()  # serializes back the same
    assert fast.begin_parse().remaining_bits == len(fast.bits)
    return count


def _random_tree(rng: random.Random, depth: int = 0) -> Cell:
    b = begin_cell()
    bits = rng.choice([0, 1, 7, 8, 9, 63, 64, 257, rng.randrange(0, 1024)])
    for _ in range(bits):
        b.store_bit(rng.randrange(2))
    if depth < 4:
        for _ in range(rng.randrange(0, 5 if bits <= 1023 else 0)):
            b.store_ref(_random_tree(rng, depth + 1))
    return b.end_cell()


def test_random_trees_parse_as_pytoniq_parses_them() -> None:
    rng = random.Random(20261205)
    compared = 0
    for _ in range(60):
        tree = _random_tree(rng)
        for boc in (
            tree.to_boc(),
            tree.to_boc(has_idx=True, hash_crc32=True),
            tree.to_boc(has_cache_bits=True),
        ):
            compared += _check(bytes(boc))
    assert compared > 1000


def test_shared_subtrees_and_a_library_cell() -> None:
    leaf = begin_cell().store_uint(5, 3).end_cell()
    library = Cell(  # an exotic library cell: type 2, then the library's hash
        begin_cell().store_uint(2, 8).store_bytes(b"\x11" * 32).end_cell().bits, [], 2
    )
    root = begin_cell().store_ref(leaf).store_ref(leaf).store_ref(library).end_cell()
    assert _check(bytes(root.to_boc())) == 3  # the shared leaf is one cell


def test_what_it_does_not_take_goes_to_pytoniq() -> None:
    empty = Cell.empty()
    with pytest.raises(fast_boc.Unusual):
        fast_boc.parse(b"not a boc at all")
    pruned = Cell(  # a pruned branch (level 1): pytoniq's general parse
        begin_cell()
        .store_uint(1, 8)
        .store_uint(1, 8)
        .store_bytes(b"\x22" * 32)
        .store_uint(0, 16)
        .end_cell()
        .bits,
        [],
        1,
    )
    holder = begin_cell().store_ref(pruned).end_cell()
    boc = bytes(holder.to_boc())
    with pytest.raises(fast_boc.Unusual):
        fast_boc.parse(boc)
    assert trusted_cell(boc).hash == holder.hash  # the fallback
    assert trusted_cell(bytes(empty.to_boc())).hash == empty.hash  # the fast parse
    tree = _random_tree(random.Random(7))
    whole = bytes(tree.to_boc())
    for cut in (len(whole) - 1, len(whole) // 2, 8):
        with pytest.raises(fast_boc.Unusual):
            fast_boc.parse(whole[:cut])
        with pytest.raises(Exception) as refused:  # pytoniq_core says what is wrong
            trusted_cell(whole[:cut])
        assert not isinstance(refused.value, (IndexError, fast_boc.Unusual))


async def test_every_transaction_of_a_busy_chain_parses_as_pytoniq_parses_it() -> None:
    chain = Chain.open(None, block_ms=50)
    try:
        w = V4Wallet(SigningKey(b"\x51" * 32))
        chain.faucet(w.address, 10 * TON)
        for i in range(3):
            owner = Address((0, bytes([0x52 + i]) * 32))
            chain.faucet(owner, (i + 1) * USDT, asset="USDT")
        await chain.produce_block()
        payees = [Address((0, bytes([0x60 + i]) * 32)) for i in range(4)]
        body = w.body(0, chain.now() + 60, payees[0], TON)
        chain.send_external(w.external(body, deploy=True).to_boc())
        await chain.produce_block()
        compared = 0
        rows = chain.store.transactions(limit=500)
        assert len(rows) > 10
        for row in rows:
            compared += _check(row.boc)
        assert compared > 100
    finally:
        chain.close()
