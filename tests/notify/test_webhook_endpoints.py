"""POST/GET/PATCH/DELETE /v1/webhook_endpoints, secret rotation and the bad inputs."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import make_key
from tonrail.db import Database
from tonrail.notify import signing

URL = "http://127.0.0.1:9/hooks"


@pytest.fixture
def settings(settings: Any) -> Any:
    return settings.model_copy(update={"webhook_allowed_hosts": "127.0.0.1"})


async def _create(client: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> httpx.Response:
    return await client.post(
        "/v1/webhook_endpoints",
        json={"url": URL, "enabled_events": ["payout.*"], **body},
        headers=auth,
    )


async def test_create_shows_the_secret_once(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await _create(
        client, auth, description="orders", enabled_events=["payout.*", "invoice.succeeded"]
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["object"] == "webhook_endpoint" and body["id"].startswith("we_")
    assert body["status"] == "enabled" and body["url"] == URL
    assert body["enabled_events"] == ["invoice.succeeded", "payout.*"]
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    got = (await client.get(f"/v1/webhook_endpoints/{body['id']}", headers=auth)).json()
    assert got["secret"] is None and got["description"] == "orders"
    listed = (await client.get("/v1/webhook_endpoints", headers=auth)).json()
    assert [e["id"] for e in listed["data"]] == [body["id"]]
    assert all(e["secret"] is None for e in listed["data"])


async def test_list_pages_and_other_accounts_see_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    ids = [(await _create(client, auth)).json()["id"] for _ in range(3)]
    first = (await client.get("/v1/webhook_endpoints?limit=2", headers=auth)).json()
    assert [e["id"] for e in first["data"]] == ids[::-1][:2] and first["has_more"]
    rest = (
        await client.get(f"/v1/webhook_endpoints?limit=2&starting_after={ids[1]}", headers=auth)
    ).json()
    assert [e["id"] for e in rest["data"]] == [ids[0]] and not rest["has_more"]
    other = {"Authorization": f"Bearer {await make_key(db, 'acct_other')}"}
    assert (await client.get("/v1/webhook_endpoints", headers=other)).json()["data"] == []
    r = await client.get(f"/v1/webhook_endpoints/{ids[0]}", headers=other)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await client.delete(f"/v1/webhook_endpoints/{ids[0]}", headers=other)
    assert r.status_code == 404
    r = await client.get(f"/v1/webhook_endpoints?starting_after={ids[0]}", headers=other)
    assert r.status_code == 400 and r.json()["error"]["code"] == "cursor_invalid"


async def test_update_disable_enable_and_delete(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    endpoint = (await _create(client, auth)).json()
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    r = await client.patch(
        path,
        json={"enabled_events": ["*"], "description": None, "status": "disabled"},
        headers=auth,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "disabled" and r.json()["disabled_reason"] == "by_owner"
    assert r.json()["enabled_events"] == ["*"]
    r = await client.patch(path, json={"status": "enabled", "url": URL + "/v2"}, headers=auth)
    assert r.json()["status"] == "enabled" and r.json()["disabled_reason"] is None
    assert r.json()["url"] == URL + "/v2"
    r = await client.delete(path, headers=auth)
    assert r.status_code == 200 and r.json() == {
        "object": "webhook_endpoint",
        "id": endpoint["id"],
        "deleted": True,
    }
    assert (await client.get(path, headers=auth)).status_code == 404
    assert (await client.patch(path, json={"status": "enabled"}, headers=auth)).status_code == 404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://127.0.0.1/x"}, "webhook_url_invalid"),
        ({"url": "http://user:pw@127.0.0.1/x"}, "webhook_url_invalid"),
        ({"url": "not a url"}, "webhook_url_invalid"),
        ({"url": "http://10.1.2.3/hook"}, "webhook_url_forbidden"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "webhook_url_forbidden"),
        ({"url": "http://[::1]:8080/hook"}, "webhook_url_forbidden"),
        ({"url": "http://[::ffff:192.168.0.1]/hook"}, "webhook_url_forbidden"),
        ({"enabled_events": []}, "invalid_request"),
        ({"enabled_events": ["payouts.*"]}, "event_type_invalid"),
        ({"enabled_events": ["payout.**"]}, "event_type_invalid"),
        ({"enabled_events": "payout.*"}, "parameter_invalid"),
        ({"colour": "red"}, "parameter_unknown"),
    ],
)
async def test_bad_endpoints_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any], code: str
) -> None:
    r = await _create(client, auth, **body)
    assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text
    assert (await client.get("/v1/webhook_endpoints", headers=auth)).json()["data"] == []


async def test_production_wants_https(settings: Any, db: Database, auth: dict[str, str]) -> None:
    from tonrail.app import create_app

    prod = settings.model_copy(update={"environment": "production"})
    transport = httpx.ASGITransport(app=create_app(prod, db))
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
        r = await _create(c, auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == "webhook_url_invalid"
        r = await _create(c, auth, url="https://127.0.0.1/hook")
        assert r.status_code == 201, r.text


async def test_writes_need_the_write_scope(client: httpx.AsyncClient, db: Database) -> None:
    reader = {"Authorization": f"Bearer {await make_key(db, 'acct_test', 'payments:read')}"}
    r = await _create(client, reader)
    assert r.status_code == 403 and r.json()["error"]["code"] == "scope_missing"
    assert (await client.get("/v1/webhook_endpoints", headers=reader)).status_code == 200


async def test_create_replays_with_the_same_idempotency_key(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    headers = {**auth, "Idempotency-Key": "hook-1"}
    body = {"url": URL, "enabled_events": ["*"]}
    first = await client.post("/v1/webhook_endpoints", json=body, headers=headers)
    again = await client.post("/v1/webhook_endpoints", json=body, headers=headers)
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
    assert len((await client.get("/v1/webhook_endpoints", headers=auth)).json()["data"]) == 1
    other = await client.post(
        "/v1/webhook_endpoints", json={**body, "description": "x"}, headers=headers
    )
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"


async def test_rotation_signs_with_both_secrets_during_the_overlap(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    endpoint = (await _create(client, auth)).json()
    path = f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret"
    r = await client.post(path, json={"overlap_seconds": 3600}, headers=auth)
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != endpoint["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    r = await client.post(path, json={"overlap_seconds": -1}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_invalid"
    r = await client.post(path, json={"overlap_seconds": 8 * 86400}, headers=auth)
    assert r.status_code == 400


def test_signatures_verify_with_the_standardwebhooks_package() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    body = b'{"type":"payout.succeeded","timestamp":"2026-12-04T18:00:00Z","data":{"id":"pay_1"}}'
    now = int(time.time())
    headers = signing.headers([new, old], "evt_1", now, body)
    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (old, new):  # a receiver on either secret accepts it
        assert Webhook(secret).verify(body, headers)["data"] == {"id": "pay_1"}
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body.replace(b"pay_1", b"pay_2"), headers)
    stale = signing.headers([new], "evt_1", now - 600, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body, stale)
