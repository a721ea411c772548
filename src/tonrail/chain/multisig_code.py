"""The compiled code of TON's official multisig v2 (`multisig_v2.json`, from the contract's
own repository; source, commit and licence noted in the file).

The multisig deploys one Order contract per order; it names the order code by a library
cell (exotic type 2 + the code's hash), so a network that runs the multisig must hold the
order code as a public library: mainnet's masterchain does, and so does the local network.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from ton_core import Cell

LIBRARY_CELL_TYPE = 2


@cache
def _bundle() -> dict[str, Any]:
    text = resources.files("tonrail.chain").joinpath("multisig_v2.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def _code(name: str) -> Cell:
    entry = _bundle()[name]
    cell = Cell.one_from_boc(bytes.fromhex(entry["boc_hex"]))
    if bytes(cell.hash).hex() != entry["code_hash"]:
        raise ValueError(f"multisig_v2.json: the {name} code does not hash to its code_hash")
    return cell


@cache
def multisig_code() -> Cell:
    """The multisig wallet's code cell."""
    return _code("multisig")


@cache
def order_code() -> Cell:
    """The order contract's code cell (what the network's library holds)."""
    return _code("order")


def source_commit() -> str:
    """The commit of ton-blockchain/multisig-contract-v2 the code was taken from."""
    return str(_bundle()["commit"])
