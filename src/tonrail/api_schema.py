"""The OpenAPI description made as precise as the API it describes (docs/API.md).

FastAPI writes the schema from the routes; this adds what the routes cannot say themselves:
how a caller authenticates, the shape of every id (paths and `starting_after` cursors), the
`limit` range, the Idempotency-Key the API accepts, every answer an operation can give (a
key refused 401, a scope missing 403, an unknown id 404, an Idempotency-Key reused 409, a
lock 423, maintenance 503, each as the shared `Error`), and the OpenAPI links between
create, get, list, approve and cancel that a client (and schemathesis) can follow.
Called after `input_boundary.document_refusals`, which adds 400/413/415 and the `Error`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder

from tonrail.input_boundary import FREE_TEXT_FIELDS, FREE_TEXT_MAPS
from tonrail.notify.schemas import EVENT_TYPE_PATTERN
from tonrail.payments.states import INVOICE_TRANSITIONS, PAYOUT_TRANSITIONS
from tonrail.security.idempotency import KEY_PATTERN, MAX_KEY_LENGTH
from tonrail.web import API_KEY_HEADER, BEARER

ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def id_pattern(prefix: str) -> str:
    """The ids of `tonrail.ids.new_id`: the prefix, then 25 base-36 digits."""
    return f"^{prefix}_[0-9a-z]{{25}}$"


# Path parameters and the collections' cursors, by the object they name.
ID_PREFIXES = {
    "payment_id": "pay",
    "invoice_id": "pay",
    "refund_id": "re",
    "endpoint_id": "we",
    "delivery_id": "dlv",
    "event_id": "evt",
}
# `starting_after` of a list: an id of what the list holds.
CURSOR_PREFIXES = {
    "/v1/payouts": "pay",
    "/v1/invoices": "pay",
    "/v1/webhook_endpoints": "we",
    "/v1/webhook_endpoints/{endpoint_id}/deliveries": "dlv",
    "/v1/events": "evt",
}
# `status` of a list: every status an object of the list can have (payments/states.py).
LIST_STATUSES = {"/v1/payouts": list(PAYOUT_TRANSITIONS), "/v1/invoices": list(INVOICE_TRANSITIONS)}
# Writes refused with 503 `maintenance` while maintenance mode is on.
MAINTENANCE_REFUSED = frozenset(
    {
        ("post", "/v1/payouts"),
        ("post", "/v1/payouts/batch"),
        ("post", "/v1/invoices"),
        ("post", "/v1/invoices/{payment_id}/refunds"),
    }
)
# The input boundary's rule on text (input_boundary.py) as JSON Schema patterns: no control
# character, but TAB, LF and CR in free text (description, reason, metadata values).
PLAIN_TEXT = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
FREE_TEXT = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"
_CONSTRAINED = frozenset({"pattern", "enum", "const", "format"})
AUTH_ANSWERS = {
    "401": "api_key_missing / api_key_invalid: no key, or one that is unknown or revoked",
    "403": "scope_missing: the key lacks the scope this operation needs",
    "423": "ip_locked / api_key_locked: too many refused requests (docs/API.md, lockouts)",
}
# Operations whose destination AML/KYC screening may refuse (docs/COMPLIANCE.md).
SCREENED = frozenset(
    {
        ("post", "/v1/payouts"),
        ("post", "/v1/payouts/batch"),
        ("post", "/v1/invoices/{payment_id}/refunds"),
    }
)
SCREENED_403 = (
    AUTH_ANSWERS["403"] + "; screening_blocked: AML/KYC screening refused the destination "
    "(a batch: every blocked item under `items`; nothing written)"
)
# (operation, link name, target operation, parameters): what a created or read object opens.
LINKS: list[tuple[tuple[str, str], str, tuple[str, str], dict[str, str]]] = []
for noun, path in (("Payout", "/v1/payouts"), ("Invoice", "/v1/invoices")):
    item = path + "/{payment_id}"
    by_id = {"payment_id": "$response.body#/id"}
    targets = [("Get" + noun, ("get", item), by_id)]
    targets += [("Cancel" + noun, ("post", item + "/cancel"), by_id)]
    targets += [(f"List{noun}sAfter", ("get", path), {"starting_after": "$response.body#/id"})]
    if noun == "Payout":
        targets += [("ApprovePayout", ("post", item + "/approve"), by_id)]
    else:
        targets += [("CreateRefund", ("post", item + "/refunds"), by_id)]
        targets += [("ListRefunds", ("get", item + "/refunds"), by_id)]
    for source in (("post", path), ("get", item)):
        LINKS += [(source, name, target, params) for name, target, params in targets]
LINKS += [
    (("post", "/v1/invoices/{payment_id}/refunds"), "GetRefund", ("get", "/v1/refunds/{refund_id}"),
     {"refund_id": "$response.body#/id"}),
    (("post", "/v1/webhook_endpoints"), "GetWebhookEndpoint",
     ("get", "/v1/webhook_endpoints/{endpoint_id}"), {"endpoint_id": "$response.body#/id"}),
]  # fmt: skip


def _parameters(path: str, operation: dict[str, Any], page_max: int) -> None:
    for parameter in operation.get("parameters", []):
        schema = parameter.setdefault("schema", {})
        name, where = parameter["name"], parameter["in"]
        if where == "path" and name in ID_PREFIXES:
            schema.update(type="string", pattern=id_pattern(ID_PREFIXES[name]))
        elif where == "query" and name == "starting_after" and path in CURSOR_PREFIXES:
            schema.pop("anyOf", None)
            schema.update(type="string", pattern=id_pattern(CURSOR_PREFIXES[path]))
        elif where == "query" and name == "status" and path in LIST_STATUSES:
            schema.pop("anyOf", None)
            schema.update(type="string", enum=LIST_STATUSES[path])
        elif where == "query" and name == "limit":
            schema.update(minimum=1, maximum=page_max)
        elif where == "query" and name == "type" and path == "/v1/events":
            schema.pop("anyOf", None)
            schema.update(type="string", pattern=EVENT_TYPE_PATTERN)
        elif where == "header" and name == "Idempotency-Key":
            schema.pop("anyOf", None)
            schema.update(type="string", pattern=KEY_PATTERN, maxLength=MAX_KEY_LENGTH)
            parameter["description"] = (
                f"1 to {MAX_KEY_LENGTH} printable ASCII characters, no space at either end; "
                "the same key with the same request replays the first answer"
            )


def _text(node: Any, name: str = "", in_map: bool = False) -> None:
    """Give every unconstrained string under `node` the boundary's character rule."""
    if not isinstance(node, dict):
        return
    if node.get("type") == "string" and not _CONSTRAINED & node.keys():
        node["pattern"] = FREE_TEXT if in_map or name in FREE_TEXT_FIELDS else PLAIN_TEXT
    for branch in (*node.get("anyOf", ()), *node.get("oneOf", ()), *node.get("allOf", ())):
        _text(branch, name, in_map)
    _text(node.get("items"))
    for key, prop in node.get("properties", {}).items():
        _text(prop, key)
    if isinstance(node.get("additionalProperties"), dict):
        _text(node["additionalProperties"], in_map=name in FREE_TEXT_MAPS)
        node.setdefault("propertyNames", {"pattern": PLAIN_TEXT})


def _request_schemas(schema: dict[str, Any]) -> set[str]:
    """The component schemas a request body uses, directly or nested."""
    components = schema.get("components", {}).get("schemas", {})
    found: set[str] = set()
    stack = [
        content.get("schema", {})
        for operations in schema["paths"].values()
        for operation in operations.values()
        for content in operation.get("requestBody", {}).get("content", {}).values()
    ]
    while stack:
        text = json.dumps(stack.pop())
        for ref in re.findall(r'"#/components/schemas/([^"]+)"', text):
            if ref not in found:
                found.add(ref)
                stack.append(components.get(ref, {}))
    return found


def _answers(
    method: str, path: str, operation: dict[str, Any], authenticated: bool
) -> dict[str, Any]:
    responses: dict[str, Any] = operation["responses"]
    params = {p["name"]: p["in"] for p in operation.get("parameters", [])}
    wanted: dict[str, str] = {}
    if authenticated:
        wanted.update(AUTH_ANSWERS)
        if (method, path) in SCREENED:
            wanted["403"] = SCREENED_403
    if "path" in params.values() or path.startswith("/webhooks/"):
        wanted["404"] = "not_found: no such object in this account (or the rail is not set up)"
    if "Idempotency-Key" in params:
        wanted["409"] = "idempotency_key_*: the key was used with another request, or is in use"
    if (method, path) in MAINTENANCE_REFUSED:
        wanted["503"] = "maintenance: new payments are refused while maintenance mode is on"
    for code, description in wanted.items():
        responses.setdefault(code, {"description": description})
    for code, response in responses.items():
        if code[0] in "45" and "content" not in response:
            response["content"] = ERROR_REF
    return responses


def _link(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    for (method, path), name, (t_method, t_path), params in LINKS:
        source = paths.get(path, {}).get(method)
        target = paths.get(t_path, {}).get(t_method)
        if source is None or target is None:
            continue
        ok = next(code for code in source["responses"] if code.startswith("2"))
        source["responses"][ok].setdefault("links", {})[name] = {
            "operationId": target["operationId"],
            "parameters": params,
        }


def _api_key_header(schema: dict[str, Any]) -> None:
    """X-API-Key beside HTTPBearer: in securitySchemes and in each operation's `security`
    that names the Bearer scheme (an authenticating dependency declares only that one,
    `web.BearerDep`; the key is read from either header)."""
    bearer, header = BEARER.scheme_name, API_KEY_HEADER.scheme_name
    schemes: dict[str, Any] = schema.get("components", {}).get("securitySchemes", {})
    if bearer not in schemes or header in schemes:
        return
    definition = jsonable_encoder(API_KEY_HEADER.model, by_alias=True, exclude_none=True)
    with_header: dict[str, Any] = {}
    for name, scheme in schemes.items():
        with_header[name] = scheme
        if name == bearer:
            with_header[header] = definition
    schema["components"]["securitySchemes"] = with_header
    for operations in schema["paths"].values():
        for operation in operations.values():
            security: list[dict[str, list[str]]] = operation.get("security", [])
            if {bearer: []} in security:
                security.insert(security.index({bearer: []}) + 1, {header: []})


def document_answers(app: FastAPI, page_max_limit: int) -> None:
    """Put authentication, ids, answers and links into the app's OpenAPI schema."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            _api_key_header(schema)
            for name in _request_schemas(schema):
                _text(schema["components"]["schemas"][name])
            for path, operations in schema["paths"].items():
                for method, operation in operations.items():
                    _parameters(path, operation, page_max_limit)
                    for parameter in operation.get("parameters", []):
                        _text(parameter.get("schema"))
                    # FastAPI marks what depends on `web.current_principal` (its schemes).
                    _answers(method, path, operation, "security" in operation)
            _link(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
