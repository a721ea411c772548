"""The few chain reads and writes the TON rail needs, behind one small protocol.

`ToncenterTonApi` adapts the toncenter client (retries, rate limits, failover between
endpoints live there) to the rail's normalized view of transactions.
"""

from __future__ import annotations

import base64
from typing import Any, Protocol

from ton_core import Address, Cell, begin_cell

from tonrail.rails.ton.chain_view import Tx, raw, tx_of
from tonrail.rails.ton.toncenter import ToncenterClient, ToncenterError


class TonApi(Protocol):
    async def send_boc(self, boc_b64: str) -> None: ...

    async def tx_by_in_message(self, msg_hash: str) -> Tx | None: ...

    async def account_transactions(self, account: str, after_lt: int, limit: int) -> list[Tx]: ...

    async def account_state(self, address: str) -> tuple[str, int]: ...

    async def last_lt(self, address: str) -> int: ...

    async def synced_at(self, address: str) -> int: ...

    async def transactions_before(self, account: str, before_lt: int, limit: int) -> list[Tx]: ...

    async def run_get_method(
        self, address: str, method: str, stack: list[list[Any]]
    ) -> tuple[int, list[Any]]: ...


class ToncenterTonApi:
    """TonApi over toncenter v2 (send, get-methods, state) and v3 (transactions)."""

    def __init__(self, client: ToncenterClient):
        self.client = client

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send_boc(self, boc_b64: str) -> None:
        await self.client.send_boc_return_hash(boc_b64)

    async def tx_by_in_message(self, msg_hash: str) -> Tx | None:
        page = await self.client.transactions_by_message(msg_hash, "in")
        return tx_of(page.transactions[0]) if page.transactions else None

    async def account_transactions(self, account: str, after_lt: int, limit: int) -> list[Tx]:
        page = await self.client.transactions(
            account, start_lt=after_lt + 1, limit=limit, sort="asc"
        )
        return [tx_of(t) for t in page.transactions]

    async def account_state(self, address: str) -> tuple[str, int]:
        info = await self.client.get_address_information(address)
        return info.state, info.balance

    async def last_lt(self, address: str) -> int:
        info = await self.client.get_address_information(address)
        return info.last_transaction_id.lt

    async def synced_at(self, address: str) -> int:
        """The chain's time (unix s) of the state toncenter answers from (`sync_utime`)."""
        info = await self.client.get_address_information(address)
        return info.sync_utime

    async def transactions_before(self, account: str, before_lt: int, limit: int) -> list[Tx]:
        """Transactions of `account` older than `before_lt` (0: from the newest), newest
        first: for reading history backwards."""
        page = await self.client.transactions(
            account, end_lt=before_lt - 1 if before_lt else None, limit=limit, sort="desc"
        )
        return [tx_of(t) for t in page.transactions]

    async def run_get_method(
        self, address: str, method: str, stack: list[list[Any]]
    ) -> tuple[int, list[Any]]:
        result = await self.client.run_get_method(address, method, stack)
        return result.exit_code, list(result.stack)


def address_slice(address: str) -> list[Any]:
    """An address as a toncenter v2 stack entry (`tvm.Slice` of a BOC)."""
    cell = begin_cell().store_address(Address(address)).end_cell()
    return ["tvm.Slice", base64.b64encode(cell.to_boc()).decode()]


def stack_address(entry: list[Any]) -> str:
    """Read an address returned on a v2 stack (`cell`/`slice` with a `bytes` BOC)."""
    value = entry[1]
    boc = value["bytes"] if isinstance(value, dict) else value
    address = Cell.one_from_boc(base64.b64decode(boc)).begin_parse().load_address()
    if not isinstance(address, Address):
        raise ValueError("the stack entry is not an internal address")
    return raw(address)


async def jetton_wallet_of(api: TonApi, master: str, owner: str) -> str:
    """Our jetton wallet for `master`, asked of the master itself (`get_wallet_address`)."""
    exit_code, stack = await api.run_get_method(
        master, "get_wallet_address", [address_slice(owner)]
    )
    if exit_code != 0 or not stack:
        raise ValueError(f"get_wallet_address on {master} failed with exit code {exit_code}")
    return stack_address(stack[0])


async def jetton_balance(api: TonApi, jetton_wallet: str) -> int:
    """Balance of a jetton wallet (`get_wallet_data`); 0 while it is not deployed."""
    try:
        exit_code, stack = await api.run_get_method(jetton_wallet, "get_wallet_data", [])
    except ToncenterError as exc:
        if exc.retryable:
            raise
        return 0  # not deployed: toncenter refuses to run get-methods there
    if exit_code != 0 or not stack:
        return 0
    value = stack[0][1]
    return int(value, 16) if isinstance(value, str) else int(value)
