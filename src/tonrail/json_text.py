"""JSON documents rendered to text once, for the database and the HTTP answer alike.

A new payout's answer is stored twice (its idempotency record, its `payout.created` event)
and sent once; rendering it three times was a tenth of a payout's JSON work (issue #18).
`render_json` renders it as the HTTP answer does (Starlette's `JSONResponse`: UTF-8, compact)
and the database engine stores a `RenderedJson` as it is (`serialize_json`, the engines'
`json_serializer`), so the three are one rendering.
"""

from __future__ import annotations

import json
from typing import Any


class RenderedJson(str):
    """A JSON document already rendered to text: stored and sent as it is."""

    __slots__ = ()


def render_json(document: Any) -> RenderedJson:
    """`document` as `JSONResponse` renders it (ValueError for NaN or Infinity)."""
    return RenderedJson(
        json.dumps(
            document, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        )
    )


def serialize_json(value: Any) -> str:
    """The engines' `json_serializer`: a `RenderedJson` as it is, anything else rendered."""
    if isinstance(value, RenderedJson):
        return value
    return json.dumps(value)
