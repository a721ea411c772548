"""The OpenAPI schema says what the API does (api_schema.py), and the findings of the
schemathesis run (test_schemathesis.py) stay fixed, on both databases."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.helpers import DEST
from tonrail.db import Database


async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    schema: dict[str, Any] = (await client.get("/openapi.json")).json()
    return schema


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, ops in schema["paths"].items()
        for method, operation in ops.items()
    ]


async def test_amounts_assets_and_statuses_are_typed(client: httpx.AsyncClient) -> None:
    schemas = (await openapi(client))["components"]["schemas"]
    payout = schemas["PayoutCreate"]["properties"]
    assert payout["amount"]["type"] == "string"
    assert re.fullmatch(payout["amount"]["pattern"], "12.50")
    assert not re.fullmatch(payout["amount"]["pattern"], "-1")
    assert not re.fullmatch(payout["amount"]["pattern"], "1e3")
    assert payout["asset"]["enum"] == ["TON", "USDT"]
    assert schemas["InvoiceCreate"]["properties"]["asset"]["enum"] == ["TON", "USDT", "USD"]
    assert schemas["PaymentOut"]["properties"]["status"]["$ref"].endswith("/PaymentStatus")
    statuses = set(schemas["PaymentStatus"]["enum"])
    assert statuses == {
        "requires_approval",
        "queued",
        "processing",
        "awaiting_payment",
        "succeeded",
        "failed",
        "canceled",
        "expired",
    }


async def test_ids_cursors_and_idempotency_keys_have_their_shape(
    client: httpx.AsyncClient,
) -> None:
    schema = await openapi(client)
    listed = {p["name"]: p["schema"] for p in schema["paths"]["/v1/payouts"]["get"]["parameters"]}
    assert re.fullmatch(listed["starting_after"]["pattern"], "pay_" + "a1" * 12 + "z")
    assert "awaiting_payment" not in listed["status"]["enum"]
    assert listed["limit"]["minimum"] == 1
    for method, path, operation in operations(schema):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["schema"]["pattern"].endswith("_[0-9a-z]{25}$"), (method, path)
            if parameter["name"] == "Idempotency-Key":
                assert parameter["schema"]["maxLength"] == 255


async def test_every_answer_is_documented_with_the_error_shape(client: httpx.AsyncClient) -> None:
    for method, path, operation in operations(await openapi(client)):
        responses = operation["responses"]
        if "security" in operation:  # authenticated: a refused key, a scope, a lock
            assert {"401", "403", "423"} <= set(responses), (method, path)
        if "{" in path or path.startswith("/webhooks/"):
            assert "404" in responses, (method, path)
        if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", [])):
            assert "409" in responses, (method, path)
        for code, response in responses.items():
            if code[0] == "4":
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error", (method, path, code)


def _untyped(schema: dict[str, Any], components: dict[str, Any]) -> str | None:
    """Why a response body schema says nothing about the body, or None when it is typed."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _untyped(components[name], components)
    if not schema:
        return "an empty schema ({})"
    if schema.get("type") == "object" and not schema.get("properties"):
        extra = schema.get("additionalProperties")
        if not isinstance(extra, dict) or not extra:
            return "an object without properties"
    if "type" not in schema and not {"anyOf", "oneOf", "allOf", "enum", "const"} & set(schema):
        return "no type"
    return None


def test_the_untyped_check_tells_a_model_from_a_free_dict() -> None:
    """The rule below catches what FastAPI writes for `-> dict[str, Any]` or `-> Any`."""
    components = {"M": {"type": "object", "properties": {"id": {"type": "string"}}}}
    assert _untyped({"$ref": "#/components/schemas/M"}, components) is None
    assert _untyped({}, components) == "an empty schema ({})"
    free = {"type": "object", "additionalProperties": True, "title": "Response X"}
    assert _untyped(free, components) == "an object without properties"
    assert _untyped({"type": "object", "additionalProperties": {"type": "string"}}, {}) is None


async def test_every_v1_success_answer_has_a_typed_schema(client: httpx.AsyncClient) -> None:
    """A /v1 route whose 2xx answer is `{}`, an untyped object or no schema at all fails here:
    give it a response model (schemathesis then checks every answer against it)."""
    schema = await openapi(client)
    components = schema["components"]["schemas"]
    missing = []
    checked = 0
    for method, path, operation in operations(schema):
        if not path.startswith("/v1/"):
            continue
        for code, response in operation["responses"].items():
            if not code.startswith("2") or code == "204":
                continue
            content = response.get("content") or {}
            if not content:
                missing.append(f"{method.upper()} {path} {code}: no content")
            for media, body in content.items():
                why = _untyped(body.get("schema") or {}, components)
                if why:
                    missing.append(f"{method.upper()} {path} {code} {media}: {why}")
                checked += 1
    assert not missing, "\n".join(missing)
    assert checked >= 30  # every /v1 operation was looked at (30 today)


async def test_links_join_create_get_list_approve_and_cancel(client: httpx.AsyncClient) -> None:
    paths = (await openapi(client))["paths"]
    links = paths["/v1/payouts"]["post"]["responses"]["201"]["links"]
    ids = {op["operationId"]: (path, m) for path, ops in paths.items() for m, op in ops.items()}
    targets = {ids[link["operationId"]] for link in links.values()}
    assert targets == {
        ("/v1/payouts/{payment_id}", "get"),
        ("/v1/payouts/{payment_id}/approve", "post"),
        ("/v1/payouts/{payment_id}/cancel", "post"),
        ("/v1/payouts", "get"),
    }
    assert links["GetPayout"]["parameters"] == {"payment_id": "$response.body#/id"}
    assert "links" in paths["/v1/invoices"]["post"]["responses"]["201"]


async def test_text_fields_state_the_boundary_rule(client: httpx.AsyncClient) -> None:
    props = (await openapi(client))["components"]["schemas"]["PayoutCreate"]["properties"]
    destination = props["destination"]["pattern"]
    assert re.fullmatch(destination, DEST) and not re.fullmatch(destination, "EQ\x00")
    assert not re.fullmatch(destination, "EQ\n")
    description = props["description"]["anyOf"][0]["pattern"]
    assert re.fullmatch(description, "two\nlines\t") and not re.fullmatch(description, "\x07")
    assert not re.fullmatch(props["metadata"]["propertyNames"]["pattern"], "a\u0085")


async def test_a_405_names_every_method_of_the_path(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.request("TRACE", "/v1/payouts", headers=auth)
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    assert r.json()["error"]["code"] == "method_not_allowed"
    # `batch` is no payout id: the path is POST-only, not an unknown payout.
    r = await client.get("/v1/payouts/batch", headers=auth)
    assert r.status_code == 405 and r.headers["allow"] == "POST"


async def test_an_invoice_in_an_asset_without_a_rate_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    r = await client.post("/v1/invoices", json={"amount": "12.50", "asset": "EUR"}, headers=auth)
    assert r.status_code == 400, r.text  # was 500: "no rate configured for EUR"
    assert r.json()["error"] == {
        "code": "asset_unsupported",
        "message": "invoices in EUR are not supported; use TON, USDT or USD",
        "param": "asset",
    }
    listed = await client.get("/v1/invoices", headers=auth)
    assert listed.json()["data"] == []


async def test_a_list_refuses_a_status_it_never_holds(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for path, status in (("/v1/payouts", "awaiting_payment"), ("/v1/invoices", "paid")):
        r = await client.get(path, params={"status": status}, headers=auth)
        assert r.status_code == 400, (path, r.text)  # was 200 with an empty list
        assert r.json()["error"]["param"] == "status"
    assert (await client.get("/v1/payouts?status=queued", headers=auth)).status_code == 200


async def test_an_idempotency_key_is_printable_ascii(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = {"amount": "1", "asset": "TON", "destination": DEST}
    for key in ("caf\xe9".encode("latin-1"), b"tab\there"):
        r = await client.post("/v1/payouts", json=body, headers={**auth, "Idempotency-Key": key})
        assert r.status_code == 400, (key, r.text)
        assert r.json()["error"]["code"] == "idempotency_key_invalid"
    ok = await client.post("/v1/payouts", json=body, headers={**auth, "Idempotency-Key": "a b"})
    assert ok.status_code == 201, ok.text


async def test_a_batch_item_key_follows_the_header_rule(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """The schema states the item key's pattern, and the API holds to it."""
    schemas = (await openapi(client))["components"]["schemas"]
    item_key = schemas["PayoutBatchItem"]["properties"]["idempotency_key"]["anyOf"][0]
    assert item_key["maxLength"] == 200 and not re.fullmatch(item_key["pattern"], "caf\xe9")
    body = {"amount": "1", "asset": "TON", "destination": DEST, "idempotency_key": "caf\xe9"}
    r = await client.post("/v1/payouts/batch", json={"payouts": [body]}, headers=auth)
    assert r.status_code == 400, r.text  # was 201: any printable text was taken
    assert r.json()["error"]["code"] == "idempotency_key_invalid"


async def test_a_key_is_sent_as_bearer_or_x_api_key(
    client: httpx.AsyncClient, api_key: str
) -> None:
    """Every authenticated operation names both ways of sending a key, in that order (one is
    declared to FastAPI, the other added beside it: api_schema.py), and both work."""
    schema = await openapi(client)
    schemes = schema["components"]["securitySchemes"]
    assert list(schemes) == ["HTTPBearer", "APIKeyHeader"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert (schemes["APIKeyHeader"]["in"], schemes["APIKeyHeader"]["name"]) == (
        "header",
        "X-API-Key",
    )
    secured = [(m, p) for m, p, op in operations(schema) if "security" in op]
    assert ("post", "/v1/payouts") in secured and ("get", "/v1/payouts") in secured
    for _, path, operation in operations(schema):
        if "security" in operation:
            assert operation["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}], path
    body = {"amount": "1", "asset": "TON", "destination": DEST}
    for headers in ({"Authorization": f"Bearer {api_key}"}, {"X-API-Key": api_key}):
        assert (await client.post("/v1/payouts", json=body, headers=headers)).status_code == 201
        assert (await client.get("/v1/payouts", headers=headers)).status_code == 200
    refused = await client.get("/v1/payouts", headers={"X-API-Key": "tr_wrong"})
    assert refused.status_code == 401
