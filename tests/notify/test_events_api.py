"""GET /v1/events and /v1/events/{id}: published events of the account, newest first,
cursor pagination, filters by type (or family.*) and payment."""

from __future__ import annotations

import httpx

from tests.conftest import make_key
from tests.helpers import DEST
from tests.notify.conftest import run_rounds
from tonrail.db import Database
from tonrail.settings import Settings


async def test_events_list_filter_page_and_get(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database, settings: Settings
) -> None:
    r = await client.post(
        "/v1/payouts", json={"amount": "2", "asset": "USDT", "destination": DEST}, headers=auth
    )
    payout_id = r.json()["id"]
    await client.post(f"/v1/payouts/{payout_id}/cancel", headers=auth)
    invoice_id = (
        await client.post("/v1/invoices", json={"amount": "1", "asset": "TON"}, headers=auth)
    ).json()["id"]
    # Not published yet: not listed.
    assert (await client.get("/v1/events", headers=auth)).json()["data"] == []
    await run_rounds(db, settings)

    listed = (await client.get("/v1/events", headers=auth)).json()
    assert [e["type"] for e in listed["data"]] == [
        "invoice.created",
        "payout.canceled",
        "payout.created",
    ]
    assert not listed["has_more"]
    payout_view = (await client.get(f"/v1/payouts/{payout_id}", headers=auth)).json()
    assert listed["data"][1]["data"] == payout_view and listed["data"][1]["object"] == "event"

    page = (await client.get("/v1/events?limit=1", headers=auth)).json()
    assert page["has_more"] and page["data"][0]["payment_id"] == invoice_id
    rest = (
        await client.get(f"/v1/events?limit=5&starting_after={page['data'][0]['id']}", headers=auth)
    ).json()
    assert [e["type"] for e in rest["data"]] == ["payout.canceled", "payout.created"]

    by_type = (await client.get("/v1/events?type=payout.*", headers=auth)).json()["data"]
    assert {e["type"] for e in by_type} == {"payout.created", "payout.canceled"}
    exact = (await client.get("/v1/events?type=invoice.created", headers=auth)).json()["data"]
    assert [e["payment_id"] for e in exact] == [invoice_id]
    by_payment = (await client.get(f"/v1/events?payment={payout_id}", headers=auth)).json()
    assert len(by_payment["data"]) == 2

    one = await client.get(f"/v1/events/{exact[0]['id']}", headers=auth)
    assert one.status_code == 200 and one.json() == exact[0]

    other = {"Authorization": f"Bearer {await make_key(db, 'acct_other')}"}
    assert (await client.get("/v1/events", headers=other)).json()["data"] == []
    r = await client.get(f"/v1/events/{exact[0]['id']}", headers=other)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await client.get(f"/v1/events?starting_after={exact[0]['id']}", headers=other)
    assert r.status_code == 400 and r.json()["error"]["code"] == "cursor_invalid"


async def test_bad_event_queries_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for query, code in (
        ("type=payouts.*", "event_type_invalid"),
        ("type=ops.maintenance.on", "event_type_invalid"),
        ("limit=0", "invalid_request"),
        ("limit=101", "invalid_request"),
        ("limit=x", "parameter_invalid"),
    ):
        r = await client.get(f"/v1/events?{query}", headers=auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == code, query
    assert (await client.get("/v1/events/evt_nope", headers=auth)).status_code == 404
    assert (await client.get("/v1/events")).status_code == 401
