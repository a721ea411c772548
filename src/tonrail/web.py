"""What every HTTP endpoint shares: app state access, authentication, error responses."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from tonrail.api_limits import charge_address, charge_key
from tonrail.db import Database
from tonrail.errors import AuthenticationFailed, PermissionDenied, TonrailError
from tonrail.input_boundary import parsed_json, path_templates
from tonrail.security.access import AccessCache
from tonrail.security.api_keys import Principal, authenticate
from tonrail.security.client_ip import client_ip
from tonrail.security.idempotency import IdempotencyKey, make_key
from tonrail.security.lockouts import charge_failure, refusal_of
from tonrail.settings import Settings


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def client_ip_of(request: Request) -> str | None:
    """The client's address: the socket peer, or X-Forwarded-For behind TRUSTED_PROXIES."""
    return client_ip(request.scope, settings_of(request).trusted_proxies)


# The two ways of sending a key, as the OpenAPI schema names them (securitySchemes and each
# operation's `security`); the key itself is read below, which refuses what these allow.
BEARER = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer <key>`")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")

# What a dependency that authenticates declares (its value is ignored): FastAPI documents
# the Bearer scheme from it, and api_schema.py puts X-API-Key beside it. One dependency, not
# one per scheme: FastAPI runs each on every request, some 12 us of a payout's CPU each.
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


async def current_principal(request: Request, _bearer: BearerDep = None) -> Principal:
    """The caller's API key, as a dependency: `principal_of` (which see)."""
    return await principal_of(request)


async def principal_of(request: Request) -> Principal:
    """Authenticate `Authorization: Bearer <key>` (or `X-API-Key: <key>`).

    A locked client address is refused before its key is looked at (423 `ip_locked`), a
    locked key after (423 `api_key_locked`); a refused key is charged to the address, and
    the failure that reaches ALERT_SUSPICIOUS_FAILURES locks it at once. The key's (and
    the address's) rate-limit buckets are drawn from (429 `rate_limited`, api_limits.py).
    A dependency that calls it declares `BearerDep`, as `current_principal` does, so the
    OpenAPI schema names the ways of sending a key."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        secret: str | None = token.strip()
        if scheme.lower() != "bearer" or not secret:
            secret = None
    else:
        secret = request.headers.get("x-api-key")
    access: AccessCache = request.app.state.access
    await access.refresh()
    ip = client_ip_of(request)
    if access.locked("ip", ip):
        raise refusal_of("ip")
    if header is not None and secret is None:
        raise AuthenticationFailed(
            "send the key as 'Authorization: Bearer <key>'", code="api_key_invalid"
        )
    principal = access.principal(secret) if secret else None
    if principal is None:
        version = access.version
        db: Database = request.app.state.db
        try:
            async with db.transaction() as session:
                principal = await authenticate(session, secret)
        except AuthenticationFailed as exc:
            await charge_address(request)  # a refused key still costs its address a request
            # Repeated refusals from one address lock it (security/lockouts.py).
            if ip is not None and exc.code == "api_key_invalid":
                settings = settings_of(request)
                if await charge_failure(
                    db,
                    "ip",
                    ip,
                    exc.code,
                    threshold=settings.alert_suspicious_failures,
                    window_seconds=settings.monitoring_window_seconds,
                    lock_seconds=settings.lockout_seconds,
                ):
                    access.forget()
            raise
        if secret:
            access.remember(secret, principal, version)
    if access.locked("api_key", principal.key_id):
        raise refusal_of("api_key")
    await charge_key(request, principal)
    return principal


class Answered(Protocol):
    """What a write endpoint's service returns: the response and whether it was replayed."""

    @property
    def body(self) -> Any: ...
    @property
    def status(self) -> int: ...
    @property
    def replayed(self) -> bool: ...


def require_scope(principal: Principal, scope: str) -> None:
    """403 `scope_missing` unless the API key carries `scope`."""
    if scope not in principal.scopes:
        raise PermissionDenied(f"this API key lacks the scope {scope}", code="scope_missing")


async def idempotency_key_of(
    request: Request, principal: Principal, key: str | None
) -> IdempotencyKey | None:
    """The request's Idempotency-Key, fingerprinted on its parsed body (None without one)."""
    if key is None:
        return None
    scope = request.scope
    # `request.url.path`, without building the URL (host, query) around it.
    path = scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    return make_key(
        principal.account_id,
        key,
        scope["method"],
        path,
        await request.body(),
        settings_of(request).idempotency_ttl_hours,
        document=parsed_json(scope),
    )


def send_answer(answer: Answered) -> Response:
    """The JSON response of a write, marked `Idempotent-Replayed` when it is a replay; a body
    the service already rendered (`json_text.render_json`, as JSONResponse would) is sent
    as it is."""
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
    text: str | None = getattr(answer, "text", None)
    if text is not None:
        return Response(
            text.encode(), status_code=answer.status, headers=headers, media_type="application/json"
        )
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


def error_body(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "param": param}}


def install_error_handlers(app: FastAPI) -> None:
    """Map every error once to `{"error": {"code", "message", "param"}}`."""

    @app.exception_handler(TonrailError)
    async def _tonrail(_: Request, exc: TonrailError) -> JSONResponse:
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        param = ".".join(loc) or None
        kind = first.get("type", "")
        code = (
            "parameter_unknown"
            if kind == "extra_forbidden"
            else ("parameter_missing" if kind == "missing" else "parameter_invalid")
        )
        if kind == "json_invalid":
            code = "body_invalid_json"
        message = (
            f"{param}: {first.get('msg', 'invalid')}" if param else first.get("msg", "invalid")
        )
        return JSONResponse(error_body(code, str(message), param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        allowed = allowed_methods(app, request.url.path) if exc.status_code == 405 else []
        if allowed:
            # RFC 9110: a 405 lists what the path allows, across every route that serves it.
            headers["Allow"] = ", ".join(allowed)
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers
        )


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI schema documents for `path` (a 405's `Allow`); a literal
    template (`/v1/payouts/batch`) before one with parameters (`/v1/payouts/{payment_id}`)."""
    schema = app.openapi()["paths"]
    matching = [t for pattern, t in path_templates(app) if pattern.fullmatch(path)]
    if not matching:
        return []
    template = min(matching, key=lambda t: t.count("{"))
    return sorted(method.upper() for method in schema[template])
