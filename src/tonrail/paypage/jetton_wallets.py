"""The customer's own USDT jetton wallet, which a TON Connect jetton transfer is sent to:
asked of the USDT master (`get_wallet_address`) through toncenter, remembered per owner."""

from __future__ import annotations

from collections import OrderedDict

from tonrail.chain.network import resolve_network
from tonrail.rails.ton.api import ToncenterTonApi, jetton_wallet_of
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.settings import Settings

REMEMBERED = 10_000  # owners whose jetton wallet this process keeps (an address never changes)


class JettonWallets:
    """USDT jetton wallets by owner (raw addresses); the toncenter client opens on first use."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.network = resolve_network(settings)
        self._api: ToncenterTonApi | None = None
        self._known: OrderedDict[str, str] = OrderedDict()

    async def of(self, owner_raw: str) -> str:
        """The owner's USDT jetton wallet (raw); ValueError when the network has no USDT or
        the master refuses; ToncenterError when toncenter cannot answer."""
        master = self.network.usdt_master
        if not master:
            raise ValueError("this network has no USDT master configured")
        if owner_raw in self._known:
            self._known.move_to_end(owner_raw)
            return self._known[owner_raw]
        if self._api is None:
            self._api = ToncenterTonApi(ToncenterClient.from_network(self.network, self.settings))
        wallet = await jetton_wallet_of(self._api, master, owner_raw)
        self._known[owner_raw] = wallet
        if len(self._known) > REMEMBERED:
            self._known.popitem(last=False)
        return wallet

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
