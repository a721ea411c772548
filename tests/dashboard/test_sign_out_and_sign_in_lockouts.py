"""Dashboard sessions end on the server at sign-out, and sign-in failures lock the sign-in
from an address (their own bucket, apart from API calls), on both databases over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from tests.dashboard.conftest import PASSWORD, login_csrf, sign_in
from tests.helpers import DEST
from tonrail import clock
from tonrail.dashboard import sessions
from tonrail.db import Database
from tonrail.security.models import Lockout

PAYOUT = {"amount": "1", "asset": "TON", "destination": DEST}
GUESS = {"Authorization": "Bearer trk_guess"}
OFFICE, OTHER = "203.0.113.7", "203.0.113.8"


def _peer(app: Any, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(ip, 1)), base_url="http://tonrail.test"
    )


async def _sign_out(client: httpx.AsyncClient, csrf: str) -> None:
    r = await client.post("/dashboard/logout", data={sessions.CSRF_FIELD: csrf})
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"


async def test_a_cookie_copied_before_sign_out_no_longer_works(
    client: httpx.AsyncClient, admins: dict[str, str]
) -> None:
    csrf = await sign_in(client, "operator")
    copied = client.cookies.get(sessions.COOKIE)
    assert copied
    assert (await client.get("/dashboard/overview")).status_code == 200
    await _sign_out(client, csrf)
    client.cookies.set(sessions.COOKIE, copied)  # the old cookie, still signed and unexpired
    r = await client.get("/dashboard/overview")
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login")
    # A state change with it and its CSRF token is refused as well.
    r = await client.post(
        "/dashboard/operations/switches/payments_paused",
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/dashboard/login")


async def test_signing_out_ends_only_that_session(app: Any, admins: dict[str, str]) -> None:
    async with _peer(app, OFFICE) as laptop, _peer(app, OFFICE) as phone:
        csrf = await sign_in(laptop, "operator")
        await sign_in(phone, "operator")
        await _sign_out(laptop, csrf)
        assert (await phone.get("/dashboard/overview")).status_code == 200
        assert (await laptop.get("/dashboard/overview")).status_code == 303


async def test_a_forged_sid_with_a_valid_signature_is_refused(
    client: httpx.AsyncClient, admins: dict[str, str]
) -> None:
    """A cookie the server never opened a session for (e.g. made with a leaked JWT secret
    from an admin id and version) signs nobody in."""
    await sign_in(client, "operator")
    settings = client._transport.app.state.settings  # type: ignore[attr-defined]
    claims = sessions.read(settings, client.cookies.get(sessions.COOKIE))
    assert claims is not None
    forged = sessions.issue(settings, claims.admin_id, claims.session_version)
    client.cookies.set(sessions.COOKIE, forged.token)
    assert (await client.get("/dashboard/overview")).status_code == 303


async def test_sign_in_failures_and_api_failures_are_separate_buckets(
    app: Any, admins: dict[str, str], auth: dict[str, str], db: Database
) -> None:
    """An office's mistyped passwords do not lock the merchant's API calls from the same
    address, and bad API keys from an address do not lock the dashboard's sign-in there."""
    clock.set_clock(lambda: datetime(2026, 12, 4, 12, 0, tzinfo=UTC))

    async def attempt(c: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
        form = await c.get("/dashboard/login")
        return await c.post(
            "/dashboard/login",
            data={"username": username, "password": password, "csrf_token": login_csrf(form.text)},
        )

    async with _peer(app, OFFICE) as office, _peer(app, OTHER) as other:
        # Ten wrong sign-ins (to different names: no single account reaches its own lock).
        for n in range(10):
            assert (await attempt(office, f"nobody{n}", "wrong password!")).status_code == 401
        r = await attempt(office, "operator", PASSWORD)  # the right password, locked address
        assert r.status_code == 423 and "from your address" in r.text
        assert (await attempt(other, "operator", PASSWORD)).status_code == 303
        # The API from the same address works.
        assert (await office.post("/v1/payouts", json=PAYOUT, headers=auth)).status_code == 201
        # Ten bad API keys from another address lock its API calls, not its sign-in.
        for _ in range(10):
            assert (await other.get("/v1/payouts", headers=GUESS)).status_code == 401
        assert (await other.get("/v1/payouts", headers=auth)).status_code == 423
        other.cookies.clear()
        assert (await attempt(other, "operator", PASSWORD)).status_code == 303
    async with db.transaction() as session:
        rows = (await session.execute(select(Lockout.subject_kind, Lockout.subject))).all()
    assert sorted(rows) == [("dashboard_ip", OFFICE), ("ip", OTHER)]
