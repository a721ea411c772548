"""Payouts screened before they are queued, over HTTP on SQLite and PostgreSQL: `blocked` is
403 screening_blocked with nothing written but the decision and the alert's counter,
`review` waits for approvers (and shows so on the Approvals page), `clear` is queued;
every decision is stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.dashboard.conftest import admins, signed_in
from tests.dashboard.payments_fixtures import address
from tonrail import clock
from tonrail.db import Database
from tonrail.monitoring.models import MonitoringSignal
from tonrail.monitoring.rules import Thresholds, screening_blocked
from tonrail.monitoring.snapshot import SignalValue, Snapshot
from tonrail.payments.models import Payment
from tonrail.screening.models import ScreeningDecision
from tonrail.settings import Settings

__all__ = ["admins", "signed_in"]  # fixtures, used by name
SANCTIONED, SANCTIONED_RAW = address(0x61)
WATCHED, _ = address(0x62)
CLEAN, _ = address(0x63)


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    listed = tmp_path / "sanctions.csv"
    listed.write_text(
        f"kind,value,outcome,reason\naddress,{SANCTIONED_RAW},blocked,OFAC SDN\n"
        f"address,{WATCHED},review,under investigation\n"
    )
    return settings.model_copy(update={"screening_list_file": str(listed)})


async def _decisions(db: Database) -> list[ScreeningDecision]:
    async with db.transaction() as session:
        found = await session.execute(select(ScreeningDecision).order_by(ScreeningDecision.id))
        return list(found.scalars())


async def test_a_sanctioned_destination_is_refused_and_only_the_decision_is_written(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    body = {"amount": "2", "asset": "USDT", "destination": SANCTIONED}
    r = await client.post("/v1/payouts", json=body, headers={**auth, "Idempotency-Key": "k-1"})
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "screening_blocked"
    assert r.json()["error"]["param"] == "destination" and "OFAC SDN" in r.text
    async with db.transaction() as session:
        assert (await session.execute(select(Payment))).first() is None
        signal = (
            await session.execute(
                select(MonitoringSignal).where(MonitoringSignal.name == "screening_blocked")
            )
        ).scalar_one()
    (decision,) = await _decisions(db)
    assert (decision.outcome, decision.payment_id, decision.provider) == ("blocked", None, "list")
    assert decision.address == SANCTIONED and decision.stage == "payout_request"
    assert decision.requested_by and decision.requested_by.startswith("key:")
    # The alert rule opens on the refusal within the window, and not after it.
    sig = SignalValue("screening_blocked", {}, "counter", signal.value, signal.updated_at)
    now = Snapshot(at=clock.now(), window_seconds=300, signals=[sig])
    (finding,) = screening_blocked(now, Thresholds())
    assert finding.rule == "screening_blocked" and finding.details == {"refusals_total": 1}
    later = Snapshot(at=signal.updated_at.replace(year=2099), window_seconds=300, signals=[sig])
    assert screening_blocked(later, Thresholds()) == []
    # The same request again is screened again (nothing was recorded for its key).
    again = await client.post("/v1/payouts", json=body, headers={**auth, "Idempotency-Key": "k-1"})
    assert again.status_code == 403 and len(await _decisions(db)) == 2


async def test_review_waits_for_approvers_and_clear_is_queued(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    signed_in: Callable[[str], Awaitable[str]],
) -> None:
    watched = await client.post(
        "/v1/payouts", json={"amount": "2", "asset": "USDT", "destination": WATCHED}, headers=auth
    )
    assert watched.status_code == 201, watched.text
    assert watched.json()["status"] == "requires_approval"  # 2 USDT: far below the threshold
    clean = await client.post(
        "/v1/payouts", json={"amount": "2", "asset": "USDT", "destination": CLEAN}, headers=auth
    )
    assert clean.status_code == 201 and clean.json()["status"] == "queued"
    async with db.transaction() as session:
        held = await session.get(Payment, watched.json()["id"])
        assert held is not None and held.hold_reason == "screening_review"
    decisions = {d.payment_id: d for d in await _decisions(db)}
    assert decisions[watched.json()["id"]].outcome == "review"
    assert decisions[watched.json()["id"]].reason == "under investigation"
    assert decisions[clean.json()["id"]].outcome == "clear"

    await signed_in("approver")
    page = await client.get("/dashboard/approvals")
    assert f'data-payment="{watched.json()["id"]}"' in page.text
    assert 'data-hold="screening_review"' in page.text
    assert f'data-payment="{clean.json()["id"]}"' not in page.text
