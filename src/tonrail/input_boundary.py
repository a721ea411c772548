"""The one input boundary of the HTTP surface: every request passes here before routing,
authentication or any handler, and what it refuses never reaches the database.

- Body size: `REQUEST_BODY_MAX_BYTES`. A larger `Content-Length` is refused before a byte is
  read; a chunked body is counted while it is read and refused as soon as it passes the cap
  (`413 body_too_large`, the connection closed).
- Content type: a non-empty body must be JSON (`application/json`, `application/*+json`,
  UTF-8) on `/v1/`, JSON or an HTML form elsewhere (`415 content_type_unsupported`);
  provider webhooks (`/webhooks/`) are parsed as JSON whatever their header says.
- JSON: strict UTF-8, no NaN/Infinity (`400 body_invalid_json`), no key twice in one object
  (`400 body_duplicate_key`), nested at most `REQUEST_JSON_MAX_DEPTH` deep (`400
  body_too_deep`).
- Text: no U+0000 anywhere (PostgreSQL text cannot hold it) and no unpaired surrogate (not
  encodable). No other control character (U+0001-U+001F, U+007F-U+009F) in a path, a query
  parameter, a form field, a JSON key or value (`400 parameter_invalid`, `param` naming it),
  except TAB, LF and CR in free text (`description`, `reason`, metadata values), where they
  are stored as given. Provider webhooks (`/webhooks/`) carry the provider's own data: there
  only NUL and unpaired surrogates are refused, the rest is stored as JSON escapes.

A plain ASGI middleware: the body it read is handed on unchanged, so handlers (and the
signature checks of provider webhooks) see the very bytes that were sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON_ONLY_PREFIXES = ("/v1/",)
PROVIDER_PREFIX = "/webhooks/"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Where a JSON body that passed is kept, parsed, in the request's scope: what reads the
# document (`parsed_json`) need not parse the body again.
PARSED_JSON = "tonrail.parsed_json"
# Fields whose text may span lines: TAB, LF and CR are kept there.
FREE_TEXT_FIELDS = frozenset({"description", "reason"})
FREE_TEXT_MAPS = frozenset({"metadata"})  # every value of these objects is free text

_NEVER = re.compile("[\x00\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_LINE = re.compile("[\t\n\r]")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the boundary refuses a request: the error the client gets."""

    status: int
    code: str
    message: str
    param: str | None = None

    def body(self) -> bytes:
        error = {"code": self.code, "message": self.message, "param": self.param}
        return json.dumps({"error": error}).encode()


class _Duplicate(dict[str, Any]):
    """An object in which `key` was given more than once (the walk reports where)."""

    key: str


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    built = dict(pairs)
    if len(built) == len(pairs):
        return built
    seen: set[str] = set()
    duplicate = _Duplicate(built)
    for key, _ in pairs:
        if key in seen:
            duplicate.key = key
            break
        seen.add(key)
    return duplicate


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _label(path: tuple[str, ...]) -> str | None:
    return ".".join(path) or None


def _bad_char(text: str, *, free: bool, provider: bool) -> str | None:
    """The first character of `text` the boundary refuses, if any."""
    found = (_NEVER if provider else _CONTROL).search(text)
    if found is None and not free and not provider:
        found = _LINE.search(text)
    return None if found is None else found.group()


def _char_refusal(char: str, where: str, param: str | None) -> Refusal:
    what = "an unpaired surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
    hint = ""
    if char in "\t\n\r":
        hint = "; only free text (description, reason, metadata values) may hold TAB, LF and CR"
    return Refusal(
        400,
        "parameter_invalid",
        f"{where} contains {what} (U+{ord(char):04X}), which is not allowed{hint}",
        param,
    )


def _text_refusal(
    text: str, path: tuple[str, ...], *, free: bool = False, provider: bool = False
) -> Refusal | None:
    """A string value that holds a character the boundary refuses, as `parameter_invalid`."""
    char = _bad_char(text, free=free, provider=provider)
    if char is None:
        return None
    return _char_refusal(char, _label(path) or "the body", _label(path))


def _is_free(path: tuple[str, ...]) -> bool:
    if not path:
        return False
    return path[-1] in FREE_TEXT_FIELDS or (len(path) > 1 and path[-2] in FREE_TEXT_MAPS)


def _children(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, Any, tuple[str, ...]]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item, (*path, key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield "", item, (*path, str(index))


def check_json(parsed: Any, max_depth: int, *, provider: bool) -> Refusal | None:
    """Walk a parsed body: duplicate keys, depth, and the text of every key and string."""
    stack: list[tuple[Any, tuple[str, ...], int]] = [(parsed, (), 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            refusal = _text_refusal(value, path, free=_is_free(path), provider=provider)
            if refusal is not None:
                return refusal
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > max_depth:
            return Refusal(
                400,
                "body_too_deep",
                f"the body nests objects and arrays more than {max_depth} deep",
                _label(path),
            )
        if isinstance(value, _Duplicate):
            return Refusal(
                400,
                "body_duplicate_key",
                f"the key {value.key!r} appears more than once in one object",
                _label((*path, value.key)),
            )
        for key, item, child_path in _children(value, path):
            if isinstance(value, dict):
                char = _bad_char(key, free=False, provider=provider)
                if char is not None:
                    where = f"a key of {_label(path) or 'the body'}"
                    return _char_refusal(char, where, _label(path))
            stack.append((item, child_path, depth + 1))
    return None


def parse_json(body: bytes, max_depth: int, *, provider: bool) -> Refusal | tuple[Any]:
    """Parse and check a JSON body: the document (in a 1-tuple, `null` being one) when it
    may pass, else why not."""
    try:
        parsed = json.loads(
            body.decode("utf-8"), object_pairs_hook=_object, parse_constant=_no_constant
        )
    except RecursionError:
        return Refusal(
            400, "body_too_deep", f"the body nests objects and arrays more than {max_depth} deep"
        )
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN, huge integers
        return Refusal(400, "body_invalid_json", f"the body is not valid JSON: {exc}"[:300])
    return check_json(parsed, max_depth, provider=provider) or (parsed,)


def check_form(body: bytes) -> Refusal | None:
    """An HTML form (`application/x-www-form-urlencoded`): every name and value."""
    try:
        text = body.decode("ascii")
        fields = parse_qsl(text, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return Refusal(400, "parameter_invalid", "the form is not valid URL-encoded UTF-8")
    for name, value in fields:
        char = _bad_char(name, free=False, provider=False)
        if char is not None:
            return _char_refusal(char, "a form field's name", None)
        refusal = _text_refusal(value, (name,), free=name in FREE_TEXT_FIELDS)
        if refusal is not None:
            return refusal
    return None


def check_query(scope: Scope) -> Refusal | None:
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return None
    try:
        fields = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return Refusal(400, "parameter_invalid", "the query string is not valid UTF-8")
    for name, value in fields:
        char = _bad_char(name, free=False, provider=False)
        if char is not None:
            return _char_refusal(char, "a query parameter's name", None)
        refusal = _text_refusal(value, (name,))
        if refusal is not None:
            return refusal
    return None


def path_templates(app: Any) -> list[tuple[re.Pattern[str], str]]:
    """The documented path templates (`/v1/payouts/{payment_id}`) as patterns naming their
    parameters, each with its template, read once from the app's OpenAPI schema."""
    cached: list[tuple[re.Pattern[str], str]] | None = getattr(app.state, "path_templates", None)
    if cached is None:
        cached = []
        for template in app.openapi().get("paths", {}):
            parts = re.split(r"\{(\w+)(?::\w+)?\}", template)
            pattern = "".join(
                f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part)
                for index, part in enumerate(parts)
            )
            cached.append((re.compile(pattern), template))
        app.state.path_templates = cached
    return cached


def check_path(scope: Scope) -> Refusal | None:
    """A control character in the path: named after the path parameter that holds it."""
    path: str = scope.get("path", "")
    found = _CONTROL.search(path) or _LINE.search(path)
    if found is None:
        return None
    param = "path"
    app = scope.get("app")
    if isinstance(app, FastAPI):
        for pattern, _ in path_templates(app):
            match = pattern.fullmatch(path)
            if match is not None:
                named = [k for k, v in match.groupdict().items() if found.group() in v]
                param = named[0] if named else param
                break
    return _char_refusal(found.group(), param, param)


def _media_type(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return str(value.decode("latin-1"))
    return ""


def _is_json(content_type: str) -> bool:
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return False
    charset = re.search(r"charset\s*=\s*\"?([\w-]+)", params, re.IGNORECASE)
    return charset is None or charset.group(1).lower() in ("utf-8", "utf8")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class InputBoundary:
    """The ASGI middleware that applies the rules above to every HTTP request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_json_depth: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = check_path(scope) or check_query(scope)
        if refusal is not None:
            await self._refuse(refusal, send)
            return
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        too_large = Refusal(
            413,
            "body_too_large",
            f"the body is larger than {self.max_body_bytes} bytes (REQUEST_BODY_MAX_BYTES)",
        )
        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            await self._refuse(too_large, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._refuse(too_large, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            refusal = self._check_body(scope, body)
            if refusal is not None:
                await self._refuse(refusal, send)
                return
        await self.app(scope, _replay(body, receive), send)

    def _check_body(self, scope: Scope, body: bytes) -> Refusal | None:
        path: str = scope.get("path", "")
        content_type = _media_type(scope)
        provider = path.startswith(PROVIDER_PREFIX)
        json_type = _is_json(content_type)
        if provider or json_type:
            # A provider's body is JSON by contract, whatever header it comes with.
            parsed = parse_json(body, self.max_json_depth, provider=provider)
            if isinstance(parsed, Refusal):
                return parsed
            if json_type:
                scope[PARSED_JSON] = parsed
            return None
        media = content_type.partition(";")[0].strip().lower()
        if media == "application/x-www-form-urlencoded" and not path.startswith(JSON_ONLY_PREFIXES):
            return check_form(body)
        wanted = (
            "application/json"
            if path.startswith(JSON_ONLY_PREFIXES)
            else "application/json or application/x-www-form-urlencoded"
        )
        return Refusal(
            415,
            "content_type_unsupported",
            f"Content-Type {media or 'missing'!s:.80} is not accepted here: send {wanted} (UTF-8)",
            "Content-Type",
        )

    @staticmethod
    async def _refuse(refusal: Refusal, send: Send) -> None:
        body = refusal.body()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if refusal.status == 413:
            headers.append((b"connection", b"close"))  # the rest of the body is not read
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def parsed_json(scope: Scope) -> tuple[Any] | None:
    """The JSON document of the request's body as this boundary parsed it (in a 1-tuple), or
    None when the body was empty or not sent as JSON. Equal to `json.loads` of the body:
    what parses differently (a key twice, NaN, not UTF-8) was refused here."""
    found: tuple[Any] | None = scope.get(PARSED_JSON)
    return found


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then the client's own events."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "param"],
            "properties": {
                "code": {"type": "string", "description": "machine-readable, docs/API.md"},
                "message": {"type": "string"},
                "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        }
    },
}
_REFUSALS = {
    "400": "bad input: a control character in the path, a query parameter or the body "
    "(parameter_invalid), body_invalid_json, body_duplicate_key, body_too_deep, or a "
    "schema violation",
    "413": "body_too_large: the body is larger than REQUEST_BODY_MAX_BYTES",
    "415": "content_type_unsupported: a body that is not JSON",
}


def document_refusals(app: FastAPI) -> None:
    """Put what the boundary may answer into the OpenAPI schema: 400 on every operation,
    413 and 415 on every one that takes a body, and the error shape on every 4xx answer
    (FastAPI's `HTTPValidationError` is replaced: validation errors come as `Error`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
            error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            for operations in schema.get("paths", {}).values():
                for method, operation in operations.items():
                    if not isinstance(operation, dict) or "responses" not in operation:
                        continue
                    responses = operation["responses"]
                    codes = ["400"] + (["413", "415"] if method.upper() in BODY_METHODS else [])
                    for code in codes:
                        responses.setdefault(code, {"description": _REFUSALS[code]})
                    for code, response in responses.items():
                        # FastAPI's own 422 shape is never sent: errors come as `Error`.
                        if code.startswith("4") and (
                            "content" not in response
                            or "HTTPValidationError" in json.dumps(response["content"])
                        ):
                            response["content"] = error
            for unused in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
