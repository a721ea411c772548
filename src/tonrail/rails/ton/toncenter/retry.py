"""When a toncenter call is tried again, and how long to wait first.

Outages (429, connect errors, timeouts, gateway 5xx, garbage) are retried: at once on the
next endpoint while the call has an untried one, then with exponential backoff and jitter;
a 429's Retry-After is obeyed. Answers (a node's refusal, bad input) are never retried.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from tonrail import clock
from tonrail.rails.ton.toncenter.errors import ToncenterError
from tonrail.rails.ton.toncenter.models import SEND_METHODS, Api

# Liteserver errors toncenter relays as HTTP 500 that are outages, not answers: retry them.
_TRANSIENT_NODE_ERRORS = ("timeout", "lite_server_network", "not ready", "connection", "overload")


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


def is_node_error(payload: Any, status: int, api: Api, method: str) -> bool:
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
    return method in SEND_METHODS["v3"]


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ToncenterError) and exc.retryable


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most `max_attempts` tries per call, across endpoints."""

    max_attempts: int = 6
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    retry_after_max: float = 60.0  # a longer Retry-After ends the call (the caller decides)

    def wait(self, error: BaseException | None, attempt: int, endpoints: int) -> float:
        """Seconds to wait before try `attempt + 1` of a call over `endpoints` endpoints."""
        if isinstance(error, ToncenterError) and error.retry_after is not None:
            return error.retry_after
        if isinstance(error, ToncenterError) and error.kind != "rate_limited":
            # Fail over at once while this call still has an untried endpoint.
            if attempt < endpoints:
                return 0.0
        # Exponential with full-width jitter: initial * 2^(n-1) + U(0, initial), capped.
        exp = self.backoff_initial * float(2 ** min(attempt - 1, 32))
        return min(exp + random.uniform(0, self.backoff_initial), self.backoff_max)

    def retrying(self, endpoints: int, sleep: Callable[[float], Any]) -> AsyncRetrying:
        """The tenacity loop of one call."""

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.wait(error, state.attempt_number, endpoints)

        return AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait,
            retry=retry_if_exception(_retryable),
            sleep=sleep,
            reraise=True,
        )

    def settle(self, error: ToncenterError) -> None:
        """Make a rate limit final when its Retry-After is longer than a call may wait."""
        if error.kind == "rate_limited" and (error.retry_after or 0) > self.retry_after_max:
            error.final = True
