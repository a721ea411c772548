"""Sign-in, sessions, roles and CSRF of the dashboard (both databases, over HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import Depends
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select

from tonrail import clock
from tonrail.dashboard import sessions
from tonrail.dashboard.deps import require
from tonrail.db import Database
from tonrail.security import admins as admin_users
from tonrail.security.admins import Admin
from tonrail.security.audit_log import AuditEntry

from .conftest import PASSWORD, login_csrf, sign_in


@pytest.fixture
def probe(app: Any) -> Any:
    """Two routes guarded like real pages: GET needs `view`, POST needs `operate`."""

    @app.get("/dashboard/_probe")
    async def look(admin: Admin = Depends(require("view"))) -> PlainTextResponse:
        return PlainTextResponse(f"hello {admin.username}")

    @app.post("/dashboard/_probe")
    async def act(admin: Admin = Depends(require("operate"))) -> PlainTextResponse:
        return PlainTextResponse(f"done by {admin.username}")

    return app


async def test_sign_in_sets_a_strict_httponly_cookie_and_audits(
    client: httpx.AsyncClient, admins: dict[str, str], db: Database
) -> None:
    form = await client.get("/dashboard/login")
    assert form.status_code == 200
    response = await client.post(
        "/dashboard/login",
        data={"username": "operator", "password": PASSWORD, "csrf_token": login_csrf(form.text)},
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "tonrail_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    async with db.transaction() as session:
        actions = (await session.execute(select(AuditEntry.action, AuditEntry.actor))).all()
    assert ("dashboard.sign_in", "admin:operator") in actions


@pytest.mark.parametrize("username", ["operator", "nobody"])
async def test_wrong_credentials_are_refused_alike(
    client: httpx.AsyncClient, admins: dict[str, str], username: str
) -> None:
    form = await client.get("/dashboard/login")
    response = await client.post(
        "/dashboard/login",
        data={
            "username": username,
            "password": "wrong password!!",
            "csrf_token": login_csrf(form.text),
        },
    )
    assert response.status_code == 401
    assert "Wrong username or password" in response.text
    assert sessions.COOKIE not in response.cookies


async def test_repeated_failures_lock_the_account(
    client: httpx.AsyncClient, admins: dict[str, str], db: Database
) -> None:
    for _ in range(5):
        form = await client.get("/dashboard/login")
        await client.post(
            "/dashboard/login",
            data={
                "username": "approver",
                "password": "nope nope nope",
                "csrf_token": login_csrf(form.text),
            },
        )
    form = await client.get("/dashboard/login")
    locked = await client.post(
        "/dashboard/login",
        data={"username": "approver", "password": PASSWORD, "csrf_token": login_csrf(form.text)},
    )
    assert locked.status_code == 401 and "locked" in locked.text
    later = datetime.now(UTC) + timedelta(seconds=901)
    clock.set_clock(lambda: later)
    await sign_in(client, "approver")  # the lock expires


async def test_sign_in_form_needs_its_csrf_token(
    client: httpx.AsyncClient, admins: dict[str, str]
) -> None:
    await client.get("/dashboard/login")
    response = await client.post(
        "/dashboard/login", data={"username": "operator", "password": PASSWORD, "csrf_token": "x"}
    )
    assert response.status_code == 403
    assert sessions.COOKIE not in response.cookies


@pytest.mark.parametrize("target", ["https://evil.example/x", "//evil.example", "/v1/payouts"])
async def test_next_never_leaves_the_dashboard(
    client: httpx.AsyncClient, admins: dict[str, str], target: str
) -> None:
    form = await client.get("/dashboard/login")
    response = await client.post(
        "/dashboard/login",
        data={
            "username": "viewer",
            "password": PASSWORD,
            "csrf_token": login_csrf(form.text),
            "next": target,
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"


async def test_pages_send_strangers_to_sign_in(client: httpx.AsyncClient, probe: Any) -> None:
    page = await client.get("/dashboard/_probe?x=1")
    assert page.status_code == 303
    assert page.headers["location"] == "/dashboard/login?next=/dashboard/_probe%3Fx%3D1"
    fragment = await client.get("/dashboard/_probe", headers={"HX-Request": "true"})
    assert fragment.status_code == 401
    assert fragment.headers["HX-Redirect"].startswith("/dashboard/login")
    forged = await client.get("/dashboard/_probe", cookies={sessions.COOKIE: "not.a.jwt"})
    assert forged.status_code == 303


async def test_posts_need_the_sessions_csrf_token(
    client: httpx.AsyncClient, admins: dict[str, str], probe: Any
) -> None:
    csrf = await sign_in(client, "operator")
    assert (await client.post("/dashboard/_probe")).status_code == 403
    assert (
        await client.post("/dashboard/_probe", data={"csrf_token": "0" * 64})
    ).status_code == 403
    ok = await client.post("/dashboard/_probe", data={"csrf_token": csrf})
    assert ok.status_code == 200 and ok.text == "done by operator"
    via_header = await client.post("/dashboard/_probe", headers={"X-CSRF-Token": csrf})
    assert via_header.status_code == 200


async def test_a_viewer_may_look_but_not_act(
    client: httpx.AsyncClient, admins: dict[str, str], probe: Any
) -> None:
    csrf = await sign_in(client, "viewer")
    assert (await client.get("/dashboard/_probe")).text == "hello viewer"
    refused = await client.post("/dashboard/_probe", data={"csrf_token": csrf})
    assert refused.status_code == 403
    assert "operate_forbidden" in refused.text


async def test_a_role_change_ends_open_sessions(
    client: httpx.AsyncClient, admins: dict[str, str], probe: Any, db: Database
) -> None:
    await sign_in(client, "operator")
    assert (await client.get("/dashboard/_probe")).status_code == 200
    async with db.transaction() as session:
        await admin_users.set_role(session, "operator", "viewer")
    assert (await client.get("/dashboard/_probe")).status_code == 303


async def test_sessions_expire(
    client: httpx.AsyncClient, admins: dict[str, str], probe: Any
) -> None:
    await sign_in(client, "viewer")
    later = datetime.now(UTC) + timedelta(minutes=481)
    clock.set_clock(lambda: later)
    assert (await client.get("/dashboard/_probe")).status_code == 303


async def test_totp_when_enrolled(client: httpx.AsyncClient, db: Database, probe: Any) -> None:
    async with db.transaction() as session:
        _, secret = await admin_users.create_admin(
            session, "carol", PASSWORD, "operator", totp=True
        )
    assert secret
    form = await client.get("/dashboard/login")
    no_code = await client.post(
        "/dashboard/login",
        data={"username": "carol", "password": PASSWORD, "csrf_token": login_csrf(form.text)},
    )
    assert no_code.status_code == 401 and "one-time code" in no_code.text
    form = await client.get("/dashboard/login")
    ok = await client.post(
        "/dashboard/login",
        data={
            "username": "carol",
            "password": PASSWORD,
            "totp": pyotp.TOTP(secret).now(),
            "csrf_token": login_csrf(form.text),
        },
    )
    assert ok.status_code == 303


@pytest.mark.parametrize(
    ("username", "password", "role", "code"),
    [
        ("ok-name", "short", "viewer", "password_too_short"),
        ("Bad Name!", PASSWORD, "viewer", "username_invalid"),
        ("dave", PASSWORD, "root", "role_invalid"),
    ],
)
async def test_bad_admin_users_are_refused(
    db: Database, username: str, password: str, role: str, code: str
) -> None:
    from tonrail.errors import InvalidRequest

    async with db.transaction() as session:
        with pytest.raises(InvalidRequest) as caught:
            await admin_users.create_admin(session, username, password, role)
    assert caught.value.code == code
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(admin_users.AdminUser)) == 0


async def test_dashboard_headers_forbid_inline_scripts_and_framing(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/dashboard/login")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("htmx.min.js", 200),
        ("chart.umd.min.js", 200),
        ("app.css", 200),
        ("../package.json", 404),
        ("package.json", 404),
    ],
)
async def test_static_files_are_an_allow_list(
    client: httpx.AsyncClient, name: str, status: int
) -> None:
    response = await client.get(f"/dashboard/static/{name}")
    assert response.status_code in ((status,) if status == 200 else (404,))


def test_production_refuses_the_development_jwt_secret() -> None:
    from pydantic import ValidationError

    from tonrail.settings import Settings

    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(_env_file=None, environment="production")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(_env_file=None, environment="production", jwt_secret="short")  # type: ignore[call-arg]
    Settings(_env_file=None, environment="production", jwt_secret="x" * 40)  # type: ignore[call-arg]


async def test_favicon_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
