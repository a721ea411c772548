"""docs/LOCALNET.md's `@ton/ton` example, run under node against a real local network: the
genesis key as a seed (`keyPairFromSeed`), a v5r1 wallet deployed by its first transfer, and
`getWorkchainShards` (jsonRPC `shards`)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path

from tonrail.localnet.chain import Chain

from .test_tonutils_client import eventually

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "LOCALNET.md"
NODE_MODULES = REPO / "node_modules"


def _example() -> str:
    """The first ```js block of the docs (the `@ton/ton` example)."""
    match = re.search(r"```js\n(.*?)```", DOCS.read_text(), re.S)
    assert match is not None, "docs/LOCALNET.md has no ```js block"
    return match.group(1)


async def test_docs_ton_ton_example_runs(server: str, chain: Chain, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed (make setup installs the npm packages with it)"
    assert (NODE_MODULES / "@ton" / "ton").is_dir(), "run `make setup` (npm ci) first"
    script = tmp_path / "example.cjs"
    script.write_text(_example())
    g = chain.genesis
    customer, deposit = g.wallet("customer"), g.wallet("deposit")
    before = chain.account(deposit.address).balance
    env = {**os.environ, "LOCALNET": server, "NODE_PATH": str(NODE_MODULES)}
    proc = await asyncio.create_subprocess_exec(
        node,
        str(script),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    # The seed gave the genesis key pair: @ton/ton's default v5r1 ids give the genesis address.
    assert result["address"] == customer.address.to_str(False)
    assert result["seqno"] == 0
    # Read after the send: before or after the transfer (and its fee) landed.
    assert customer.ton - 1_600_000_000 < int(result["balance"]) <= customer.ton
    assert result["shards"] == [[0, "-9223372036854775808", result["shards"][0][2]]]
    assert 1 <= result["shards"][0][2] <= chain.seqno

    async def paid() -> bool:  # 1.5 TON in, less the (uninit) receiver's storage fee
        return chain.account(deposit.address).balance > before + 1_490_000_000

    await eventually(paid, within=30)
    assert chain.account(customer.address).status == "active"  # deployed by the transfer
