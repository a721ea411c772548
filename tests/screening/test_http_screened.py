"""Batch payouts, refunds and deposits screened by the HTTP provider against a real local
screening API (aiohttp on 127.0.0.1), on SQLite and PostgreSQL: the API's `blocked` refuses,
its `review` holds, an API that fails holds for review (never a silent clear), and the
provider's reference is stored with each decision."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import select
from tonutils.contracts import WalletV5R1

from tests.api.test_refunds import deposit, paid_invoice, refund
from tests.dashboard.payments_fixtures import address
from tests.rails.ton.rail_fixture import Rail, payer, rail, settled
from tests.rails.ton.test_deposits import drain, invoice
from tests.screening.test_providers import ScreeningApi
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.localnet.genesis import TON
from tonrail.rails.ton.models import TonDeposit
from tonrail.screening.models import ScreeningDecision
from tonrail.settings import Settings

__all__ = ["payer", "rail"]  # fixtures, used by name
SANCTIONED, SANCTIONED_RAW = address(0x81)
WATCHED, WATCHED_RAW = address(0x82)
BROKEN, _ = address(0x83)
CLEAN, CLEAN_RAW = address(0x84)


class DirectedApi(ScreeningApi):
    """Answers by address, and `review` for every incoming payment (direction in)."""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("direction") == "in":
            self.requests.append((body, request.headers.get("Authorization", "")))
            answer = {"outcome": "review", "reason": "new counterparty", "id": "chk_in"}
            return web.json_response(answer)
        return await super().handle(request)


@pytest.fixture
async def screening_api() -> AsyncIterator[ScreeningApi]:
    api = DirectedApi()
    api.answers = {
        SANCTIONED: (200, json.dumps({"outcome": "blocked", "reason": "SDN", "id": "chk_b"})),
        SANCTIONED_RAW: (200, json.dumps({"outcome": "blocked", "reason": "SDN", "id": "chk_b"})),
        WATCHED: (200, json.dumps({"outcome": "review", "reason": "PEP", "id": "chk_r"})),
        WATCHED_RAW: (200, json.dumps({"outcome": "review", "reason": "PEP", "id": "chk_r"})),
        BROKEN: (503, "down"),
    }
    app = web.Application()
    app.router.add_post("/v1/screenings", api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    api.url = f"http://127.0.0.1:{port}"
    yield api
    await runner.cleanup()


@pytest.fixture
def settings(settings: Settings, screening_api: ScreeningApi) -> Settings:
    return settings.model_copy(
        update={
            "screening_http_url": screening_api.url,
            "screening_http_api_key": SecretStr("sk_scr"),
        }
    )


async def decisions(db: Database) -> list[ScreeningDecision]:
    async with db.transaction() as session:
        found = await session.execute(select(ScreeningDecision).order_by(ScreeningDecision.id))
        return list(found.scalars())


def item(destination: str) -> dict[str, str]:
    return {"amount": "2", "asset": "USDT", "destination": destination}


async def test_batch_and_refund_follow_the_api(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    screening_api: ScreeningApi,
) -> None:
    refused = await client.post(
        "/v1/payouts/batch", json={"payouts": [item(CLEAN), item(SANCTIONED)]}, headers=auth
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "screening_blocked"
    assert refused.json()["error"]["param"] == "payouts.1.destination"
    created = await client.post(
        "/v1/payouts/batch",
        json={"payouts": [item(CLEAN), item(WATCHED), item(BROKEN)]},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    statuses = [(p["status"], p["hold_reason"]) for p in created.json()["data"]]
    assert statuses == [
        ("queued", None),
        ("requires_approval", "screening_review"),
        ("requires_approval", "screening_review"),  # the API failed: a person decides
    ]
    sent = [body for body, _ in screening_api.requests]
    assert {"address": WATCHED, "name": None, "direction": "out", "asset": "USDT"} | {
        "amount": "2"
    } in sent
    assert all(auth_header == "Bearer sk_scr" for _, auth_header in screening_api.requests)
    by_payment = {d.payment_id: d for d in await decisions(db)}
    watched_id = created.json()["data"][1]["id"]
    assert (by_payment[watched_id].provider, by_payment[watched_id].reference) == ("http", "chk_r")
    broken = by_payment[created.json()["data"][2]["id"]]
    assert broken.outcome == "review" and "HTTPStatusError" in broken.reason

    inv = await paid_invoice(client, auth)
    await deposit(db, inv, 5 * TON, sender=SANCTIONED_RAW)
    r = await refund(client, auth, inv)
    assert r.status_code == 403 and r.json()["error"]["code"] == "screening_blocked"
    ok_inv = await paid_invoice(client, auth)
    await deposit(db, ok_inv, 5 * TON, sender=CLEAN_RAW)
    ok = await refund(client, auth, ok_inv, amount="1")
    assert ok.status_code == 201, ok.text
    refund_decision = next(d for d in await decisions(db) if d.payment_id == ok.json()["payout"])
    assert (refund_decision.stage, refund_decision.outcome) == ("refund_request", "clear")
    assert sent[-1]["direction"] == "out"
    assert screening_api.requests[-1][0]["purpose"] == "refund"
    async with db.transaction() as session:
        assert (await check_books(session)).ok


async def test_a_deposit_the_api_holds_is_kept_apart(
    rail: Rail,
    payer: WalletV5R1,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    screening_api: ScreeningApi,
) -> None:
    inv = await invoice(client, auth, "2", "TON")
    await payer.transfer(rail.ctx.wallet.address, 2 * TON, body=inv["reference"], bounce=False)
    await settled(payer, 0)
    await drain(rail, 2)  # the hot wallet's funding from genesis, then the payment
    async with db.transaction() as session:
        found = await session.execute(select(TonDeposit).where(TonDeposit.payment_id == inv["id"]))
        dep = found.scalar_one()
        assert dep.status == "held" and dep.payment_id == inv["id"]
        assert await balance(session, books.SCREENING_HELD, "TON") == -2 * TON
        assert (await check_books(session)).ok
    body, _ = next(r for r in screening_api.requests if r[0]["direction"] == "in")
    assert (body["asset"], body["amount"], body["address"]) == ("TON", "2.000000000", dep.sender)
    (decision,) = await decisions(db)
    assert (decision.stage, decision.deposit_id, decision.reference) == (
        "deposit_credit",
        dep.id,
        "chk_in",
    )
