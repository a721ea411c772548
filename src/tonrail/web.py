"""What every HTTP endpoint shares: app state access, authentication, error responses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tonrail.db import Database
from tonrail.errors import AuthenticationFailed, TonrailError
from tonrail.security.api_keys import Principal, PrincipalCache, authenticate
from tonrail.security.client_ip import client_ip
from tonrail.security.lockouts import record_security_failure
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


async def current_principal(request: Request) -> Principal:
    """Authenticate `Authorization: Bearer <key>` (or `X-API-Key: <key>`)."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed(
                "send the key as 'Authorization: Bearer <key>'", code="api_key_invalid"
            )
        secret: str | None = token.strip()
    else:
        secret = request.headers.get("x-api-key")
    cache: PrincipalCache = request.app.state.principals
    if secret and (cached := cache.get(secret)) is not None:
        return cached
    db: Database = request.app.state.db
    try:
        async with db.transaction() as session:
            principal = await authenticate(session, secret)
    except AuthenticationFailed as exc:
        # Repeated refusals from one address lock it (security/lockouts.py).
        ip = client_ip_of(request)
        if ip is not None and exc.code == "api_key_invalid":
            await record_security_failure(db, "ip", ip, exc.code)
        raise
    if secret:
        cache.put(secret, principal)
    return principal


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
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)
