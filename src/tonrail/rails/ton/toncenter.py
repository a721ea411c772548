"""An async toncenter v2/v3 client with rate limiting, backoff and endpoint failover.

Behaviour (docs/TON-RAIL.md, "Networks and toncenter"):
- The API key goes in `X-API-Key`; it never appears in logs, errors or reprs.
- A client-side limiter spaces requests to `rps` per second (keyless toncenter allows ~1).
- HTTP 429: wait `Retry-After` (seconds or HTTP date) when given, else exponential backoff
  with jitter, then try again (on the next endpoint when there are several).
- Connect errors, timeouts, HTTP 5xx gateway errors and garbage answers: fail over to the
  next endpoint at once; once every endpoint failed in a row, back off between tries.
  At most `max_attempts` tries per call, across endpoints.
- `{"ok": false}` with a node error (HTTP 500 from the node, 4xx for bad input) is an answer,
  not a fault: it is raised at once and not retried (kind `rejected` for sent messages).
- Every failed try is reported to `on_error(endpoint, kind)` (monitoring hooks it).

Results are parsed per toncenter's OpenAPI descriptions into the dataclasses below; a
response that does not fit raises ToncenterError(kind="bad_response").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from tonrail import clock
from tonrail.chain.network import TonNetwork
from tonrail.errors import TonrailError
from tonrail.settings import Settings

log = structlog.get_logger(__name__)

T = TypeVar("T")
Api = Literal["v2", "v3"]
ErrorKind = Literal[
    "rate_limited",  # HTTP 429
    "server_error",  # HTTP 5xx from a gateway or a broken endpoint
    "unreachable",  # connection refused, DNS, TLS...
    "timeout",  # no answer in time
    "bad_response",  # not JSON, or JSON not shaped as the spec says
    "rejected",  # ok=false from the node for a sent message (e.g. external not accepted)
    "api_error",  # ok=false / 4xx for a query: bad input, not found, lt not in db...
    "unauthorized",  # 401/403: the API key is wrong or lacks rights
]
RETRYABLE: frozenset[str] = frozenset(
    {"rate_limited", "server_error", "unreachable", "timeout", "bad_response"}
)
SEND_METHODS = frozenset({"sendBoc", "sendBocReturnHash"})
OnError = Callable[[str, str], None]
OnCall = Callable[[str, bool, str], None]  # (method, ok, error kind): tries and successes


class ToncenterError(TonrailError):
    """A toncenter call failed. `kind` says how; `api_code` is toncenter's own error code."""

    status = 502

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        endpoint: str | None = None,
        http_status: int | None = None,
        api_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=f"toncenter_{kind}")
        self.kind: ErrorKind = kind
        self.endpoint = endpoint
        self.http_status = http_status
        self.api_code = api_code
        self.retry_after = retry_after
        self.final = False  # set when retrying cannot help (e.g. Retry-After too long)
        # Tries this call made. A `rejected` send with attempts > 1 may follow a try that
        # landed (the replay is what was refused): resolve it by message hash.
        self.attempts = 1

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE and not self.final


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class SentMessage:
    """sendBocReturnHash: the external message's hash and its TEP-467 normalized hash (base64)."""

    hash: str
    hash_norm: str


@dataclass(frozen=True, slots=True)
class TransactionId:
    lt: int
    hash: str  # base64


@dataclass(frozen=True, slots=True)
class BlockId:
    workchain: int
    shard: str
    seqno: int
    root_hash: str
    file_hash: str


@dataclass(frozen=True, slots=True)
class Message:
    """A v2 message (`ext.message`). Addresses as toncenter gives them; "" for none."""

    hash: str
    source: str
    destination: str
    value: int
    fwd_fee: int
    ihr_fee: int
    created_lt: int
    body_hash: str
    data_type: str  # msg.dataRaw | msg.dataText | msg.dataDecryptedText | msg.dataEncryptedText
    body: str | None  # base64 BOC of the body (msg.dataRaw)
    init_state: str | None  # base64 BOC (msg.dataRaw), None when absent
    comment: str | None  # the decoded text of msg.dataText


@dataclass(frozen=True, slots=True)
class Transaction:
    """A v2 transaction (`ext.transaction`)."""

    account: str
    utime: int
    data: str  # the transaction BOC, base64
    transaction_id: TransactionId
    fee: int
    storage_fee: int
    other_fee: int
    in_msg: Message | None
    out_msgs: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class AddressInformation:
    balance: int
    state: str  # uninitialized | active | frozen
    code: str
    data: str
    last_transaction_id: TransactionId
    frozen_hash: str
    sync_utime: int
    block_id: BlockId


@dataclass(frozen=True, slots=True)
class WalletInformation:
    wallet: bool
    balance: int
    account_state: str  # uninit | active | frozen
    last_transaction_id: TransactionId
    wallet_type: str | None
    seqno: int | None
    wallet_id: int | None


@dataclass(frozen=True, slots=True)
class MasterchainInfo:
    last: BlockId
    init: BlockId
    state_root_hash: str


@dataclass(frozen=True, slots=True)
class GetMethodResult:
    exit_code: int
    gas_used: int
    stack: list[Any]  # toncenter's legacy entries: ["num", "0x.."], ["cell", {...}], ...

    @property
    def success(self) -> bool:
        return self.exit_code in (0, 1)


@dataclass(frozen=True, slots=True)
class Fees:
    in_fwd_fee: int
    storage_fee: int
    gas_fee: int
    fwd_fee: int

    @property
    def total(self) -> int:
        return self.in_fwd_fee + self.storage_fee + self.gas_fee + self.fwd_fee


@dataclass(frozen=True, slots=True)
class EstimatedFees:
    source_fees: Fees
    destination_fees: tuple[Fees, ...]


@dataclass(frozen=True, slots=True)
class V3Message:
    """A v3 message. Addresses raw (`0:ABC..`); None where the message kind has no value."""

    hash: str
    hash_norm: str | None
    source: str | None
    destination: str | None
    value: int | None
    fwd_fee: int | None
    created_lt: int | None
    opcode: int | None
    bounce: bool | None
    bounced: bool | None
    body: str | None  # message_content.body, base64 BOC
    comment: str | None  # message_content.decoded.comment for text comments
    body_hash: str | None = None  # message_content.hash: the body cell's hash


@dataclass(frozen=True, slots=True)
class V3Transaction:
    """A v3 transaction with the phases we judge payouts by; `description` is kept whole."""

    account: str
    hash: str
    lt: int
    now: int
    mc_block_seqno: int | None
    orig_status: str
    end_status: str
    total_fees: int
    aborted: bool
    compute_skipped: bool
    compute_success: bool | None
    compute_exit_code: int | None
    action_success: bool | None
    action_result_code: int | None
    skipped_actions: int | None
    in_msg: V3Message | None
    out_msgs: tuple[V3Message, ...]
    description: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TransactionsPage:
    transactions: tuple[V3Transaction, ...]
    address_book: dict[str, str]  # raw address -> user-friendly form


@dataclass(frozen=True, slots=True)
class JettonWallet:
    address: str
    balance: int
    owner: str
    jetton: str
    last_transaction_lt: int | None
    code_hash: str | None
    data_hash: str | None


# ---------------------------------------------------------------------------- parsing


class _Shape(Exception):
    """The JSON does not have the shape the spec describes."""


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Shape(f"{what} is not an object")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise _Shape(f"{what} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0) if value.startswith(("0x", "-0x")) else int(value)
        except ValueError:
            pass
    raise _Shape(f"{what} is not an integer")


def _opt_int(value: Any, what: str) -> int | None:
    return None if value is None or value == "" else _int(value, what)


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _Shape(f"{what} is not a string")
    return value


def _opt_str(value: Any, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _opt_bool(value: Any, what: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise _Shape(f"{what} is not a boolean")


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Shape(f"{what} is not a list")
    return value


def parse_transaction_id(v: Any) -> TransactionId:
    o = _obj(v, "transaction_id")
    return TransactionId(_int(o.get("lt"), "lt"), _str(o.get("hash"), "hash"))


def parse_block_id(v: Any) -> BlockId:
    o = _obj(v, "block id")
    return BlockId(
        workchain=_int(o.get("workchain"), "workchain"),
        shard=str(_int(o.get("shard"), "shard")),
        seqno=_int(o.get("seqno"), "seqno"),
        root_hash=_str(o.get("root_hash"), "root_hash"),
        file_hash=_str(o.get("file_hash"), "file_hash"),
    )


def parse_message(v: Any) -> Message:
    o = _obj(v, "message")
    data = _obj(o.get("msg_data"), "msg_data")
    data_type = _str(data.get("@type"), "msg_data @type")
    comment = None
    if data_type == "msg.dataText":
        try:
            comment = base64.b64decode(_str(data.get("text"), "text")).decode("utf-8", "replace")
        except (binascii.Error, ValueError) as exc:
            raise _Shape("msg.dataText text is not base64") from exc
    return Message(
        hash=_str(o.get("hash"), "hash"),
        source=_str(o.get("source", ""), "source"),
        destination=_str(o.get("destination", ""), "destination"),
        value=_int(o.get("value"), "value"),
        fwd_fee=_int(o.get("fwd_fee"), "fwd_fee"),
        ihr_fee=_int(o.get("ihr_fee"), "ihr_fee"),
        created_lt=_int(o.get("created_lt"), "created_lt"),
        body_hash=_str(o.get("body_hash"), "body_hash"),
        data_type=data_type,
        body=_opt_str(data.get("body"), "body"),
        init_state=_opt_str(data.get("init_state"), "init_state") or None,
        comment=comment,
    )


def parse_transaction(v: Any) -> Transaction:
    o = _obj(v, "transaction")
    return Transaction(
        account=_str(o.get("account"), "account"),
        utime=_int(o.get("utime"), "utime"),
        data=_str(o.get("data"), "data"),
        transaction_id=parse_transaction_id(o.get("transaction_id")),
        fee=_int(o.get("fee"), "fee"),
        storage_fee=_int(o.get("storage_fee"), "storage_fee"),
        other_fee=_int(o.get("other_fee"), "other_fee"),
        in_msg=parse_message(o["in_msg"]) if o.get("in_msg") else None,
        out_msgs=tuple(parse_message(m) for m in _list(o.get("out_msgs"), "out_msgs")),
    )


def parse_fees(v: Any) -> Fees:
    o = _obj(v, "fees")
    return Fees(
        _int(o.get("in_fwd_fee"), "in_fwd_fee"),
        _int(o.get("storage_fee"), "storage_fee"),
        _int(o.get("gas_fee"), "gas_fee"),
        _int(o.get("fwd_fee"), "fwd_fee"),
    )


def parse_v3_message(v: Any) -> V3Message:
    o = _obj(v, "message")
    content = o.get("message_content")
    body = comment = body_hash = None
    if content is not None:
        c = _obj(content, "message_content")
        body = _opt_str(c.get("body"), "body")
        body_hash = _opt_str(c.get("hash"), "hash")
        decoded = c.get("decoded")
        if isinstance(decoded, dict) and decoded.get("type") == "text_comment":
            comment = _opt_str(decoded.get("comment"), "comment")
    return V3Message(
        hash=_str(o.get("hash"), "hash"),
        hash_norm=_opt_str(o.get("hash_norm"), "hash_norm"),
        source=_opt_str(o.get("source"), "source"),
        destination=_opt_str(o.get("destination"), "destination"),
        value=_opt_int(o.get("value"), "value"),
        fwd_fee=_opt_int(o.get("fwd_fee"), "fwd_fee"),
        created_lt=_opt_int(o.get("created_lt"), "created_lt"),
        # The spec says integer; indexers also send "0x0f8a7ea5": accept both.
        opcode=_opt_int(o.get("opcode"), "opcode"),
        bounce=_opt_bool(o.get("bounce"), "bounce"),
        bounced=_opt_bool(o.get("bounced"), "bounced"),
        body=body,
        comment=comment,
        body_hash=body_hash,
    )


def parse_v3_transaction(v: Any) -> V3Transaction:
    o = _obj(v, "transaction")
    desc = _obj(o.get("description"), "description")
    compute = _obj(desc.get("compute_ph") or {}, "compute_ph")
    action = _obj(desc.get("action") or {}, "action")
    return V3Transaction(
        account=_str(o.get("account"), "account"),
        hash=_str(o.get("hash"), "hash"),
        lt=_int(o.get("lt"), "lt"),
        now=_int(o.get("now"), "now"),
        mc_block_seqno=_opt_int(o.get("mc_block_seqno"), "mc_block_seqno"),
        orig_status=_str(o.get("orig_status"), "orig_status"),
        end_status=_str(o.get("end_status"), "end_status"),
        total_fees=_int(o.get("total_fees"), "total_fees"),
        aborted=bool(_opt_bool(desc.get("aborted"), "aborted")),
        compute_skipped=bool(_opt_bool(compute.get("skipped", True), "skipped")),
        compute_success=_opt_bool(compute.get("success"), "success"),
        compute_exit_code=_opt_int(compute.get("exit_code"), "exit_code"),
        action_success=_opt_bool(action.get("success"), "action success"),
        action_result_code=_opt_int(action.get("result_code"), "result_code"),
        skipped_actions=_opt_int(action.get("skipped_actions"), "skipped_actions"),
        in_msg=parse_v3_message(o["in_msg"]) if o.get("in_msg") else None,
        out_msgs=tuple(parse_v3_message(m) for m in _list(o.get("out_msgs"), "out_msgs")),
        description=desc,
    )


def parse_transactions_page(v: Any) -> TransactionsPage:
    o = _obj(v, "response")
    book: dict[str, str] = {}
    for raw, entry in _obj(o.get("address_book") or {}, "address_book").items():
        book[raw] = _str(_obj(entry, "address_book entry").get("user_friendly"), "user_friendly")
    txs = tuple(parse_v3_transaction(t) for t in _list(o.get("transactions"), "transactions"))
    return TransactionsPage(txs, book)


def parse_jetton_wallet(v: Any) -> JettonWallet:
    o = _obj(v, "jetton wallet")
    return JettonWallet(
        address=_str(o.get("address"), "address"),
        balance=_int(o.get("balance"), "balance"),
        owner=_str(o.get("owner"), "owner"),
        jetton=_str(o.get("jetton"), "jetton"),
        last_transaction_lt=_opt_int(o.get("last_transaction_lt"), "last_transaction_lt"),
        code_hash=_opt_str(o.get("code_hash"), "code_hash"),
        data_hash=_opt_str(o.get("data_hash"), "data_hash"),
    )


# ---------------------------------------------------------------------------- limiter


class RateLimiter:
    """Spaces calls at least 1/rps seconds apart (rps <= 0: no limit)."""

    def __init__(self, rps: float, sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.interval = 1.0 / rps if rps > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()
        self._sleep = sleep

    async def acquire(self) -> None:
        if self.interval <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            await self._sleep(wait)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: an integer, or an HTTP date relative to the clock."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - clock.now()).total_seconds())


# ---------------------------------------------------------------------------- the client


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
        self._max_attempts = max(1, max_attempts)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._retry_after_max = retry_after_max
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

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ToncenterError) and exc.retry_after is not None:
            return exc.retry_after
        if isinstance(exc, ToncenterError) and exc.kind != "rate_limited":
            api = self._api_of(state)
            # Fail over at once while this call still has an untried endpoint.
            if state.attempt_number < len(self._urls[api]):
                return 0.0
        # Exponential with full-width jitter: initial * 2^(n-1) + U(0, initial), capped.
        exp = self._backoff_initial * float(2 ** min(state.attempt_number - 1, 32))
        return min(exp + random.uniform(0, self._backoff_initial), self._backoff_max)

    @staticmethod
    def _api_of(state: RetryCallState) -> Api:
        api: Api = state.kwargs.get("api", "v2")
        return api

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
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, ToncenterError) and e.retryable),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            result: T = await retrying(
                self._once, parse, api=api, method=method, params=params, body=body
            )
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

    async def _once(
        self,
        parse: Callable[[Any], T],
        *,
        api: Api,
        method: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
    ) -> T:
        urls = self._urls[api]
        index = self._current[api] % len(urls)
        endpoint = urls[index]
        try:
            return await self._request(endpoint, parse, api, method, params, body)
        except ToncenterError as exc:
            self._report(endpoint, exc.kind)
            self._count(method, False, exc.kind)
            if exc.retryable and self._current[api] == index:
                self._current[api] = (index + 1) % len(urls)  # fail over for the next try
            if exc.kind == "rate_limited" and (exc.retry_after or 0) > self._retry_after_max:
                exc.final = True  # waiting that long is the caller's decision, not ours
            raise

    async def _request(
        self,
        endpoint: str,
        parse: Callable[[Any], T],
        api: Api,
        method: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
    ) -> T:
        await self._limiter.acquire()
        url = f"{endpoint}/{method}"
        try:
            if body is not None:
                response = await self._http.post(url, json=dict(body))
            else:
                response = await self._http.get(url, params=_query(params))
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
        if status >= 500 and not _is_node_error(payload, status, api, method):
            raise ToncenterError(
                "server_error",
                f"{endpoint} answered HTTP {status}",
                endpoint=endpoint,
                http_status=status,
            )
        if not isinstance(payload, dict):
            raise ToncenterError(
                "bad_response",
                f"{endpoint} answered {method} with non-JSON",
                endpoint=endpoint,
                http_status=status,
            )
        if api == "v2":
            return self._v2_result(endpoint, method, status, payload, parse)
        if "error" in payload or status >= 400:
            raise ToncenterError(
                "rejected" if method == "message" else "api_error",
                f"toncenter {method}: {str(payload.get('error', ''))[:300]}",
                endpoint=endpoint,
                http_status=status,
                api_code=_opt_code(payload.get("code"), status),
            )
        try:
            return parse(payload)
        except _Shape as exc:
            raise ToncenterError(
                "bad_response", f"{endpoint} {method}: {exc}", endpoint=endpoint, http_status=status
            ) from None

    @staticmethod
    def _v2_result(
        endpoint: str, method: str, status: int, payload: dict[str, Any], parse: Callable[[Any], T]
    ) -> T:
        ok = payload.get("ok")
        if ok is False and "error" in payload:
            raise ToncenterError(
                "rejected" if method in SEND_METHODS else "api_error",
                f"toncenter {method}: {str(payload['error'])[:300]}",
                endpoint=endpoint,
                http_status=status,
                api_code=_opt_code(payload.get("code"), status),
            )
        if ok is not True or "result" not in payload or status >= 400:
            raise ToncenterError(
                "bad_response",
                f"{endpoint} answered {method} without ok/result",
                endpoint=endpoint,
                http_status=status,
            )
        try:
            return parse(payload["result"])
        except _Shape as exc:
            raise ToncenterError(
                "bad_response", f"{endpoint} {method}: {exc}", endpoint=endpoint, http_status=status
            ) from None

    # ------------------------------------------------------------------ v2

    async def send_boc_return_hash(self, boc_b64: str) -> SentMessage:
        """Send an external message; its hash and normalized hash. Node refusal: `rejected`."""

        def parse(r: Any) -> SentMessage:
            o = _obj(r, "result")
            return SentMessage(_str(o.get("hash"), "hash"), _str(o.get("hash_norm"), "hash_norm"))

        return await self._call(parse, api="v2", method="sendBocReturnHash", body={"boc": boc_b64})

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
            lambda r: [parse_transaction(t) for t in _list(r, "result")],
            api="v2",
            method="getTransactions",
            params=params,
        )

    async def run_get_method(
        self, address: str, method: str | int, stack: list[Any] | None = None
    ) -> GetMethodResult:
        """Run a get-method; the stack in toncenter's legacy form (["num", "0x1"], ...)."""

        def parse(r: Any) -> GetMethodResult:
            o = _obj(r, "result")
            return GetMethodResult(
                _int(o.get("exit_code"), "exit_code"),
                _int(o.get("gas_used"), "gas_used"),
                _list(o.get("stack"), "stack"),
            )

        body = {"address": address, "method": method, "stack": stack or []}
        return await self._call(parse, api="v2", method="runGetMethod", body=body)

    async def get_address_information(self, address: str) -> AddressInformation:
        def parse(r: Any) -> AddressInformation:
            o = _obj(r, "result")
            return AddressInformation(
                balance=_int(o.get("balance"), "balance"),
                state=_str(o.get("state"), "state"),
                code=_str(o.get("code", ""), "code"),
                data=_str(o.get("data", ""), "data"),
                last_transaction_id=parse_transaction_id(o.get("last_transaction_id")),
                frozen_hash=_str(o.get("frozen_hash", ""), "frozen_hash"),
                sync_utime=_int(o.get("sync_utime"), "sync_utime"),
                block_id=parse_block_id(o.get("block_id")),
            )

        return await self._call(
            parse, api="v2", method="getAddressInformation", params={"address": address}
        )

    async def get_wallet_information(self, address: str) -> WalletInformation:
        def parse(r: Any) -> WalletInformation:
            o = _obj(r, "result")
            wallet = _opt_bool(o.get("wallet"), "wallet")
            if wallet is None:
                raise _Shape("wallet is missing")
            return WalletInformation(
                wallet=wallet,
                balance=_int(o.get("balance"), "balance"),
                account_state=_str(o.get("account_state"), "account_state"),
                last_transaction_id=parse_transaction_id(o.get("last_transaction_id")),
                wallet_type=_opt_str(o.get("wallet_type"), "wallet_type"),
                seqno=_opt_int(o.get("seqno"), "seqno"),
                wallet_id=_opt_int(o.get("wallet_id"), "wallet_id"),
            )

        return await self._call(
            parse, api="v2", method="getWalletInformation", params={"address": address}
        )

    async def get_address_balance(self, address: str) -> int:
        """Balance in nanoton."""
        return await self._call(
            lambda r: _int(r, "balance"),
            api="v2",
            method="getAddressBalance",
            params={"address": address},
        )

    async def get_config_param(self, config_id: int) -> str:
        """One blockchain config param as a base64 BOC of its cell (`getConfigParam`)."""

        def parse(r: Any) -> str:
            config = _obj(_obj(r, "result").get("config"), "config")
            return _str(config.get("bytes"), "config.bytes")

        return await self._call(
            parse, api="v2", method="getConfigParam", params={"config_id": config_id}
        )

    async def get_out_msg_queue_size(self) -> int:
        """Messages waiting in the outbound queues, summed over shards (`getOutMsgQueueSize`)."""

        def parse(r: Any) -> int:
            shards = _list(_obj(r, "result").get("shards"), "shards")
            return sum(_int(_obj(x, "shard").get("size"), "size") for x in shards)

        return await self._call(parse, api="v2", method="getOutMsgQueueSize")

    async def get_masterchain_info(self) -> MasterchainInfo:
        def parse(r: Any) -> MasterchainInfo:
            o = _obj(r, "result")
            return MasterchainInfo(
                parse_block_id(o.get("last")),
                parse_block_id(o.get("init")),
                _str(o.get("state_root_hash"), "state_root_hash"),
            )

        return await self._call(parse, api="v2", method="getMasterchainInfo")

    async def estimate_fee(
        self,
        address: str,
        body_b64: str,
        init_code: str | None = None,
        init_data: str | None = None,
        ignore_chksig: bool = True,
    ) -> EstimatedFees:
        """Fees of an external message with `body_b64` (and state init) to `address`."""

        def parse(r: Any) -> EstimatedFees:
            o = _obj(r, "result")
            return EstimatedFees(
                parse_fees(o.get("source_fees")),
                tuple(parse_fees(f) for f in _list(o.get("destination_fees"), "destination_fees")),
            )

        body: dict[str, Any] = {
            "address": address,
            "body": body_b64,
            "ignore_chksig": ignore_chksig,
        }
        if init_code is not None:
            body["init_code"] = init_code
        if init_data is not None:
            body["init_data"] = init_data
        return await self._call(parse, api="v2", method="estimateFee", body=body)

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

        def parse(r: Any) -> list[JettonWallet]:
            o = _obj(r, "response")
            return [
                parse_jetton_wallet(w) for w in _list(o.get("jetton_wallets"), "jetton_wallets")
            ]

        params = {"owner_address": owner, "jetton_address": jetton_master}
        return await self._call(parse, api="v3", method="jetton/wallets", params=params)


def _query(params: Mapping[str, Any] | None) -> dict[str, str]:
    if not params:
        return {}
    return {k: str(v) for k, v in params.items() if v is not None}


def _opt_code(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# Liteserver errors toncenter relays as HTTP 500 that are outages, not answers: retry them.
_TRANSIENT_NODE_ERRORS = ("timeout", "lite_server_network", "not ready", "connection", "overload")


def _is_node_error(payload: Any, status: int, api: Api, method: str) -> bool:
    """toncenter relays node errors as HTTP 500 with an error body: an answer, not an outage.

    Gateways (502/503/504), 5xx without toncenter's error shape, v3 query errors and node
    errors that say the node is unreachable or slow are outages (retried elsewhere).
    """
    if status != 500 or not isinstance(payload, dict) or not isinstance(payload.get("error"), str):
        return False
    if any(word in payload["error"].lower() for word in _TRANSIENT_NODE_ERRORS):
        return False
    if api == "v2":
        return payload.get("ok") is False
    return method == "message"
