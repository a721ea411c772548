"""Deposits screened when they are credited, on the local TON network (SQLite and
PostgreSQL) with the sanctions list file: a sender held for review is kept apart
(liability:screening_held) until an approver releases it on the Approvals page (or freezes it
with the CLI), once; a blocked sender's deposit is frozen, its invoice fails and the alert's
counter rises; a clear one is credited as before. Every decision is stored with its deposit
and the books balance throughout."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from tonutils.contracts import WalletV5R1

from tests.dashboard.conftest import admins, signed_in
from tests.rails.ton.rail_fixture import Rail, payer, rail, settled
from tests.rails.ton.test_deposits import drain, invoice
from tonrail.chain.address import counterparty_key
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.localnet.genesis import TON
from tonrail.monitoring.models import MonitoringSignal
from tonrail.rails.ton.models import TonDeposit
from tonrail.screening.models import ScreeningDecision
from tonrail.security.audit_log import AuditEntry
from tonrail.settings import Settings

__all__ = ["admins", "payer", "rail", "signed_in"]  # fixtures, used by name


@pytest.fixture
def sanctions(tmp_path: Path) -> Path:
    path = tmp_path / "sanctions.csv"
    path.write_text("kind,value,outcome,reason\n")
    return path


@pytest.fixture
def settings(settings: Settings, sanctions: Path) -> Settings:
    return settings.model_copy(update={"screening_list_file": str(sanctions)})


def list_payer(
    path: Path, wallet: WalletV5R1 | None, outcome: str, reason: str, stamp: int
) -> None:
    """Rewrite the list (its mtime moved on, so the provider reads it again); None: empty."""
    body = "kind,value,outcome,reason\n"
    if wallet is not None:
        raw = counterparty_key(wallet.address.to_str())
        body += f"address,{raw},{outcome},{reason}\n"
    path.write_text(body)
    os.utime(path, (stamp, stamp))


async def pay(rail: Rail, payer: WalletV5R1, reference: str, amount: int, seqno: int) -> None:
    await payer.transfer(rail.ctx.wallet.address, amount, body=reference, bounce=False)
    await settled(payer, seqno)


async def deposit_of(db: Database, invoice_id: str) -> TonDeposit:
    async with db.transaction() as session:
        found = await session.execute(select(TonDeposit).where(TonDeposit.payment_id == invoice_id))
        return found.scalar_one()


async def test_held_released_once_blocked_frozen_clear_credited(
    rail: Rail,
    payer: WalletV5R1,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    sanctions: Path,
    signed_in: Callable[[str], Awaitable[str]],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held_inv = await invoice(client, auth, "2", "TON")
    # 1. A sender under review: the deposit is held, the invoice waits in processing.
    list_payer(sanctions, payer, "review", "exchange under investigation", 1_000)
    await pay(rail, payer, held_inv["reference"], 2 * TON, 0)
    await drain(rail, 2)  # the funding of the hot wallet, then this
    held = await deposit_of(db, held_inv["id"])
    assert held.status == "held" and "under investigation" in (held.resolution or "")
    got = (await client.get(f"/v1/invoices/{held_inv['id']}", headers=auth)).json()
    assert (got["status"], got["hold_reason"]) == ("processing", "screening_review")
    assert got["amount_received_minor"] == 0  # nothing credited yet
    async with db.transaction() as session:
        assert await balance(session, books.SCREENING_HELD, "TON") == -2 * TON
        assert (await check_books(session)).ok
    # The Approvals page shows it; an approver releases it, once.
    csrf = await signed_in("approver")
    page = await client.get("/dashboard/approvals")
    assert f'data-deposit="{held.id}"' in page.text
    released = await client.post(
        f"/dashboard/approvals/deposits/{held.id}/release", data={"csrf_token": csrf}
    )
    assert released.status_code == 200 and "Released" in released.text
    again = await client.post(
        f"/dashboard/approvals/deposits/{held.id}/release", data={"csrf_token": csrf}
    )
    assert again.status_code == 409 and "deposit_not_held" in again.text
    got = (await client.get(f"/v1/invoices/{held_inv['id']}", headers=auth)).json()
    assert (got["status"], got["hold_reason"]) == ("succeeded", None)
    assert got["amount_received_minor"] == 2 * TON
    async with db.transaction() as session:
        assert await balance(session, books.SCREENING_HELD, "TON") == 0
        assert (await check_books(session)).ok
        audit = (
            await session.execute(select(AuditEntry).where(AuditEntry.subject == held.id))
        ).scalar_one()
        assert audit.action == "deposit.release" and audit.actor == "admin:approver"

    # 2. A blocked sender: frozen, the invoice fails, the alert's counter rises.
    blocked_inv = await invoice(client, auth, "3", "TON")
    list_payer(sanctions, payer, "blocked", "OFAC SDN", 2_000)
    await pay(rail, payer, blocked_inv["reference"], 3 * TON, 1)
    await drain(rail, 3)
    frozen = await deposit_of(db, blocked_inv["id"])
    assert frozen.status == "frozen" and "OFAC SDN" in (frozen.resolution or "")
    got = (await client.get(f"/v1/invoices/{blocked_inv['id']}", headers=auth)).json()
    assert (got["status"], got["failure_code"]) == ("failed", "screening_blocked")
    async with db.transaction() as session:
        assert await balance(session, books.SCREENING_FROZEN, "TON") == -3 * TON
        counter = await session.scalar(
            select(MonitoringSignal.value).where(MonitoringSignal.name == "screening_blocked")
        )
        assert counter == 1
        assert (await check_books(session)).ok

    # 3. Held again, then frozen by an approver with the CLI.
    review_inv = await invoice(client, auth, "1", "TON")
    list_payer(sanctions, payer, "review", "PEP", 3_000)
    await pay(rail, payer, review_inv["reference"], 1 * TON, 2)
    await drain(rail, 4)
    second = await deposit_of(db, review_inv["id"])
    assert second.status == "held"
    from typer.testing import CliRunner

    from tonrail.cli import app
    from tonrail.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    runner = CliRunner()
    cli = await asyncio.to_thread(
        runner.invoke, app, ["deposits", "freeze", second.id, "--note", "confirmed PEP"]
    )
    assert cli.exit_code == 0 and "frozen" in cli.output, cli.output
    twice = await asyncio.to_thread(runner.invoke, app, ["deposits", "freeze", second.id])
    assert twice.exit_code == 2 and "not held" in twice.output
    get_settings.cache_clear()
    got = (await client.get(f"/v1/invoices/{review_inv['id']}", headers=auth)).json()
    assert (got["status"], got["failure_code"]) == ("failed", "screening_blocked")

    # 4. Cleared: credited as before.
    clear_inv = await invoice(client, auth, "1", "TON")
    list_payer(sanctions, None, "", "", 4_000)
    await pay(rail, payer, clear_inv["reference"], 1 * TON, 3)
    await drain(rail, 5)
    assert (await deposit_of(db, clear_inv["id"])).status == "credited"

    async with db.transaction() as session:
        assert await balance(session, books.SCREENING_FROZEN, "TON") == -4 * TON
        assert await balance(session, books.SCREENING_HELD, "TON") == 0
        assert (await check_books(session)).ok
        rows = (
            await session.execute(select(ScreeningDecision).order_by(ScreeningDecision.decided_at))
        ).scalars()
        decided = [(d.stage, d.provider, d.outcome, d.payment_id) for d in rows]
    assert decided == [
        ("deposit_credit", "list", "review", held_inv["id"]),
        ("deposit_credit", "approver", "clear", held_inv["id"]),
        ("deposit_credit", "list", "blocked", blocked_inv["id"]),
        ("deposit_credit", "list", "review", review_inv["id"]),
        ("deposit_credit", "approver", "blocked", review_inv["id"]),
        ("deposit_credit", "list", "clear", clear_inv["id"]),
    ]
