"""A transaction parsed once: the block's parse handed to the API that lists it, trusted BOCs
parsed without their CRC, and a transaction's own fields read without its messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey
from ton_core import Address, Cell, Transaction, begin_cell

from tonrail.localnet.boc import b64, cell_from, trusted_cell
from tonrail.localnet.chain import Chain
from tonrail.localnet.genesis import TON
from tonrail.localnet.render import decode_tx, tx_head
from tonrail.localnet.toncenter_v3 import _compact, transaction_v3
from tonrail.localnet.tx_cells import FOLLOW_S, TxCells

from .wallets import V4Wallet

USDT = 10**6


@pytest.fixture
async def http(chain: Chain) -> AsyncIterator[httpx.AsyncClient]:
    from tonrail.localnet.server import create_app

    transport = httpx.ASGITransport(app=create_app(chain, manage_lifecycle=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://localnet") as c:
        yield c


def _crc_boc(cell: Cell) -> bytes:
    boc = cell.to_boc(hash_crc32=True)
    assert boc[4] & 0x40  # the CRC flag, and the checksum in the last 4 bytes
    return bytes(boc)


def _tree() -> Cell:
    leaves = [begin_cell().store_uint(i, 32).store_bytes(b"x" * 40).end_cell() for i in range(4)]
    root = begin_cell().store_uint(7, 8)
    for leaf in leaves:
        root.store_ref(leaf)
    return root.end_cell()


def test_a_trusted_boc_parses_as_the_checked_one() -> None:
    cell = _tree()
    boc = _crc_boc(cell)
    assert trusted_cell(boc).hash == cell_from(boc).hash == cell.hash
    assert trusted_cell(bytes(cell.to_boc())).hash == cell.hash  # no CRC: parsed as is


def test_a_client_boc_with_a_bad_crc_is_refused_a_trusted_one_is_not_checked() -> None:
    cell = _tree()
    broken = _crc_boc(cell)[:-1] + b"\x00"
    if broken == _crc_boc(cell):
        broken = _crc_boc(cell)[:-1] + b"\x01"
    with pytest.raises(Exception, match=r"(?i)crc"):
        cell_from(broken)  # from a client: checked
    assert trusted_cell(broken).hash == cell.hash  # our own: the checksum is not read


def test_tx_cells_keep_only_followed_accounts_and_hand_a_parse_over_once() -> None:
    now = [1000.0]
    cells = TxCells(kept_bytes=100, clock=lambda: now[0])
    cell = _tree()
    boc = bytes(cell.to_boc())
    cells.keep("0:AA", b"t1", cell, 10)
    assert cells.take(b"t1", boc) is not cell  # not followed: parsed again
    cells.follow("0:aa")
    cells.keep("0:AA", b"t1", cell, 10)
    assert cells.take(b"t1", boc) is cell and cells.shared == 1
    assert cells.take(b"t1", boc) is not cell  # handed over once
    now[0] += FOLLOW_S + 1
    cells.keep("0:AA", b"t2", cell, 10)  # no longer followed
    assert cells.take(b"t2", boc) is not cell
    assert cells.shared == 1


def test_tx_cells_drop_the_oldest_beyond_their_budget() -> None:
    cells = TxCells(kept_bytes=100)
    cells.follow("0:AA")
    kept = [_tree() for _ in range(4)]
    for i, cell in enumerate(kept):
        cells.keep("0:AA", bytes([i]), cell, 40)  # 160 bytes > 100: the first two go
    boc = bytes(kept[0].to_boc())
    assert cells.take(bytes([0]), boc) is not kept[0]
    assert cells.take(bytes([1]), boc) is not kept[1]
    assert cells.take(bytes([2]), boc) is kept[2]
    assert cells.take(bytes([3]), boc) is kept[3]


def _same_head(cell: Cell) -> None:
    full: Any = Transaction.deserialize(cell.begin_parse())
    head = tx_head(cell)
    assert head.prev_trans_hash == full.prev_trans_hash
    assert head.prev_trans_lt == full.prev_trans_lt
    assert head.orig_status.type_ == full.orig_status.type_
    assert head.end_status.type_ == full.end_status.type_
    assert head.total_fees.grams == full.total_fees.grams
    assert repr(head.description) == repr(full.description)  # every field, recursively


async def test_a_followed_accounts_listing_renders_the_blocks_parse_as_a_fresh_one(
    chain: Chain, http: httpx.AsyncClient
) -> None:
    w = V4Wallet(SigningKey(b"\x41" * 32))
    chain.faucet(w.address, 10 * TON)
    chain.faucet(w.address, 50 * USDT, asset="USDT")
    await chain.produce_block()
    account = w.address.to_str(False)
    r = await http.get("/api/v3/transactions", params={"account": account, "limit": 10})
    assert r.status_code == 200
    before = chain.tx_cells.shared
    dest = Address((0, b"\x42" * 32))
    boc = b64(w.external(w.body(0, chain.now() + 60, dest, TON), deploy=True))
    assert (await http.post("/api/v3/message", json={"boc": boc})).status_code == 200
    await chain.produce_block()
    r = await http.get("/api/v3/transactions", params={"account": account, "limit": 10})
    listed = r.json()["transactions"]
    assert chain.tx_cells.shared == before + 1  # the wallet's new transaction: one parse
    rows = chain.store.account_transactions(account.lower(), limit=10)
    assert rows and len(rows) == len(listed)
    for row, rendered in zip(rows, listed, strict=True):
        assert _compact(transaction_v3(decode_tx(row))) == rendered  # as from its BOC alone
        _same_head(trusted_cell(row.boc))
    # Every kind of transaction the chain made (jetton mints, bounces, deploys): same fields.
    for row in chain.store.transactions(limit=200):
        _same_head(trusted_cell(row.boc))
