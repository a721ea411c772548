"""A refund whose payee changes between its screening and its transaction is refused with 409
`screening_stale`, and nothing of it is written.

The race, for real on SQLite and PostgreSQL: an invoice of 20 TON paid by card (localstripe).
A refund request is screened: a card refund goes back through Stripe, so there is no one to
screen. Before its transaction locks the invoice, a TON deposit from a sanctioned address is
credited to the same invoice (committed by its own transaction, as the deposit watcher or an
operator applying a late deposit would). Deposits come first when a refund picks whom it
pays, so the refund would now pay that address on TON, unscreened: the transaction sees the
payee is not the one screened and refuses. Sent again, the request is screened for the new
payee and refused as blocked."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.api.test_refunds import deposit
from tests.dashboard.payments_fixtures import address
from tests.helpers import row_counts
from tests.rails.test_stripe_refunds import paid_by_card
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ledger.service import check_books
from tonrail.payments.models import Payment, Refund
from tonrail.payments.refunds import RefundService
from tonrail.screening.models import ScreeningDecision
from tonrail.settings import Settings

TON = 10**9
SANCTIONED, SANCTIONED_RAW = address(0x81)


@pytest.fixture
def rail_settings(rail_settings: Settings, tmp_path: Path) -> Settings:
    listed = tmp_path / "sanctions.csv"
    listed.write_text(f"kind,value,outcome,reason\naddress,{SANCTIONED_RAW},blocked,OFAC SDN\n")
    return rail_settings.model_copy(update={"screening_list_file": str(listed)})


async def test_a_payee_that_changes_after_screening_is_refused_as_stale(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    localstripe_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inv, _ = await paid_by_card(db, rail_app, rail_client, auth, localstripe_url)
    screened, deposited = asyncio.Event(), asyncio.Event()
    looked_at: list[Any] = []
    original = RefundService.screen

    async def screen_then_let_the_deposit_in(self: RefundService, *args: Any, **kw: Any) -> Any:
        out = await original(self, *args, **kw)
        looked_at.append(out)
        screened.set()
        await deposited.wait()  # the deposit commits between screening and the transaction
        return out

    monkeypatch.setattr(RefundService, "screen", screen_then_let_the_deposit_in)

    async def credit_a_deposit() -> None:
        await screened.wait()
        await deposit(db, inv, 3 * TON, sender=SANCTIONED_RAW)
        deposited.set()

    before = await row_counts(db)
    r, _ = await asyncio.wait_for(
        asyncio.gather(
            rail_client.post(
                f"/v1/invoices/{inv}/refunds",
                json={"amount": "2"},
                headers={**auth, "Idempotency-Key": "race-1"},
            ),
            credit_a_deposit(),
        ),
        timeout=60,
    )
    assert looked_at == [None]  # a card refund: nobody to screen when it was screened
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "screening_stale" and "send the request again" in error["message"]

    # Nothing of the refund: only the deposit's own row and books are new.
    after = await row_counts(db)
    changed = {t: after[t] - before[t] for t in after if after[t] != before[t]}
    assert changed == {"ton_deposits": 1, "journal_entries": 1, "ledger_lines": 2}, changed
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Refund)) == 0
        outs = select(func.count()).select_from(Payment).where(Payment.direction == "out")
        assert await session.scalar(outs) == 0
        kinds = (await session.execute(select(OutboxEvent.type))).scalars().all()
        assert not [k for k in kinds if k.startswith(("refund.", "payout."))], kinds
        refund_decisions = select(func.count()).where(ScreeningDecision.stage == "refund_request")
        assert await session.scalar(refund_decisions) == 0
        assert (await check_books(session)).ok

    # Sent again (same key: the 409 was not recorded as the answer), it is screened for the
    # payee it would pay now, and that payee is sanctioned.
    monkeypatch.setattr(RefundService, "screen", original)
    again = await rail_client.post(
        f"/v1/invoices/{inv}/refunds",
        json={"amount": "2"},
        headers={**auth, "Idempotency-Key": "race-1"},
    )
    assert again.status_code == 403, again.text
    assert again.json()["error"]["code"] == "screening_blocked"
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Refund)) == 0
        [decision] = (
            await session.execute(
                select(ScreeningDecision).where(ScreeningDecision.stage == "refund_request")
            )
        ).scalars()
        assert (decision.stage, decision.outcome, decision.address) == (
            "refund_request",
            "blocked",
            SANCTIONED_RAW,
        )
