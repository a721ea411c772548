"""A document rendered once (json_text.py) is what JSONResponse sends and what the database
stores; the engines store a rendered document as it is, anything else as before."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select
from starlette.responses import JSONResponse

from tests.helpers import DEST
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.json_text import RenderedJson, render_json, serialize_json
from tonrail.security.models import IdempotencyRecord

DOC = {"b": [1, 2.5, None, True], "a": 'Grüße \u2603 "q" \\', "n": {"x": -7}}


def test_rendered_as_jsonresponse_and_stored_as_is() -> None:
    text = render_json(DOC)
    assert isinstance(text, RenderedJson)
    assert text.encode() == JSONResponse(DOC).body
    assert serialize_json(text) is text
    assert json.loads(serialize_json(DOC)) == DOC == json.loads(text)
    with pytest.raises(ValueError):
        render_json({"x": float("nan")})


async def test_a_payout_is_rendered_once_for_its_answer_record_and_event(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    body = {"amount": "1.25", "asset": "USDT", "destination": DEST, "metadata": {"n": "Grüße"}}
    headers = {**auth, "Idempotency-Key": "rendered-once"}
    r = await client.post("/v1/payouts", json=body, headers=headers)
    assert r.status_code == 201 and r.headers["content-type"] == "application/json"
    answer = r.json()
    assert r.content == JSONResponse(answer).body  # the bytes JSONResponse would send
    async with db.transaction() as session:
        record = (await session.execute(select(IdempotencyRecord.response_body))).scalar_one()
        payload = (
            await session.execute(
                select(OutboxEvent.payload).where(OutboxEvent.type == "payout.created")
            )
        ).scalar_one()
    assert record == payload == answer  # stored as documents, not as strings
    again = await client.post("/v1/payouts", json=body, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == answer
