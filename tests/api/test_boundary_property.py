"""Random bodies (hypothesis) posted to every write endpoint of API v1, on both databases:
the answer is 2xx or 4xx, never 5xx; every 4xx has the error shape; a refused request wrote
nothing. The bodies mix well-formed requests with control characters, unpaired surrogates,
odd nesting, duplicate keys and raw bytes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_key
from tests.helpers import DEST, DEST_RAW, row_counts
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.settings import Settings

NASTY = ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\ud800", "\udfff", "\n", "\t", "\u2028", "é"]
text = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.sampled_from(NASTY), max_size=4),
    st.builds(lambda a, b, c: a + b + c, st.text(max_size=4), st.sampled_from(NASTY), st.text()),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3)
)


def around(valid: list[Any]) -> st.SearchStrategy[Any]:
    """A valid value most of the time, a nasty one otherwise."""
    return st.one_of(st.sampled_from(valid), text, json_values)


payout = st.fixed_dictionaries(
    {
        "amount": around(["1.5", "0.001", "12.50"]),
        "asset": around(["TON", "USDT"]),
        "destination": around([DEST, DEST_RAW, "+" + DEST_RAW, DEST_RAW[:-2]]),
    },
    optional={
        "priority": around(["urgent", "normal", "low"]),
        "description": text,
        "metadata": st.dictionaries(text, text, max_size=3) | json_values,
        "idempotency_key": text,
    },
)
invoice = st.fixed_dictionaries(
    {"amount": around(["2", "0.5"]), "asset": around(["USDT", "TON", "USD"])},
    optional={"description": text, "metadata": st.dictionaries(text, text, max_size=3)},
)
ENDPOINTS = [
    ("POST", "/v1/payouts", payout),
    ("POST", "/v1/payouts/batch", st.fixed_dictionaries({"payouts": st.lists(payout, max_size=3)})),
    ("POST", "/v1/invoices", invoice),
    ("POST", "/v1/invoices/{invoice}/checkout", st.fixed_dictionaries({"rail": around(["bank"])})),
    ("POST", "/v1/payouts/{payout}/cancel", json_values),
    ("POST", "/v1/payouts/{payout}/approve", json_values),
    (
        "POST",
        "/v1/webhook_endpoints",
        st.fixed_dictionaries(
            {"url": around(["https://example.com/hook"]), "enabled_events": around([["*"]])},
            optional={"description": text},
        ),
    ),
]


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes, str]:
    method, path, shape = draw(st.sampled_from(ENDPOINTS))
    body: Any = draw(st.one_of(shape, json_values))
    raw = draw(
        st.one_of(
            st.just(json.dumps(body).encode()),  # \u escapes: NUL and surrogates arrive as sent
            st.just(json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")),
            st.binary(max_size=64),
            st.just(json.dumps(body).encode()[:-1]),  # cut short
        )
    )
    content_type = draw(st.sampled_from(["application/json"] * 4 + ["text/plain", ""]))
    return method, path, raw, content_type


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
def test_random_bodies_get_2xx_or_4xx_and_refusals_write_nothing(
    database_url: str, tmp_path: Path, request: tuple[str, str, bytes, str]
) -> None:
    method, path, raw, content_type = request

    async def run() -> None:
        db = Database(database_url)
        config = Settings(
            _env_file=None,  # type: ignore[call-arg]
            environment="test",
            database_url=database_url,
            data_dir=tmp_path,
        )
        transport = httpx.ASGITransport(app=create_app(config, db))
        try:
            key = await make_key(db, "acct_prop", "payments:read", "payments:write")
            auth = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                created = await client.post(
                    "/v1/payouts",
                    json={"amount": "1", "asset": "TON", "destination": DEST},
                    headers=auth,
                )
                inv = await client.post(
                    "/v1/invoices", json={"amount": "1", "asset": "USDT"}, headers=auth
                )
                url = path.format(payout=created.json()["id"], invoice=inv.json()["id"])
                before = await row_counts(db)
                headers = {**auth, **({"Content-Type": content_type} if content_type else {})}
                r = await client.request(method, url, content=raw, headers=headers)
                assert r.status_code < 500, (url, raw, r.status_code, r.text)
                if r.status_code >= 400:
                    error = r.json()["error"]
                    assert set(error) >= {"code", "message", "param"}, r.text
                    assert isinstance(error["code"], str) and error["code"], r.text
                    assert await row_counts(db) == before, (url, raw, r.text)
        finally:
            await db.dispose()

    asyncio.run(run())
