"""Mount the dashboard on the app: sign-in/out, the pages in `pages/`, errors, headers."""

from __future__ import annotations

import importlib
import pkgutil
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tonrail.api_limits import login_decision
from tonrail.dashboard import assets, pages, sessions
from tonrail.dashboard.deps import LoginRequired, NotAllowed, db_of, is_htmx, settings_of
from tonrail.dashboard.templating import render
from tonrail.errors import AuthenticationFailed
from tonrail.security import admin_sessions, audit_log
from tonrail.security.admins import authenticate
from tonrail.security.lockouts import SubjectLocked, charge_failure, check_not_locked
from tonrail.web import client_ip_of

# Scripts only from our own origin: an injected <script> (a chain comment, metadata) never runs.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)

router = APIRouter(include_in_schema=False)


def _safe_next(value: str | None) -> str:
    """Only a path of this dashboard: never an open redirect to another site."""
    if not value:
        return "/dashboard"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/dashboard"):
        return "/dashboard"
    return value


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=303)


@router.get("/dashboard")
async def dashboard_home() -> RedirectResponse:
    return RedirectResponse("/dashboard/overview", status_code=303)


@router.get("/dashboard/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> Response:
    token = request.cookies.get(sessions.LOGIN_CSRF_COOKIE) or sessions.new_login_csrf()
    response = render(
        request,
        "login.html",
        {"login_csrf": token, "next": _safe_next(next), "error": None, "username": ""},
    )
    _set_login_csrf(request, response, token)
    return response


@router.post("/dashboard/login", response_class=HTMLResponse)
async def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    totp: str = Form(""),
    csrf_token: str = Form(""),
    next: str = Form("/dashboard"),
) -> Response:
    settings = settings_of(request)
    expected = request.cookies.get(sessions.LOGIN_CSRF_COOKIE)
    fresh = sessions.new_login_csrf()

    def again(message: str, status: int) -> Response:
        response = render(
            request,
            "login.html",
            {"login_csrf": fresh, "next": _safe_next(next), "error": message, "username": username},
            status_code=status,
        )
        _set_login_csrf(request, response, fresh)
        return response

    # Before anything costly (the password hash): one bucket per client address.
    ip = client_ip_of(request)
    limited = await login_decision(request, ip)
    if limited is not None and not limited.allowed:
        response = again(
            f"Too many sign-in attempts from your address: try again in "
            f"{limited.retry_after_seconds} s.",
            429,
        )
        response.headers["Retry-After"] = str(limited.retry_after_seconds)
        return response
    if not expected or not csrf_token or expected != csrf_token:
        return again("The sign-in form expired: please try again.", 403)
    if not username or not password:
        return again("Enter your username and password.", 400)
    db = db_of(request)
    failure: AuthenticationFailed | None = None
    new: sessions.NewSession | None = None
    async with db.transaction() as session:
        try:
            # Sign-in failures are their own bucket (dashboard_ip), apart from API calls.
            await check_not_locked(session, None, None, dashboard_ip=ip)
        except SubjectLocked:
            return again("Too many failed sign-ins from your address: try again later.", 423)
        try:
            admin = await authenticate(
                session,
                username,
                password,
                totp or None,
                max_failures=settings.dashboard_login_max_failures,
                lock_seconds=settings.dashboard_login_lock_seconds,
            )
        except AuthenticationFailed as exc:
            failure = exc  # the failed-sign-in count commits with this transaction
        else:
            new = sessions.issue(settings, admin.id, admin.session_version)
            await admin_sessions.start(session, admin.id, new.sid, new.expires_at)
            await audit_log.record(
                session, f"admin:{admin.username}", "dashboard.sign_in", admin.id, {"ip": ip}
            )
    if failure is not None:
        if ip is not None:  # the failure that reaches the limit locks the address at once
            await charge_failure(
                db,
                "dashboard_ip",
                ip,
                failure.code,
                threshold=settings.alert_suspicious_failures,
                window_seconds=settings.monitoring_window_seconds,
                lock_seconds=settings.lockout_seconds,
            )
        messages = {
            "login_locked": "Too many failed sign-ins: this account is locked for a while.",
            "totp_invalid": "The one-time code is missing or wrong.",
        }
        return again(messages.get(failure.code, "Wrong username or password."), 401)
    assert new is not None  # signed in: the session was opened above
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        sessions.COOKIE,
        new.token,
        max_age=settings.dashboard_session_minutes * 60,
        httponly=True,
        secure=settings.dashboard_cookie_secure,
        samesite="strict",
        path="/",
    )
    response.delete_cookie(sessions.LOGIN_CSRF_COOKIE, path="/dashboard/login")
    return response


@router.post("/dashboard/logout")
async def logout(request: Request) -> Response:
    claims = sessions.read(settings_of(request), request.cookies.get(sessions.COOKIE))
    form = await request.form()
    presented = form.get(sessions.CSRF_FIELD)
    if claims is not None and not sessions.csrf_ok(
        settings_of(request), claims.sid, presented if isinstance(presented, str) else None
    ):
        return Response("the form is out of date: reload the page", status_code=403)
    if claims is not None:
        # Ended on the server: a copy of the cookie no longer signs anyone in.
        async with db_of(request).transaction() as session:
            await admin_sessions.end(session, claims.sid)
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


def _set_login_csrf(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        sessions.LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        secure=settings_of(request).dashboard_cookie_secure,
        samesite="strict",
        path="/dashboard/login",
    )


class SecurityHeaders:
    """Security headers on the responses under `prefix` (the dashboard; the hosted checkout
    page with its own CSP); every other path passes straight through (a plain ASGI
    middleware: the API's hot path pays nothing for it)."""

    def __init__(self, app: ASGIApp, prefix: str = "/dashboard", csp: str = CSP) -> None:
        self.app = app
        self.prefix = prefix
        self.csp = csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", self.csp)
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                if headers.get("content-type", "").startswith("text/html"):
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def page_modules() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(pages.__path__) if not m.name.startswith("_")
    )


def install(app: FastAPI) -> None:
    """Add the dashboard to `app`: routes, every page module, error pages, security headers."""
    app.include_router(router)
    app.include_router(assets.router)
    for name in page_modules():
        module = importlib.import_module(f"{pages.__name__}.{name}")
        app.include_router(module.router, include_in_schema=False)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = f"/dashboard/login?next={quote(exc.next_url)}"
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(NotAllowed)
    async def _forbidden(request: Request, exc: NotAllowed) -> Response:
        template = "fragments/flash.html" if is_htmx(request) else "forbidden.html"
        return render(
            request,
            template,
            {"kind": "error", "message": exc.message, "code": f"{exc.permission}_forbidden"},
            status_code=403,
        )

    app.add_middleware(SecurityHeaders)
