"""Batch payouts and refunds screened like single payouts, over HTTP on SQLite and
PostgreSQL with the sanctions list file: a `blocked` item refuses the whole batch (all or
nothing, as any bad item does) with only the decisions written; a `review` item is created
held for approvers beside the others; a refund to a listed payer is refused or held the same
way; every decision is stored, and a resent request replays without a new screening."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.api.test_refunds import deposit, paid_invoice, refund
from tests.dashboard.payments_fixtures import address
from tests.helpers import row_counts
from tonrail.db import Database
from tonrail.ledger.service import check_books
from tonrail.monitoring.models import MonitoringSignal
from tonrail.payments.models import Payment, Refund
from tonrail.screening.models import ScreeningDecision
from tonrail.settings import Settings

TON = 10**9
SANCTIONED, SANCTIONED_RAW = address(0x71)
WATCHED, WATCHED_RAW = address(0x72)
CLEAN, CLEAN_RAW = address(0x73)


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    listed = tmp_path / "sanctions.csv"
    listed.write_text(
        f"kind,value,outcome,reason\naddress,{SANCTIONED_RAW},blocked,OFAC SDN\n"
        f"address,{WATCHED},review,under investigation\n"
    )
    return settings.model_copy(update={"screening_list_file": str(listed)})


async def decisions(db: Database) -> list[ScreeningDecision]:
    async with db.transaction() as session:
        found = await session.execute(select(ScreeningDecision).order_by(ScreeningDecision.id))
        return list(found.scalars())


def item(destination: str, amount: str = "2", **more: str) -> dict[str, str]:
    return {"amount": amount, "asset": "USDT", "destination": destination, **more}


async def test_a_blocked_item_refuses_the_whole_batch_and_names_it(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    body = {"payouts": [item(CLEAN), item(SANCTIONED), item(WATCHED), item(SANCTIONED_RAW)]}
    r = await client.post("/v1/payouts/batch", json=body, headers=auth)
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "screening_blocked" and error["param"] == "payouts.1.destination"
    assert [(i["index"], i["code"]) for i in error["items"]] == [
        (1, "screening_blocked"),
        (3, "screening_blocked"),
    ]
    assert "OFAC SDN" in error["message"]
    counts = await row_counts(db)
    assert counts["payments"] == 0 and counts["journal_entries"] == 0
    assert counts["outbox_events"] == 0 and counts["idempotency_records"] == 0
    stored = await decisions(db)
    assert [(d.outcome, d.payment_id, d.stage) for d in stored] == [
        ("blocked", None, "payout_request"),
        ("blocked", None, "payout_request"),
    ]
    async with db.transaction() as session:
        counter = await session.scalar(
            select(MonitoringSignal.value).where(MonitoringSignal.name == "screening_blocked")
        )
    assert counter == 2


async def test_a_review_item_is_held_beside_the_others_and_each_decision_stored(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    body = {"payouts": [item(CLEAN, idempotency_key="a"), item(WATCHED, idempotency_key="b")]}
    r = await client.post("/v1/payouts/batch", json=body, headers={**auth, "Idempotency-Key": "B"})
    assert r.status_code == 201, r.text
    clean, watched = r.json()["data"]
    assert (clean["status"], clean["hold_reason"]) == ("queued", None)
    assert (watched["status"], watched["hold_reason"]) == ("requires_approval", "screening_review")
    stored = {d.payment_id: d for d in await decisions(db)}
    assert stored[clean["id"]].outcome == "clear"
    assert (stored[watched["id"]].outcome, stored[watched["id"]].reason) == (
        "review",
        "under investigation",
    )
    # The same batch again replays, with no new screening; a new batch reusing the item
    # keys answers them from their records and screens only the new item.
    again = await client.post(
        "/v1/payouts/batch", json=body, headers={**auth, "Idempotency-Key": "B"}
    )
    assert again.status_code == 201 and again.json() == r.json()
    body["payouts"].append(item(CLEAN, "3"))
    more = await client.post("/v1/payouts/batch", json=body, headers=auth)
    assert more.status_code == 201 and more.json()["replayed"] == [0, 1]
    assert len(await decisions(db)) == 3
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Payment)) == 3
        assert (await check_books(session)).ok


async def test_a_refund_to_a_sanctioned_payer_is_refused_and_a_watched_one_held(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    blocked_inv = await paid_invoice(client, auth)
    await deposit(db, blocked_inv, 5 * TON, sender=SANCTIONED_RAW)
    r = await refund(client, auth, blocked_inv, key="r-1")
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "screening_blocked" and "OFAC SDN" in r.text
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Refund)) == 0
        assert await session.scalar(select(func.count()).select_from(Payment)) == 1  # invoice
    (refused,) = await decisions(db)
    assert (refused.stage, refused.outcome, refused.address) == (
        "refund_request",
        "blocked",
        SANCTIONED_RAW,
    )

    watched_inv = await paid_invoice(client, auth)
    await deposit(db, watched_inv, 5 * TON, sender=WATCHED_RAW)
    held = await refund(client, auth, watched_inv, amount="2", key="r-2")
    assert held.status_code == 201, held.text
    payout = (await client.get(f"/v1/payouts/{held.json()['payout']}", headers=auth)).json()
    assert (payout["status"], payout["hold_reason"]) == ("requires_approval", "screening_review")
    assert held.json()["status"] == "pending"
    replay = await refund(client, auth, watched_inv, amount="2", key="r-2")
    assert replay.status_code == 201 and replay.json() == held.json()

    clean_inv = await paid_invoice(client, auth)
    await deposit(db, clean_inv, 5 * TON, sender=CLEAN_RAW)
    ok = await refund(client, auth, clean_inv)
    assert ok.status_code == 201, ok.text
    queued = (await client.get(f"/v1/payouts/{ok.json()['payout']}", headers=auth)).json()
    assert queued["status"] == "queued"
    by_payout = {d.payment_id: d for d in await decisions(db)}
    assert by_payout[held.json()["payout"]].outcome == "review"
    assert by_payout[ok.json()["payout"]].outcome == "clear"
    assert by_payout[ok.json()["payout"]].stage == "refund_request"
    assert len(by_payout) == 3
    async with db.transaction() as session:
        assert (await check_books(session)).ok
