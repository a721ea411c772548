"""How a toncenter call fails: one error with a `kind`, and which kinds a retry can cure."""

from __future__ import annotations

from typing import Literal

from tonrail.errors import TonrailError

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


class ToncenterError(TonrailError):
    """A toncenter call failed. `kind` says how; `api_code` is toncenter's own error code."""

    status = 502

    # Keyword-only options after `*`: alike other signatures in shape only.
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
