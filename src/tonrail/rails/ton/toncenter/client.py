"""The toncenter client: transport, endpoint failover and one method per toncenter call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
import structlog

from tonrail.chain.network import TonNetwork
from tonrail.rails.ton.toncenter.errors import ToncenterError
from tonrail.rails.ton.toncenter.models import (
    SEND_METHODS,
    AddressInformation,
    Api,
    EstimatedFees,
    GetMethodResult,
    JettonWallet,
    MasterchainInfo,
    SentMessage,
    Transaction,
    TransactionsPage,
    WalletInformation,
)
from tonrail.rails.ton.toncenter.parsers import (
    BadShape,
    parse_address_information,
    parse_balance,
    parse_config_param,
    parse_estimated_fees,
    parse_get_method_result,
    parse_jetton_wallets,
    parse_masterchain_info,
    parse_out_msg_queue_size,
    parse_sent_message,
    parse_transactions,
    parse_transactions_page,
    parse_wallet_information,
)
from tonrail.rails.ton.toncenter.rate_limit import RateLimiter
from tonrail.rails.ton.toncenter.retry import RetryPolicy, is_node_error, parse_retry_after
from tonrail.settings import Settings

log = structlog.get_logger(__name__)

T = TypeVar("T")
OnError = Callable[[str, str], None]
OnCall = Callable[[str, bool, str], None]  # (method, ok, error kind): tries and successes


@dataclass(frozen=True, slots=True)
class _Call:
    """One toncenter call: a GET with query `params`, or a POST of the JSON `body`."""

    api: Api
    method: str
    params: Mapping[str, Any] | None = None
    body: Mapping[str, Any] | None = None


class ToncenterClient:
    """toncenter v2 and v3 over httpx, with failover between the configured endpoints."""

    def __init__(
        self,
        v2_urls: Sequence[str],
        v3_urls: Sequence[str] = (),
        *,
        api_key: str = "",
        rps: float = 0.0,
        timeout: float = 10.0,
        max_attempts: int = 6,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        retry_after_max: float = 60.0,
        on_error: OnError | None = None,
        on_call: OnCall | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        if not v2_urls and not v3_urls:
            raise ValueError("toncenter needs at least one endpoint")
        self._urls: dict[Api, tuple[str, ...]] = {
            "v2": tuple(u.rstrip("/") for u in v2_urls),
            "v3": tuple(u.rstrip("/") for u in v3_urls),
        }
        self._current: dict[Api, int] = {"v2": 0, "v3": 0}
        self._retry = RetryPolicy(
            max(1, max_attempts), backoff_initial, backoff_max, retry_after_max
        )
        self._on_error = on_error
        self._on_call = on_call
        self._sleep = sleep
        self._limiter = RateLimiter(rps, sleep)
        headers = {"Accept": "application/json", "User-Agent": "tonrail"}
        if api_key:
            headers["X-API-Key"] = api_key
        self._http = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(timeout), transport=transport
        )

    @classmethod
    def from_network(
        cls, network: TonNetwork, settings: Settings, **overrides: Any
    ) -> ToncenterClient:
        """A client for a resolved network with the TONCENTER_* settings."""
        rps = settings.toncenter_rps
        if rps <= 0:
            # Keyless toncenter allows about 1 request/s; a key ~10/s; the local network: no limit.
            rps = 0.0 if network.name == "localnet" else (10.0 if network.api_key else 1.0)
        params: dict[str, Any] = {
            "api_key": network.api_key,
            "rps": rps,
            "timeout": settings.toncenter_timeout_seconds,
            "max_attempts": settings.toncenter_max_attempts,
            "backoff_initial": settings.toncenter_backoff_initial_seconds,
            "backoff_max": settings.toncenter_backoff_max_seconds,
        }
        params.update(overrides)
        return cls(network.v2_urls, network.v3_urls, **params)

    def __repr__(self) -> str:
        return f"ToncenterClient(v2={list(self._urls['v2'])}, v3={list(self._urls['v3'])})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ToncenterClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ transport

    def _report(self, endpoint: str, kind: str) -> None:
        log.warning("toncenter_error", endpoint=endpoint, kind=kind)
        if self._on_error is not None:
            try:
                self._on_error(endpoint, kind)
            except Exception:  # a monitoring hook must not break a payment call
                log.exception("toncenter_on_error_hook_failed", endpoint=endpoint, kind=kind)

    async def _call(
        self,
        parse: Callable[[Any], T],
        *,
        api: Api,
        method: str,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> T:
        if not self._urls[api]:
            raise ToncenterError("unreachable", f"no toncenter {api} endpoint is configured")
        call = _Call(api, method, params, body)
        retrying = self._retry.retrying(len(self._urls[api]), self._sleep)
        try:
            result: T = await retrying(self._once, call, parse)
        except ToncenterError as exc:
            exc.attempts = retrying.statistics.get("attempt_number", 1)
            raise
        self._count(method, True, "")
        return result

    def _count(self, method: str, ok: bool, kind: str) -> None:
        """Report by method name, never by URL: every failed try as it happens (so an outage
        is seen at once, not after the retries), and each call that finally succeeds."""
        if self._on_call is not None:
            try:
                self._on_call(method, ok, kind)
            except Exception:  # a monitoring hook must not break a payment call
                log.exception("toncenter_on_call_hook_failed", method=method)

    async def _once(self, call: _Call, parse: Callable[[Any], T]) -> T:
        urls = self._urls[call.api]
        index = self._current[call.api] % len(urls)
        endpoint = urls[index]
        try:
            return await self._request(endpoint, call, parse)
        except ToncenterError as exc:
            self._report(endpoint, exc.kind)
            self._count(call.method, False, exc.kind)
            if exc.retryable and self._current[call.api] == index:
                self._current[call.api] = (index + 1) % len(urls)  # fail over for the next try
            self._retry.settle(exc)
            raise

    async def _request(self, endpoint: str, call: _Call, parse: Callable[[Any], T]) -> T:
        await self._limiter.acquire()
        url = f"{endpoint}/{call.method}"
        try:
            if call.body is not None:
                response = await self._http.post(url, json=dict(call.body))
            else:
                response = await self._http.get(url, params=_query(call.params))
        except httpx.TimeoutException:
            raise ToncenterError(
                "timeout", f"{endpoint} did not answer in time", endpoint=endpoint
            ) from None
        except httpx.TransportError as exc:
            raise ToncenterError(
                "unreachable",
                f"{endpoint} is unreachable ({type(exc).__name__})",
                endpoint=endpoint,
            ) from None
        status = response.status_code
        if status == 429:
            raise ToncenterError(
                "rate_limited",
                f"{endpoint} rate-limited the request",
                endpoint=endpoint,
                http_status=429,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status in (401, 403):
            raise ToncenterError(
                "unauthorized",
                f"{endpoint} refused the API key",
                endpoint=endpoint,
                http_status=status,
            )
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if status >= 500 and not is_node_error(payload, status, call.api, call.method):
            raise ToncenterError(
                "server_error",
                f"{endpoint} answered HTTP {status}",
                endpoint=endpoint,
                http_status=status,
            )
        if not isinstance(payload, dict):
            raise ToncenterError(
                "bad_response",
                f"{endpoint} answered {call.method} with non-JSON",
                endpoint=endpoint,
                http_status=status,
            )
        return _answer(endpoint, call, status, payload, parse)

    # ------------------------------------------------------------------ v2

    async def send_boc_return_hash(self, boc_b64: str) -> SentMessage:
        """Send an external message; its hash and normalized hash. Node refusal: `rejected`."""
        return await self._call(
            parse_sent_message, api="v2", method="sendBocReturnHash", body={"boc": boc_b64}
        )

    async def get_transactions(
        self,
        address: str,
        limit: int = 10,
        lt: int | None = None,
        hash: str | None = None,
        to_lt: int | None = None,
        archival: bool = True,
    ) -> list[Transaction]:
        """Transactions of `address`, newest first, from (lt, hash) down to `to_lt`."""
        params = {
            "address": address,
            "limit": limit,
            "lt": lt,
            "hash": hash,
            "to_lt": to_lt,
            "archival": "true" if archival else "false",
        }
        return await self._call(
            parse_transactions, api="v2", method="getTransactions", params=params
        )

    async def run_get_method(
        self, address: str, method: str | int, stack: list[Any] | None = None
    ) -> GetMethodResult:
        """Run a get-method; the stack in toncenter's legacy form (["num", "0x1"], ...)."""
        body = {"address": address, "method": method, "stack": stack or []}
        return await self._call(parse_get_method_result, api="v2", method="runGetMethod", body=body)

    # One method per endpoint, each with its parser: alike in shape only.
    async def get_address_information(self, address: str) -> AddressInformation:
        return await self._call(
            parse_address_information,
            api="v2",
            method="getAddressInformation",
            params={"address": address},
        )

    async def get_wallet_information(self, address: str) -> WalletInformation:
        return await self._call(
            parse_wallet_information,
            api="v2",
            method="getWalletInformation",
            params={"address": address},
        )

    async def get_address_balance(self, address: str) -> int:
        """Balance in nanoton."""
        return await self._call(
            parse_balance, api="v2", method="getAddressBalance", params={"address": address}
        )

    async def get_config_param(self, config_id: int) -> str:
        """One blockchain config param as a base64 BOC of its cell (`getConfigParam`)."""
        return await self._call(
            parse_config_param, api="v2", method="getConfigParam", params={"config_id": config_id}
        )

    async def get_out_msg_queue_size(self) -> int:
        """Messages waiting in the outbound queues, summed over shards (`getOutMsgQueueSize`)."""
        return await self._call(parse_out_msg_queue_size, api="v2", method="getOutMsgQueueSize")

    async def get_masterchain_info(self) -> MasterchainInfo:
        return await self._call(parse_masterchain_info, api="v2", method="getMasterchainInfo")

    async def estimate_fee(
        self,
        address: str,
        body_b64: str,
        init_code: str | None = None,
        init_data: str | None = None,
        ignore_chksig: bool = True,
    ) -> EstimatedFees:
        """Fees of an external message with `body_b64` (and state init) to `address`."""
        body: dict[str, Any] = {
            "address": address,
            "body": body_b64,
            "ignore_chksig": ignore_chksig,
        }
        if init_code is not None:
            body["init_code"] = init_code
        if init_data is not None:
            body["init_data"] = init_data
        return await self._call(parse_estimated_fees, api="v2", method="estimateFee", body=body)

    # ------------------------------------------------------------------ v3

    async def transactions_by_message(
        self, msg_hash: str, direction: Literal["in", "out"] | None = "in"
    ) -> TransactionsPage:
        """The transaction(s) that received (`in`) or sent (`out`) the message."""
        return await self._call(
            parse_transactions_page,
            api="v3",
            method="transactionsByMessage",
            params={"msg_hash": msg_hash, "direction": direction},
        )

    async def transactions(
        self,
        account: str,
        start_lt: int | None = None,
        end_lt: int | None = None,
        limit: int = 10,
        offset: int = 0,
        sort: Literal["asc", "desc"] = "desc",
    ) -> TransactionsPage:
        """Transactions of `account` in [start_lt, end_lt]."""
        params = {
            "account": account,
            "start_lt": start_lt,
            "end_lt": end_lt,
            "limit": limit,
            "offset": offset,
            "sort": sort,
        }
        return await self._call(
            parse_transactions_page, api="v3", method="transactions", params=params
        )

    async def jetton_wallets(self, owner: str, jetton_master: str) -> list[JettonWallet]:
        """The jetton wallets of `owner` for `jetton_master` (empty if none is deployed)."""
        params = {"owner_address": owner, "jetton_address": jetton_master}
        return await self._call(
            parse_jetton_wallets, api="v3", method="jetton/wallets", params=params
        )


def _answer(
    endpoint: str, call: _Call, status: int, payload: dict[str, Any], parse: Callable[[Any], T]
) -> T:
    """The parsed result of a JSON answer, or the error it carries.

    v2 wraps results in `{"ok": true, "result": ...}` and refusals in `{"ok": false, "error"}`;
    v3 answers the result itself, or `{"error": ...}` (and HTTP >= 400) for a refusal.
    """
    v2 = call.api == "v2"
    refused = (
        (payload.get("ok") is False and "error" in payload)
        if v2
        else ("error" in payload or status >= 400)
    )
    if refused:
        raise ToncenterError(
            "rejected" if call.method in SEND_METHODS[call.api] else "api_error",
            f"toncenter {call.method}: {str(payload.get('error', ''))[:300]}",
            endpoint=endpoint,
            http_status=status,
            api_code=_opt_code(payload.get("code"), status),
        )
    if v2 and (payload.get("ok") is not True or "result" not in payload or status >= 400):
        raise ToncenterError(
            "bad_response",
            f"{endpoint} answered {call.method} without ok/result",
            endpoint=endpoint,
            http_status=status,
        )
    try:
        return parse(payload["result"] if v2 else payload)
    except BadShape as exc:
        raise ToncenterError(
            "bad_response",
            f"{endpoint} {call.method}: {exc}",
            endpoint=endpoint,
            http_status=status,
        ) from None


def _query(params: Mapping[str, Any] | None) -> dict[str, str]:
    if not params:
        return {}
    return {k: str(v) for k, v in params.items() if v is not None}


def _opt_code(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
