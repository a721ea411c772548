"""The customer's own USDT jetton wallet, which a TON Connect jetton transfer is sent to:
asked of the USDT master (`get_wallet_address`) through toncenter, remembered per (master,
owner), so repeated lookups (a reloaded page, several invoices) never reach toncenter again."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

from tonrail.chain.network import resolve_network
from tonrail.rails.ton.api import ToncenterTonApi, jetton_wallet_of
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.settings import Settings

REMEMBERED = 10_000  # answers this process keeps (a jetton wallet address never changes)


class JettonWallets:
    """USDT jetton wallets by owner (raw addresses); the toncenter client opens on first use."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.network = resolve_network(settings)
        self._api: ToncenterTonApi | None = None
        self._known: OrderedDict[tuple[str, str], str] = OrderedDict()
        # Lookups under way: concurrent requests for one owner share one toncenter call.
        self._asking: dict[tuple[str, str], asyncio.Task[str]] = {}

    async def of(self, owner_raw: str) -> str:
        """The owner's USDT jetton wallet (raw); ValueError when the network has no USDT or
        the master refuses; ToncenterError when toncenter cannot answer (neither is kept)."""
        master = self.network.usdt_master
        if not master:
            raise ValueError("this network has no USDT master configured")
        key = (master, owner_raw)
        if key in self._known:
            self._known.move_to_end(key)
            return self._known[key]
        asking = self._asking.get(key)
        if asking is None:
            # A task of its own: a customer who leaves does not cancel the others' lookup.
            asking = asyncio.create_task(self._ask(key))
            self._asking[key] = asking
            asking.add_done_callback(self._done(key))
        return await asyncio.shield(asking)

    async def _ask(self, key: tuple[str, str]) -> str:
        master, owner_raw = key
        wallet = await jetton_wallet_of(self._toncenter(), master, owner_raw)
        self._known[key] = wallet
        if len(self._known) > REMEMBERED:
            self._known.popitem(last=False)
        return wallet

    def _done(self, key: tuple[str, str]) -> Callable[[asyncio.Task[str]], None]:
        def forget(task: asyncio.Task[str]) -> None:
            self._asking.pop(key, None)
            if not task.cancelled():
                task.exception()  # retrieved: its waiters (if any) got it already

        return forget

    def _toncenter(self) -> ToncenterTonApi:
        if self._api is None:
            self._api = ToncenterTonApi(ToncenterClient.from_network(self.network, self.settings))
        return self._api

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
