"""Public libraries of the local network: code cells that contracts name by hash.

On the real network these live in masterchain accounts (published by a "librarian"); the
emulator takes them as one dictionary `HashmapE 256 ^Cell` keyed by each cell's hash. The
local network publishes what mainnet publishes for the contracts tonrail runs: the order code
of TON's multisig v2.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from ton_core import Cell, HashMap

from tonrail.chain.multisig_code import order_code


def mainnet_libraries() -> list[Cell]:
    """The public libraries the local network holds from genesis on."""
    return [order_code()]


def libraries_b64(cells: Sequence[Cell]) -> str | None:
    """The emulator's library dictionary for `cells` (None when there are none)."""
    if not cells:
        return None
    table = HashMap(256, value_serializer=lambda cell, b: b.store_ref(cell))
    for cell in cells:
        table.set_int_key(int.from_bytes(bytes(cell.hash), "big"), cell)
    root = table.serialize()
    assert root is not None
    return base64.b64encode(root.to_boc()).decode()
