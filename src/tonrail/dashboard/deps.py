"""Who is signed in to the dashboard and what they may do; CSRF on every state change.

Pages take `admin: Admin = Depends(require("view"))` (or "operate", "approve", "administer").
A request without a valid session is sent to the sign-in page; a POST without the session's
CSRF token, or by a role without the permission, is refused with 403 and writes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, Request
from sqlalchemy import func, select

from tonrail.dashboard import sessions
from tonrail.monitoring.models import Alert
from tonrail.monitoring.states import AlertStatus
from tonrail.payments.models import Payment
from tonrail.payments.states import PaymentStatus
from tonrail.security import admin_sessions
from tonrail.security.admins import PERMISSIONS, Admin, load_admin
from tonrail.security.switches import all_switches
from tonrail.web import database
from tonrail.web import settings_of as settings_of

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(Exception):
    def __init__(self, next_url: str):
        super().__init__(next_url)
        self.next_url = next_url


class NotAllowed(Exception):
    def __init__(self, admin: Admin | None, permission: str, message: str | None = None):
        super().__init__(permission)
        self.admin = admin
        self.permission = permission
        self.message = message or (
            f"your role ({admin.role if admin else 'none'}) may not {permission}; "
            f"roles that may: {', '.join(sorted(PERMISSIONS.get(permission, ())))}"
        )


db_of = database  # the app state's database, as every endpoint reads it


async def _presented_csrf(request: Request) -> str | None:
    header = request.headers.get(sessions.CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(sessions.CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def signed_in(request: Request) -> Admin:
    """The admin behind the session cookie; CSRF-checked for anything but GET/HEAD."""
    settings = settings_of(request)
    claims = sessions.read(settings, request.cookies.get(sessions.COOKIE))
    next_url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if claims is None:
        raise LoginRequired(next_url)
    async with db_of(request).transaction() as session:
        admin = await load_admin(session, claims.admin_id, claims.session_version)
        if admin is None or not await admin_sessions.is_open(session, admin.id, claims.sid):
            raise LoginRequired(next_url)
        switches = await all_switches(session)
        open_alerts = await session.scalar(
            select(func.count()).select_from(Alert).where(Alert.status == AlertStatus.OPEN)
        )
        awaiting = await session.scalar(
            select(func.count())
            .select_from(Payment)
            .where(Payment.status == PaymentStatus.REQUIRES_APPROVAL)
        )
    request.state.dashboard = {
        "admin": admin,
        "csrf_token": sessions.csrf_token(settings, claims.sid),
        "switches": switches,
        "open_alerts": int(open_alerts or 0),
        "awaiting_approval": int(awaiting or 0),
        "refresh_seconds": settings.dashboard_refresh_seconds,
        "network": settings.ton_network,
    }
    if request.method not in SAFE_METHODS and not sessions.csrf_ok(
        settings, claims.sid, await _presented_csrf(request)
    ):
        raise NotAllowed(admin, "csrf", "the form is out of date or forged: reload the page")
    return admin


def require(permission: str) -> Callable[..., Awaitable[Admin]]:
    """A dependency: the signed-in admin, if their role has `permission`."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    async def dependency(admin: Admin = Depends(signed_in)) -> Admin:
        if not admin.can(permission):
            raise NotAllowed(admin, permission)
        return admin

    return dependency


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def actor(admin: Admin) -> str:
    """How an admin appears in the audit log and in `changed_by` columns."""
    return f"admin:{admin.username}"


def context(request: Request) -> dict[str, Any]:
    return dict(getattr(request.state, "dashboard", {}) or {})
