"""The payout endpoints' short way (direct_routes.py) answers exactly as FastAPI's handler.

Each request below is sent twice to the same app: once with the short way switched off
(every request takes FastAPI's handler, as before the short way existed) and once as
served. Their answers must be equal, refusals word for word; a request with an
Idempotency-Key made one way replays the other way, so the fingerprint of the body the
boundary parsed equals the fingerprint of the bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import fastapi.routing
import httpx
import pytest

from tests.conftest import make_key
from tests.helpers import DEST
from tonrail import direct_routes
from tonrail.db import Database

PAYOUT = {"amount": "2.5", "asset": "USDT", "destination": DEST}
# What differs between two payouts made alike: they are two payouts, made at two times.
VOLATILE = {"id", "attempts"}


@pytest.fixture
def short_way(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`short_way(False)` sends every request to FastAPI's handler; `short_way(True)` undoes it."""
    real = direct_routes.parsed_json

    def switch(on: bool) -> None:
        monkeypatch.setattr(direct_routes, "parsed_json", real if on else lambda scope: None)

    yield switch


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests whose parameters FastAPI's dependency solving built."""
    calls: list[str] = []
    real = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["request"].url.path)
        return await real(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return calls


def _answer(r: httpx.Response) -> tuple[int, Any, str | None]:
    body = r.json()
    if r.status_code < 300:
        body = _stable(body)
    return r.status_code, body, r.headers.get("Idempotent-Replayed")


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _stable(v) for k, v in value.items() if k not in VOLATILE and not k.endswith("_at")
        }
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _cases(good: str, reader: str) -> list[tuple[str, dict[str, str], bytes]]:
    """(path, headers, body): valid requests and every kind of refusal a body or its
    headers can earn before or after authentication."""
    ok = {"Authorization": f"Bearer {good}", "Content-Type": "application/json"}
    read_only = {**ok, "Authorization": f"Bearer {reader}"}
    bad_key = {**ok, "Authorization": "Bearer tr_nonsense"}
    no_key = {"Content-Type": "application/json"}
    payout = json.dumps(PAYOUT).encode()
    batch = json.dumps(
        {"payouts": [dict(PAYOUT, idempotency_key=f"item-{n}") for n in range(3)]}
    ).encode()
    return [
        ("/v1/payouts", ok, payout),
        (
            "/v1/payouts",
            ok,
            b' {"destination": "%s",\n "asset":"TON", "amount": "0.5"} ' % DEST.encode(),
        ),
        (
            "/v1/payouts",
            ok,
            json.dumps(dict(PAYOUT, priority="urgent", metadata={"o": "1"})).encode(),
        ),
        ("/v1/payouts", ok, json.dumps(dict(PAYOUT, extra=1)).encode()),
        ("/v1/payouts", ok, json.dumps(dict(PAYOUT, asset="BTC")).encode()),
        ("/v1/payouts", ok, json.dumps({"amount": "1", "asset": "USDT"}).encode()),
        ("/v1/payouts", ok, json.dumps(dict(PAYOUT, amount="-1")).encode()),
        ("/v1/payouts", ok, json.dumps(dict(PAYOUT, amount=[1])).encode()),
        ("/v1/payouts", ok, json.dumps(dict(PAYOUT, destination="EQnot-an-address")).encode()),
        ("/v1/payouts", ok, json.dumps(dict(PAYOUT, target_confirmation_seconds=0)).encode()),
        ("/v1/payouts", ok, b"[]"),
        ("/v1/payouts", ok, b"null"),
        ("/v1/payouts", ok, b""),
        ("/v1/payouts", no_key, payout),
        ("/v1/payouts", no_key, b"{}"),
        ("/v1/payouts", bad_key, payout),
        ("/v1/payouts", read_only, payout),
        ("/v1/payouts", read_only, b"{}"),
        ("/v1/payouts", {**ok, "Idempotency-Key": "k" * 300}, payout),
        ("/v1/payouts", {**ok, "Idempotency-Key": ""}, payout),
        ("/v1/payouts/batch", ok, batch),
        ("/v1/payouts/batch", ok, json.dumps({"payouts": [dict(PAYOUT, asset="BTC")]}).encode()),
        ("/v1/payouts/batch", ok, json.dumps({"payouts": []}).encode()),
        ("/v1/payouts/batch", no_key, batch),
    ]


async def test_short_way_answers_as_fastapi(
    client: httpx.AsyncClient, db: Database, short_way: Any, solved: list[str]
) -> None:
    good = await make_key(db)
    reader = await make_key(db, "acct_test", "payments:read")
    answers: dict[bool, list[tuple[int, Any, str | None]]] = {}
    for on in (False, True):
        short_way(on)
        answers[on] = []
        for n, (path, headers, body) in enumerate(_cases(good, reader)):
            sent = dict(headers)
            if sent.get("Idempotency-Key") is None and path.endswith("/payouts"):
                sent["Idempotency-Key"] = f"{on}-{n}"  # two distinct payouts, not a replay
            if path.endswith("/batch"):
                body = body.replace(b"item-", f"item-{on}-".encode())
            r = await client.post(path, content=body, headers=sent)
            assert r.status_code < 500, r.text
            answers[on].append(_answer(r))
    for n, (standard, short) in enumerate(zip(answers[False], answers[True], strict=True)):
        assert short == standard, f"case {n}: {_cases(good, reader)[n][2]!r}"
    assert sum(1 for status, _, _ in answers[True] if status == 201) == 4  # valid ones passed
    # A valid body skips FastAPI's parameter solving; an invalid one takes it.
    solved.clear()
    r = await client.post("/v1/payouts", json=PAYOUT, headers={"Authorization": f"Bearer {good}"})
    assert r.status_code == 201 and solved == []
    r = await client.post(
        "/v1/payouts", json=dict(PAYOUT, extra=1), headers={"Authorization": f"Bearer {good}"}
    )
    assert r.json()["error"]["code"] == "parameter_unknown" and solved == ["/v1/payouts"]


@pytest.mark.parametrize("first_short", [False, True])
async def test_a_key_replays_across_ways(
    client: httpx.AsyncClient, auth: dict[str, str], short_way: Any, first_short: bool
) -> None:
    headers = {**auth, "Idempotency-Key": "across", "Content-Type": "application/json"}
    short_way(first_short)
    first = await client.post("/v1/payouts", content=json.dumps(PAYOUT).encode(), headers=headers)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    short_way(not first_short)
    # The same request, its keys in another order and spaced otherwise: a replay.
    again = json.dumps(dict(reversed(PAYOUT.items())), indent=2).encode()
    second = await client.post("/v1/payouts", content=again, headers=headers)
    assert second.status_code == 201, second.text
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    other = json.dumps(dict(PAYOUT, amount="2.6")).encode()
    conflict = await client.post("/v1/payouts", content=other, headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
