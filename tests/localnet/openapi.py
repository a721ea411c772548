"""A small validator for the JSON Schema subset toncenter's OpenAPI files use.

It checks what a client relies on: types, required fields, no undeclared fields where the spec
forbids them, enums and constants, array sizes, and oneOf/anyOf/allOf branches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

SPECS = Path(__file__).resolve().parent / "specs"

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def load(name: str) -> dict[str, Any]:
    path = SPECS / name
    if path.suffix == ".json":
        return dict(json.loads(path.read_text()))
    return dict(yaml.safe_load(path.read_text()))


def response_schema(spec: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    op = spec["paths"][path][method]
    return dict(op["responses"]["200"]["content"]["application/json"]["schema"])


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _type_ok(kind: str, value: Any) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[kind])


def errors(spec: dict[str, Any], schema: dict[str, Any], value: Any, at: str = "$") -> list[str]:
    schema = _resolve(spec, schema)
    if value is None and schema.get("nullable"):
        return []
    found: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_type_ok(k, value) for k in kinds):
            return [f"{at}: {type(value).__name__} is not {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{at}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        found.append(f"{at}: {value!r} != {schema['const']!r}")
    for sub in schema.get("allOf", []):
        found += errors(spec, {**sub, "additionalProperties": True}, value, at)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            branches = [errors(spec, sub, value, at) for sub in schema[key]]
            if not any(not b for b in branches):
                found.append(f"{at}: matches no {key} branch: {min(branches, key=len)}")
    if isinstance(value, dict):
        props: dict[str, Any] = dict(schema.get("properties", {}))
        for sub in schema.get("allOf", []):
            props.update(_resolve(spec, sub).get("properties", {}))
        for name in schema.get("required", []):
            if name not in value:
                found.append(f"{at}: missing required {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                found += errors(spec, props[name], item, f"{at}.{name}")
            elif extra is False and props and "allOf" not in schema:
                found.append(f"{at}: undeclared field {name!r}")
            elif isinstance(extra, dict):
                found += errors(spec, extra, item, f"{at}.{name}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            found.append(f"{at}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            found.append(f"{at}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                found += errors(spec, schema["items"], item, f"{at}[{i}]")
    return found
