"""Dashboard filters, ids and forms behind the input boundary, on both databases: a control
character answers 400 parameter_invalid naming the field (PostgreSQL used to answer 500 or
drop the connection) and a refused form writes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.helpers import row_counts
from tonrail.db import Database

SignIn = Callable[[str], Awaitable[str]]


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/dashboard/payments?q=%00", "q"),
        ("/dashboard/payments?status=queued%00", "status"),
        ("/dashboard/payments?date_from=2026-01-01%00", "date_from"),
        ("/dashboard/payments.csv?q=pay_%00", "q"),
        ("/dashboard/payments/pay_%00x", "path"),
        ("/dashboard/operations/payment?id=pay_%00", "id"),
        ("/dashboard/operations/audit?action=ops.%00", "action"),
        ("/dashboard/alerts?rule=%01", "rule"),
        ("/dashboard/alerts/alr_%00", "path"),
        ("/dashboard/backup?direction=%00", "direction"),
        ("/dashboard/approvals/list?after=pay_%00", "after"),
        ("/dashboard/fees/decisions?range=24h%0A", "range"),
        ("/dashboard/overview?range=%00", "range"),
    ],
)
async def test_control_characters_in_filters_and_ids_are_refused(
    url: str, param: str, client: httpx.AsyncClient, signed_in: SignIn
) -> None:
    await signed_in("operator")
    r = await client.get(url)
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["code"] == "parameter_invalid"
    assert r.json()["error"]["param"] == param


async def test_forms_with_control_characters_write_nothing(
    client: httpx.AsyncClient, signed_in: SignIn, db: Database
) -> None:
    csrf = await signed_in("operator")
    headers = {"HX-Request": "true", "X-CSRF-Token": csrf}
    before = await row_counts(db)
    for reason in ("key rotation\x00", "key\x01rotation", "\x1b[2J"):
        r = await client.post(
            "/dashboard/operations/switches/payments_paused",
            data={"enabled": "on", "reason": reason},
            headers=headers,
        )
        assert r.status_code == 400, r.text[:300]
        assert r.json()["error"] == {
            "code": "parameter_invalid",
            "message": r.json()["error"]["message"],
            "param": "reason",
        }
    assert await row_counts(db) == before
    # A reason is free text: a line break is kept.
    r = await client.post(
        "/dashboard/operations/switches/payments_paused",
        data={"enabled": "on", "reason": "key rotation\r\nback at 18:00"},
        headers=headers,
    )
    assert r.status_code == 200, r.text[:300]


async def test_sign_in_with_a_nul_in_the_username_is_refused(
    client: httpx.AsyncClient, db: Database
) -> None:
    before = await row_counts(db)
    r = await client.post(
        "/dashboard/login",
        data={"username": "admin\x00", "password": "x", "csrf_token": "t", "next": "/dashboard"},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "username"
    assert await row_counts(db) == before
