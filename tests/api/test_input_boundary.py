"""The input boundary (input_boundary.py) on both databases: control characters in bodies,
path ids and query parameters, duplicate keys, nesting depth, body size before
authentication, parse errors and content types; every refusal writes nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.helpers import DEST, row_counts
from tonrail.db import Database

PAYOUT = {"amount": "1.5", "asset": "TON", "destination": DEST}


def error_of(r: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "param"}
    error: dict[str, Any] = body["error"]
    return error


# (path, body, param): every write endpoint, a bad character in each kind of place
CONTROL_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/payouts", {**PAYOUT, "destination": DEST + "\x00"}, "destination"),
    ("/v1/payouts", {**PAYOUT, "asset": "TO\x00N"}, "asset"),
    ("/v1/payouts", {**PAYOUT, "amount": "1\x00"}, "amount"),
    ("/v1/payouts", {**PAYOUT, "description": "pay\x00day"}, "description"),
    ("/v1/payouts", {**PAYOUT, "description": "bell\x07"}, "description"),
    ("/v1/payouts", {**PAYOUT, "description": "c1\x85"}, "description"),
    ("/v1/payouts", {**PAYOUT, "description": "del\x7f"}, "description"),
    ("/v1/payouts", {**PAYOUT, "metadata": {"order": "4\x002"}}, "metadata.order"),
    ("/v1/payouts", {**PAYOUT, "metadata": {"ord\x00er": "42"}}, "metadata"),
    ("/v1/payouts", {**PAYOUT, "metadata": {"ord\ner": "42"}}, "metadata"),
    ("/v1/payouts", {**PAYOUT, "priority": "normal\n"}, "priority"),
    ("/v1/payouts", {**PAYOUT, "destination": DEST + "\t"}, "destination"),
    ("/v1/payouts", {**PAYOUT, "description": "\ud800 lone surrogate"}, "description"),
    (
        "/v1/payouts/batch",
        {"payouts": [PAYOUT, {**PAYOUT, "destination": "\x00" + DEST}]},
        "payouts.1.destination",
    ),
    (
        "/v1/payouts/batch",
        {"payouts": [{**PAYOUT, "idempotency_key": "k\x001"}]},
        "payouts.0.idempotency_key",
    ),
    ("/v1/invoices", {"amount": "2", "asset": "USDT", "description": "\x00"}, "description"),
    ("/v1/invoices", {"amount": "2", "asset": "USDT", "metadata": {"a": "\x1b[31m"}}, "metadata.a"),
]


@pytest.mark.parametrize(("path", "body", "param"), CONTROL_CASES)
async def test_control_characters_in_bodies_are_refused_and_write_nothing(
    path: str,
    body: dict[str, Any],
    param: str,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
) -> None:
    before = await row_counts(db)
    headers = {**auth, "Idempotency-Key": "boundary-1", "Content-Type": "application/json"}
    r = await client.post(path, content=json.dumps(body), headers=headers)  # \u escapes
    assert r.status_code == 400, r.text
    error = error_of(r)
    assert error["code"] == "parameter_invalid" and error["param"] == param
    assert "U+" in error["message"]
    assert await row_counts(db) == before


async def test_free_text_keeps_tab_and_newlines_exactly(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    text = "line one\r\nline two\tand a tab\n"
    body = {**PAYOUT, "description": text, "metadata": {"note": "a\nb", "plain": "c"}}
    r = await client.post("/v1/payouts", json=body, headers=auth)
    assert r.status_code == 201, r.text
    got = (await client.get(f"/v1/payouts/{r.json()['id']}", headers=auth)).json()
    assert got["description"] == text
    assert got["metadata"] == {"note": "a\nb", "plain": "c"}
    inv = await client.post(
        "/v1/invoices", json={"amount": "1", "asset": "USDT", "description": text}, headers=auth
    )
    assert inv.status_code == 201 and inv.json()["description"] == text


@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("GET", "/v1/payouts/pay_%00x", "payment_id"),
        ("GET", "/v1/invoices/pay_%01x", "payment_id"),
        ("GET", "/v1/invoices/pay_%00x/qr.svg", "payment_id"),
        ("POST", "/v1/payouts/pay_%00x/cancel", "payment_id"),
        ("POST", "/v1/payouts/pay_%0Ax/approve", "payment_id"),
        ("POST", "/v1/invoices/pay_%00x/checkout", "invoice_id"),
        ("GET", "/v1/payouts?status=queued%00", "status"),
        ("GET", "/v1/payouts?starting_after=pay_%00", "starting_after"),
        ("GET", "/v1/invoices?limit=1%00", "limit"),
        ("GET", "/v1/fees/status?x=%1F", "x"),
    ],
)
async def test_control_characters_in_paths_and_queries_are_refused(
    method: str,
    path: str,
    param: str,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
) -> None:
    before = await row_counts(db)
    r = await client.request(method, path, headers=auth)
    assert r.status_code == 400, r.text
    assert error_of(r)["code"] == "parameter_invalid" and error_of(r)["param"] == param
    assert await row_counts(db) == before


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"amount": "1", "amount": "2", "asset": "TON", "destination": "%s"}', "amount"),
        (
            b'{"amount": "1", "asset": "TON", "destination": "%s", '
            b'"metadata": {"k": "1", "k": "2"}}',
            "metadata.k",
        ),
    ],
)
async def test_duplicate_keys_are_refused(
    raw: bytes, param: str, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    before = await row_counts(db)
    headers = {**auth, "Content-Type": "application/json"}
    r = await client.post("/v1/payouts", content=raw % DEST.encode(), headers=headers)
    assert r.status_code == 400, r.text
    assert error_of(r)["code"] == "body_duplicate_key" and error_of(r)["param"] == param
    batch = b'{"payouts": [%s]}' % (raw % DEST.encode())
    r = await client.post("/v1/payouts/batch", content=batch, headers=headers)
    assert error_of(r)["code"] == "body_duplicate_key"
    assert error_of(r)["param"] == f"payouts.0.{param}"
    assert await row_counts(db) == before


def nested(depth: int) -> dict[str, Any]:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value  # type: ignore[no-any-return]


@pytest.mark.parametrize("depth", [33, 100_000])
async def test_nesting_depth_is_bounded(
    depth: int, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    before = await row_counts(db)
    text = '{"k": ' * depth + '"leaf"' + "}" * depth
    body = f'{{"amount": "1", "asset": "TON", "destination": "{DEST}", "metadata": {text}}}'
    r = await client.post(
        "/v1/payouts", content=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text[:300]
    assert error_of(r)["code"] == "body_too_deep"
    assert await row_counts(db) == before


async def test_depth_within_the_bound_reaches_the_schema(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    # 31 levels of metadata under the body's own object: the schema refuses it, not the depth.
    r = await client.post("/v1/payouts", json={**PAYOUT, "metadata": nested(30)}, headers=auth)
    assert r.status_code == 400 and error_of(r)["code"] == "parameter_invalid"


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"amount": "1"} trailing',
        b'{"amount": NaN}',
        b'{"amount": Infinity}',
        b'{"amount": "\xff"}',
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
        '{"amount": "1"}'.encode("utf-16"),
        b'{"n": 1' + b"0" * 5000 + b"}",  # an integer Python will not convert
    ],
)
async def test_parse_errors_answer_body_invalid_json(
    raw: bytes, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    before = await row_counts(db)
    r = await client.post(
        "/v1/payouts", content=raw, headers={**auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert error_of(r)["code"] == "body_invalid_json"
    assert await row_counts(db) == before


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        None,
    ],
)
async def test_bodies_that_are_not_json_answer_415(
    content_type: str | None, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    before = await row_counts(db)
    headers = dict(auth)
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = await client.post("/v1/payouts", content=json.dumps(PAYOUT).encode(), headers=headers)
    assert r.status_code == 415, r.text
    assert error_of(r)["code"] == "content_type_unsupported"
    assert error_of(r)["param"] == "Content-Type"
    assert await row_counts(db) == before


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/json;charset=UTF-8"]
)
async def test_json_with_a_utf8_charset_is_accepted(
    content_type: str, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/payouts",
        content=json.dumps(PAYOUT).encode(),
        headers={**auth, "Content-Type": content_type},
    )
    assert r.status_code == 201, r.text


async def test_empty_bodies_need_no_content_type(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    pid = (await client.post("/v1/payouts", json=PAYOUT, headers=auth)).json()["id"]
    r = await client.post(f"/v1/payouts/{pid}/cancel", headers=auth)
    assert r.status_code == 200, r.text


# ----------------------------------------------------------------- body size


class Upload:
    """An ASGI `receive` that offers `total` bytes of JSON (`{"pad": 1}` and spaces) in 64 KiB
    chunks, and counts how many were read."""

    def __init__(self, total: int) -> None:
        self.data = b'{"pad": 1' + b" " * (total - 10) + b"}"
        self.read = 0

    async def __call__(self) -> dict[str, Any]:
        chunk = self.data[self.read : self.read + 65_536]
        self.read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": self.read < len(self.data)}


async def call(app: Any, path: str, headers: list[tuple[bytes, bytes]], upload: Upload) -> Any:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"tonrail.test"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("tonrail.test", 80),
    }
    await app(scope, upload, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start, json.loads(body)


HUNDRED_MB = 100 * 1024 * 1024


@pytest.mark.parametrize("path", ["/v1/payouts", "/webhooks/stripe", "/dashboard/login"])
async def test_a_100_mb_body_without_a_key_is_refused_before_it_is_read(
    path: str, app: Any, db: Database
) -> None:
    before = await row_counts(db)
    declared = Upload(HUNDRED_MB)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(HUNDRED_MB).encode()),
    ]
    start, body = await call(app, path, headers, declared)
    assert start["status"] == 413 and body["error"]["code"] == "body_too_large"
    assert (b"connection", b"close") in start["headers"]
    assert declared.read == 0  # the declared length alone refuses it

    chunked = Upload(HUNDRED_MB)  # no Content-Length: counted while read
    start, body = await call(app, path, [(b"content-type", b"application/json")], chunked)
    assert start["status"] == 413 and body["error"]["code"] == "body_too_large"
    limit = app.state.settings.request_body_max_bytes
    assert limit < chunked.read <= limit + 65_536
    assert await row_counts(db) == before


async def test_a_body_within_the_limit_reaches_authentication(app: Any) -> None:
    # Valid JSON just under the cap, without a key: the boundary lets it through, then 401.
    limit = app.state.settings.request_body_max_bytes
    upload = Upload(limit)
    start, body = await call(app, "/v1/payouts", [(b"content-type", b"application/json")], upload)
    assert upload.read == limit
    assert start["status"] == 401 and body["error"]["code"] == "api_key_missing"


# ----------------------------------------------------------------- the schema


async def test_the_schema_documents_the_refusals(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "400" in responses, (method, path)
            if method in ("post", "put", "patch", "delete"):
                assert {"413", "415"} <= set(responses), (method, path)
            for code, response in responses.items():
                if code.startswith("4"):
                    assert response["content"]["application/json"]["schema"] == error_ref
