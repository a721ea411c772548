"""The few chain reads and writes the TON rail needs, behind one protocol.

`ToncenterTonApi` speaks toncenter v2 (sending, get-methods, account state) and v3
(transactions by message, account transactions); the local network serves the same API.
"""

from __future__ import annotations

import base64
from typing import Any, Protocol

import httpx
from ton_core import Address, Cell, begin_cell

from tonrail.errors import TonrailError
from tonrail.rails.ton.chain_view import Tx, parse_tx


class TonApiError(TonrailError):
    """The network refused or could not answer; `kind` says which (rejected is final)."""

    code = "ton_api_error"
    status = 502

    def __init__(self, message: str, kind: str):
        super().__init__(message, code=f"ton_api_{kind}")
        self.kind = kind


class TonApi(Protocol):
    async def send_boc(self, boc_b64: str) -> None: ...

    async def tx_by_in_message(self, msg_hash: str) -> Tx | None: ...

    async def account_transactions(self, account: str, after_lt: int, limit: int) -> list[Tx]: ...

    async def account_state(self, address: str) -> tuple[str, int]: ...

    async def run_get_method(
        self, address: str, method: str, stack: list[list[Any]]
    ) -> tuple[int, list[Any]]: ...


class ToncenterTonApi:
    """TonApi over a toncenter-compatible HTTP API (v2 and v3 base URLs)."""

    def __init__(self, v2_url: str, v3_url: str, api_key: str = "", timeout: float = 10.0):
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout)
        self.v2 = v2_url.rstrip("/")
        self.v3 = v3_url.rstrip("/")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _v2(self, method: str, payload: dict[str, Any]) -> Any:
        try:
            r = await self._http.post(f"{self.v2}/{method}", json=payload)
        except httpx.HTTPError as exc:
            raise TonApiError(
                f"toncenter unreachable: {type(exc).__name__}", "unavailable"
            ) from exc
        return self._result(r)

    async def _v3(self, path: str, params: dict[str, Any]) -> Any:
        try:
            r = await self._http.get(f"{self.v3}/{path}", params=params)
        except httpx.HTTPError as exc:
            raise TonApiError(
                f"toncenter unreachable: {type(exc).__name__}", "unavailable"
            ) from exc
        if r.status_code == 429:
            raise TonApiError("toncenter rate limit", "rate_limited")
        if r.status_code >= 500:
            raise TonApiError(f"toncenter answered {r.status_code}", "unavailable")
        try:
            body = r.json()
        except ValueError:
            raise TonApiError(
                "toncenter answered something that is not JSON", "bad_response"
            ) from None
        if r.status_code >= 400:
            raise TonApiError(str(body.get("error", body))[:200], "rejected")
        return body

    @staticmethod
    def _result(r: httpx.Response) -> Any:
        if r.status_code == 429:
            raise TonApiError("toncenter rate limit", "rate_limited")
        if r.status_code in (502, 503, 504):
            raise TonApiError(f"toncenter answered {r.status_code}", "unavailable")
        try:
            body = r.json()
        except ValueError:
            kind = "unavailable" if r.status_code >= 500 else "bad_response"
            raise TonApiError("toncenter answered something that is not JSON", kind) from None
        if not isinstance(body, dict) or "ok" not in body:
            raise TonApiError("toncenter answer has no 'ok'", "bad_response")
        if not body["ok"]:
            # A node error (bad message, failed get-method): repeating it will not help.
            raise TonApiError(str(body.get("error"))[:300], "rejected")
        return body["result"]

    async def send_boc(self, boc_b64: str) -> None:
        await self._v2("sendBocReturnHash", {"boc": boc_b64})

    async def tx_by_in_message(self, msg_hash: str) -> Tx | None:
        body = await self._v3("transactionsByMessage", {"msg_hash": msg_hash, "direction": "in"})
        txs = [parse_tx(t) for t in body.get("transactions", [])]
        return txs[0] if txs else None

    async def account_transactions(self, account: str, after_lt: int, limit: int) -> list[Tx]:
        body = await self._v3(
            "transactions",
            {"account": account, "start_lt": after_lt + 1, "limit": limit, "sort": "asc"},
        )
        return [parse_tx(t) for t in body.get("transactions", [])]

    async def account_state(self, address: str) -> tuple[str, int]:
        info = await self._v2("getAddressInformation", {"address": address})
        return str(info["state"]), int(info["balance"])

    async def run_get_method(
        self, address: str, method: str, stack: list[list[Any]]
    ) -> tuple[int, list[Any]]:
        result = await self._v2(
            "runGetMethod", {"address": address, "method": method, "stack": stack}
        )
        return int(result["exit_code"]), list(result["stack"])


def address_slice(address: str) -> list[Any]:
    """An address as a toncenter v2 stack entry (`tvm.Slice` of a BOC)."""
    cell = begin_cell().store_address(Address(address)).end_cell()
    return ["tvm.Slice", base64.b64encode(cell.to_boc()).decode()]


def stack_address(entry: list[Any]) -> str:
    """Read an address returned on a v2 stack (`cell`/`slice` with a `bytes` BOC)."""
    value = entry[1]
    boc = value["bytes"] if isinstance(value, dict) else value
    cell = Cell.one_from_boc(base64.b64decode(boc))
    address = cell.begin_parse().load_address()
    if not isinstance(address, Address):
        raise TonApiError("the stack entry is not an internal address", "bad_response")
    return f"{address.wc}:{bytes(address.hash_part).hex().upper()}"


async def jetton_wallet_of(api: TonApi, master: str, owner: str) -> str:
    """Our jetton wallet for `master`, asked of the master itself (`get_wallet_address`)."""
    exit_code, stack = await api.run_get_method(
        master, "get_wallet_address", [address_slice(owner)]
    )
    if exit_code != 0 or not stack:
        raise TonApiError(f"get_wallet_address failed with exit code {exit_code}", "rejected")
    return stack_address(stack[0])


async def jetton_balance(api: TonApi, jetton_wallet: str) -> int:
    """Balance of a jetton wallet (`get_wallet_data`); 0 while it is not deployed."""
    try:
        exit_code, stack = await api.run_get_method(jetton_wallet, "get_wallet_data", [])
    except TonApiError as exc:
        if exc.kind != "rejected":
            raise
        return 0  # not deployed: no get-methods to run
    if exit_code != 0 or not stack:
        return 0
    value = stack[0][1]
    return int(value, 16) if isinstance(value, str) else int(value)
