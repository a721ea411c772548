"""Rate limits on HTTP: which buckets a request draws from, the 429, and the headers.

`/v1/...` requests are limited in `RateLimits`, a plain ASGI middleware that answers before
the body is read or the key is looked up. A request whose key this process has cached
draws from its address's and its key's buckets there, together (one round trip to Redis);
one without a key draws from its address's. One with a key not cached yet only checks
that its address's bucket is not empty; `charge_key` then draws from both buckets together
once `current_principal` has authenticated the key (`charge_address` from the address's
alone when it was refused). Drawing together means a key's refused requests cost its
address nothing: a noisy key cannot use up an address it shares with quiet keys.
Reads (GET, HEAD, OPTIONS) and writes have separate buckets. Every response carries the
IETF draft's `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds) of the
bucket closest to empty; a 429 `rate_limited` adds `Retry-After`. The dashboard's sign-in
draws from its own per-address bucket (`login_decision`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tonrail.security.access import AccessCache
from tonrail.security.api_keys import Principal
from tonrail.security.client_ip import client_ip
from tonrail.security.rate_limits import (
    Charge,
    Decision,
    RateLimited,
    RateLimiter,
    RateLimiterUnavailable,
    Rules,
)
from tonrail.settings import Settings

log = logging.getLogger(__name__)

READS = frozenset({"GET", "HEAD", "OPTIONS"})
# scope["state"] entries: the decision the headers report; the key whose bucket was drawn;
# the address bucket still to draw from once the key is known
DECISION = "rate_limit"
KEY_DRAWN = "rate_limit_key"
ADDRESS_PENDING = "rate_limit_address"


def build_limiter(
    settings: Settings, on_store_change: Callable[[bool], None] | None = None
) -> RateLimiter | None:
    """The limiter of one app (None with RATE_LIMIT_ENABLED=false): shared through Redis
    with REDIS_URL, else per process."""
    if not settings.rate_limit_enabled:
        return None
    shared = None
    if settings.redis_url.strip():
        from tonrail.security.rate_limit_redis import RedisBuckets

        shared = RedisBuckets(
            settings.redis_url.strip(),
            settings.rate_limit_redis_prefix,
            settings.rate_limit_redis_timeout_ms / 1000,
            settings.rate_limit_redis_pool_size,
        )
    return RateLimiter(
        Rules.from_settings(settings),
        shared,
        retry_seconds=settings.rate_limit_redis_retry_seconds,
        on_store_change=on_store_change,
    )


def limiter_of(app: FastAPI) -> RateLimiter | None:
    limiter: RateLimiter | None = getattr(app.state, "rate_limiter", None)
    return limiter


def tighter(a: Decision | None, b: Decision) -> Decision:
    """The decision the headers should report: a refusal, else the emptier bucket."""
    if a is None:
        return b
    if a.allowed != b.allowed:
        return a if not a.allowed else b
    if not a.allowed:
        return a if a.retry_after_seconds >= b.retry_after_seconds else b
    return a if a.remaining * b.limit <= b.remaining * a.limit else b


def headers_of(decision: Decision) -> list[tuple[bytes, bytes]]:
    out = [
        (b"ratelimit-limit", str(decision.limit).encode()),
        (b"ratelimit-remaining", str(decision.remaining).encode()),
        (b"ratelimit-reset", str(decision.reset_seconds).encode()),
    ]
    if not decision.allowed:
        out.append((b"retry-after", str(decision.retry_after_seconds).encode()))
    return out


def refusal(decision: Decision) -> RateLimited:
    whose = "this API key" if decision.rule.startswith("key_") else "this address"
    kind = "reads" if decision.rule.endswith("_read") else "writes"
    return RateLimited(
        f"too many {kind} from {whose} ({decision.limit} at once, then refilled over time); "
        f"retry after {decision.retry_after_seconds} s",
    )


def _presented_secret(scope: Scope) -> str | None:
    """The key the request presents, read as `current_principal` reads it (a malformed
    header counts as none here: `current_principal` refuses it)."""
    secret = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return None
            return token.strip() or None
        if name == b"x-api-key":
            secret = value.decode("latin-1") or None
    return secret


class RateLimits:
    """The address bucket (and the key bucket when the key is cached) of `/v1/` requests,
    before anything else runs; the RateLimit headers on their responses."""

    def __init__(
        self, app: ASGIApp, limiter: RateLimiter, settings: Settings, principals: AccessCache
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.trusted = settings.trusted_proxies
        self.principals = principals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        read = scope["method"] in READS
        rules = self.limiter.rules
        ip = client_ip(scope, self.trusted)
        address = rules.for_ip(ip, read) if ip is not None else None
        charges: list[Charge | None] = [address]
        state = scope.setdefault("state", {})
        commit = True
        secret = _presented_secret(scope)
        principal = self.principals.principal(secret) if secret else None
        if principal is not None:
            charges.append(rules.for_key(principal.key_id, read))
            state[KEY_DRAWN] = principal.key_id
        elif secret is not None and address is not None:
            commit = False  # drawn with the key's bucket once the key is known
            state[ADDRESS_PENDING] = address
        decision = await self.limiter.hit(charges, commit)
        if decision is not None:
            if commit:
                state[DECISION] = decision
            if not decision.allowed:
                await self._refuse(decision, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                found: Decision | None = state.get(DECISION)
                if found is not None:
                    # As MutableHeaders(scope=message).append would add them, already bytes.
                    message["headers"] = [*message["headers"], *headers_of(found)]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _refuse(decision: Decision, send: Send) -> None:
        body = json.dumps({"error": refusal(decision).to_dict()}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers_of(decision),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def charge_key(request: Request, principal: Principal) -> None:
    """Draw from the key's bucket (and the address's, if still pending) unless the
    middleware already did; raise RateLimited when one is empty."""
    limiter = limiter_of(request.app)
    if limiter is None:
        return
    state = request.scope.setdefault("state", {})
    if state.get(KEY_DRAWN) == principal.key_id:
        return
    key = limiter.rules.for_key(principal.key_id, request.method in READS)
    decision = await limiter.hit([key, state.pop(ADDRESS_PENDING, None)])
    state[KEY_DRAWN] = principal.key_id
    if decision is not None:
        state[DECISION] = tighter(state.get(DECISION), decision)
        if not decision.allowed:
            raise refusal(decision)


async def charge_address(request: Request) -> None:
    """A request whose key was refused (401) draws from its address's bucket alone; once
    it is empty, the middleware answers that address's next keyed requests with 429."""
    limiter = limiter_of(request.app)
    state = request.scope.get("state", {})
    if limiter is not None and ADDRESS_PENDING in state:
        decision = await limiter.hit([state.pop(ADDRESS_PENDING)])
        if decision is not None:
            state[DECISION] = tighter(state.get(DECISION), decision)


async def login_decision(request: Request, ip: str | None) -> Decision | None:
    """Draw from the sign-in bucket of the client's address (None: no limit applies)."""
    limiter = limiter_of(request.app)
    if limiter is None or ip is None:
        return None
    return await limiter.hit([limiter.rules.for_login(ip)])


def refuse_large_payouts_while_unshared(
    request: Request, settings: Settings, usdt_values: Callable[[], int]
) -> None:
    """While the shared store is down, a payout (or batch) worth more than
    RATE_LIMIT_FAIL_CLOSED_USDT is refused: per-process limits bound nothing across N
    processes. `usdt_values` is called only then (it validates the request)."""
    limiter = limiter_of(request.app)
    if limiter is None or not limiter.store_down:
        return
    if usdt_values() > settings.rate_limit_fail_closed_usdt:
        raise RateLimiterUnavailable(
            "the shared rate limiter is unavailable: payouts above the fail-closed threshold "
            "are refused until it is back; retry later or send a smaller payout",
        )


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "integer"}}


# The one error shape, as input_boundary.py puts it in the schema's components.
ERROR_BODY = {"$ref": "#/components/schemas/Error"}
RATE_LIMITED_RESPONSE: dict[str, Any] = {
    "description": "rate_limited: a bucket of this API key or client address is empty "
    "(docs/API.md, Rate limits); nothing was done",
    "headers": {
        "Retry-After": _header("seconds until the request would be allowed"),
        "RateLimit-Limit": _header("capacity of the bucket closest to empty"),
        "RateLimit-Remaining": _header("requests left in that bucket (0)"),
        "RateLimit-Reset": _header("seconds until that bucket is full again"),
    },
    "content": {"application/json": {"schema": ERROR_BODY}},
}
UNSHARED_RESPONSE: dict[str, Any] = {
    "description": "rate_limiter_unavailable: the shared rate limiter (Redis) is down and the "
    "payout is worth more than RATE_LIMIT_FAIL_CLOSED_USDT; nothing was written. Also "
    "`maintenance`.",
    "content": {"application/json": {"schema": ERROR_BODY}},
}
FAIL_CLOSED_PATHS = ("/v1/payouts", "/v1/payouts/batch")


def document(app: FastAPI) -> None:
    """Add the 429 answer to every `/v1/` operation of the OpenAPI description (and the 503
    of the payout endpoints that fail closed)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path, operations in schema.get("paths", {}).items():
                if not path.startswith("/v1/"):
                    continue
                for method, operation in operations.items():
                    responses = operation.setdefault("responses", {})
                    responses.setdefault("429", RATE_LIMITED_RESPONSE)
                    if path in FAIL_CLOSED_PATHS and method == "post":
                        responses.setdefault("503", UNSHARED_RESPONSE)
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


def install(
    app: FastAPI, settings: Settings, limiter: RateLimiter | None, principals: AccessCache
) -> None:
    """Put the limiter on `app` (state and middleware) and document its answers."""
    app.state.rate_limiter = limiter
    document(app)
    if limiter is not None:
        app.add_middleware(RateLimits, limiter=limiter, settings=settings, principals=principals)
