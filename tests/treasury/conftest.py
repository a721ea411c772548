"""A local network over HTTP, the rail's chain reads, and signer wallets funded by its faucet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from tonutils.clients import ToncenterClient as TonutilsClient

from tests.localnet.conftest import chain, server  # noqa: F401  (the local network fixtures)
from tonrail.localnet.chain import Chain
from tonrail.localnet.genesis import TON, derive_key
from tonrail.rails.ton.api import ToncenterTonApi
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.treasury.service import wait_for
from tonrail.treasury.wallets import SignerWallet, open_client


@dataclass
class Net:
    chain: Chain
    url: str
    api: ToncenterTonApi
    client: TonutilsClient

    def seed(self, label: str) -> bytes:
        return bytes(derive_key("treasury-test", label))

    async def funded_wallet(self, label: str, ton: int = 100 * TON) -> SignerWallet:
        wallet = SignerWallet(self.client, self.seed(label))
        self.chain.faucet(wallet.address, ton)

        async def arrived() -> bool:
            return await wallet.balance() >= ton

        assert await wait_for(arrived, timeout_s=10, poll_s=0.05)
        return wallet


@pytest.fixture
async def net(chain: Chain, server: str) -> AsyncIterator[Net]:  # noqa: F811
    api = ToncenterTonApi(ToncenterClient([f"{server}/api/v2"], [f"{server}/api/v3"]))
    client = open_client(f"{server}/api/v2", "", "localnet")
    await client.connect()
    try:
        yield Net(chain, server, api, client)
    finally:
        await client.close()
        await api.aclose()
