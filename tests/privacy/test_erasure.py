"""GDPR erasure and export: the subject's personal data is pseudonymised everywhere it is
stored (payments, attempts, outbox, audit log...), the books still balance with the same
balances, the audit chain still verifies, and an open payment refuses the erasure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.conftest import make_key
from tests.helpers import DEST
from tests.privacy.conftest import (
    OTHER_IBAN,
    PAYEE_EMAIL,
    PAYEE_IBAN,
    PAYEE_NAME,
    books,
    chain_ok,
    everything,
    settled_bank_payout,
)
from tests.rails.conftest import new_payout
from tonrail.chain.address import parse_address, raw_form
from tonrail.cli import app as cli
from tonrail.db import Database
from tonrail.payments.models import Attempt, Payment
from tonrail.security import audit_log
from tonrail.security.audit_log import AuditEntry, AuditHead
from tonrail.settings import Settings, get_settings

OUR_IBAN_SPELLED = "DE89 3704 0044 0532 0130 00"


async def _note(db: Database, subject: str | None, details: dict[str, Any]) -> None:
    async with db.transaction() as session:
        await audit_log.record(session, "admin:alice", "payout.note", subject, details)


async def test_erasure_pseudonymises_the_subject_and_keeps_the_books_and_the_chain(
    db: Database,
    bank_app: Any,
    bank_client: httpx.AsyncClient,
    bank_settings: Settings,
    admin_auth: dict[str, str],
    tmp_path: Path,
) -> None:
    payout = await settled_bank_payout(
        db, bank_app, bank_settings, tmp_path, PAYEE_IBAN, PAYEE_NAME, "B1"
    )
    await _note(db, PAYEE_IBAN, {"iban": PAYEE_IBAN, "name": PAYEE_NAME, "why": "callback"})
    await _note(db, "unrelated", {"iban": OUR_IBAN_SPELLED})
    balances = await books(db)
    entries = await chain_ok(db)
    assert PAYEE_IBAN in await everything(db) and PAYEE_NAME in await everything(db)

    exported = await bank_client.post(
        "/v1/privacy/export", json={"subject": "GB33 BUKB 2020 1555 5555 55"}, headers=admin_auth
    )
    assert exported.status_code == 200, exported.text
    bundle = exported.json()
    assert bundle["subject"] == {"kind": "iban", "value": PAYEE_IBAN}
    assert bundle["payments"] == [payout]
    records = bundle["records"]
    assert [p["id"] for p in records["payments"]] == [payout]
    assert records["payments"][0]["metadata"]["bank_name"] == PAYEE_NAME
    assert {a["payment_id"] for a in records["attempts"]} == {payout}
    assert [e["action"] for e in records["audit_log"]] == ["payout.note"]
    # The ledger entries of its payments come with it: amounts, no people.
    assert records["ledger_lines"] and {e["payment_id"] for e in records["journal_entries"]} == {
        payout
    }

    erased = await bank_client.post(
        "/v1/privacy/erase", json={"subject": PAYEE_IBAN, "kind": "iban"}, headers=admin_auth
    )
    assert erased.status_code == 200, erased.text
    result = erased.json()
    pseudonym = result["pseudonym"]
    assert pseudonym.startswith("erased_")
    # The note and the export's own entry named the IBAN: both redacted through the chain.
    assert result["rows"]["payments"] == 1 and result["rows"]["audit_log"] == 2

    dump = await everything(db)
    assert PAYEE_IBAN not in dump and PAYEE_NAME not in dump
    # The books did not move: same lines, same balances; the chain verifies.
    assert await books(db) == balances
    assert await chain_ok(db) == entries + 2  # the export and the erasure
    async with db.transaction() as session:
        p = await session.get(Payment, payout)
        assert p is not None
        assert (p.status, p.amount, p.asset) == ("succeeded", 20 * 10**9, "TON")
        assert p.metadata_["bank_iban"] == pseudonym and p.metadata_["bank_name"] == pseudonym
        # Not the subject's IBAN: other fields stay (the email is a subject of its own).
        assert p.metadata_["contact"] == PAYEE_EMAIL
        attempt = (
            await session.execute(select(Attempt).where(Attempt.payment_id == payout))
        ).scalar_one()
        assert attempt.details["creditor"]["iban"] == pseudonym
        assert attempt.details["creditor"]["name"] == pseudonym
        assert attempt.fee_amount is not None
        erasure = (
            await session.execute(select(AuditEntry).where(AuditEntry.action == "privacy.erase"))
        ).scalar_one()
        assert erasure.actor.startswith("api_key:") and erasure.subject == pseudonym
        note = (
            (
                await session.execute(
                    select(AuditEntry)
                    .where(AuditEntry.action == "payout.note")
                    .order_by(AuditEntry.seq)
                )
            )
            .scalars()
            .first()
        )
        assert note is not None and note.erased_by == erasure.seq
        assert note.subject == pseudonym and note.details["why"] == "callback"
    # Nothing about the IBAN is left to export.
    again = await bank_client.post(
        "/v1/privacy/export", json={"subject": PAYEE_IBAN}, headers=admin_auth
    )
    assert again.json()["records"] == {} and again.json()["payments"] == []


async def test_an_open_payment_of_the_subject_refuses_the_erasure(
    db: Database,
    bank_app: Any,
    bank_client: httpx.AsyncClient,
    admin_auth: dict[str, str],
) -> None:
    queued = await new_payout(db, bank_app, {"bank_iban": OTHER_IBAN, "bank_name": "Bob"})
    await _note(db, OTHER_IBAN, {})
    async with db.transaction() as session:
        head = await session.get(AuditHead, 1)
        assert head is not None
        before = head.seq
    r = await bank_client.post(
        "/v1/privacy/erase", json={"subject": OTHER_IBAN}, headers=admin_auth
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "subject_has_open_payment"
    assert queued in r.json()["error"]["message"]
    # Nothing half-written: the payment, its data and the audit log are as they were.
    async with db.transaction() as session:
        p = await session.get(Payment, queued)
        assert p is not None and p.metadata_["bank_iban"] == OTHER_IBAN
        head = await session.get(AuditHead, 1)
        assert head is not None and head.seq == before
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == before


async def test_the_privacy_api_needs_the_admin_scope_and_a_subject(
    db: Database, bank_client: httpx.AsyncClient, admin_auth: dict[str, str]
) -> None:
    merchant = {"Authorization": f"Bearer {await make_key(db)}"}
    for path in ("/v1/privacy/export", "/v1/privacy/erase"):
        r = await bank_client.post(path, json={"subject": PAYEE_IBAN}, headers=merchant)
        assert r.status_code == 403 and r.json()["error"]["code"] == "scope_missing"
        r = await bank_client.post(path, json={"subject": "nobody"}, headers=admin_auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == "subject_invalid"
        r = await bank_client.post(
            path, json={"subject": PAYEE_EMAIL, "kind": "iban"}, headers=admin_auth
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "subject_invalid"


async def test_cli_export_and_erase_a_ton_address_in_any_spelling(
    db: Database,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = await client.post(
        "/v1/payouts", json={"amount": "2", "asset": "TON", "destination": DEST}, headers=auth
    )
    assert r.status_code == 201, r.text
    payout = r.json()["id"]
    monkeypatch.setenv("DATABASE_URL", db.url)
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(cli, list(args))

    try:
        # The payout is queued: the address may not be erased yet.
        refused = await asyncio.to_thread(invoke, "privacy", "erase", "--subject", DEST, "--yes")
        assert refused.exit_code == 2 and "subject_has_open_payment" in refused.output
        r = await client.post(f"/v1/payouts/{payout}/cancel", headers=auth)
        assert r.status_code == 200, r.text
        out = tmp_path / "export.json"
        raw = raw_form(parse_address(DEST))  # another spelling of the same address
        exported = await asyncio.to_thread(
            invoke, "privacy", "export", "--subject", raw, "--out", str(out)
        )
        assert exported.exit_code == 0, exported.output
        assert (out.stat().st_mode & 0o777) == 0o600
        assert payout in out.read_text() and DEST in out.read_text()
        erased = await asyncio.to_thread(invoke, "privacy", "erase", "--subject", DEST, "--yes")
        assert erased.exit_code == 0, erased.output
        assert "payments: 1" in erased.output
        verified = await asyncio.to_thread(invoke, "audit", "verify")
        assert verified.exit_code == 0 and "intact" in verified.output, verified.output
    finally:
        get_settings.cache_clear()
    async with db.transaction() as session:
        p = await session.get(Payment, payout)
        assert p is not None and p.counterparty is not None
        assert p.counterparty.startswith("erased_") and p.status == "canceled"
    assert DEST not in await everything(db)
    # The API still shows the payout, with the pseudonym where the payee was.
    r = await client.get(f"/v1/payouts/{payout}", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["destination"].startswith("erased_") and r.json()["amount"] == "2.000000000"
    listed = await client.get("/v1/payouts", headers=auth)
    assert listed.status_code == 200 and listed.json()["data"][0]["id"] == payout


async def test_an_email_is_erased_in_any_case_with_the_name_beside_it(
    db: Database,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    admin_auth: dict[str, str],
) -> None:
    email = "Grace.Hopper@Example.org"
    body = {
        "amount": "2",
        "asset": "TON",
        "destination": DEST,
        "metadata": {"paypal_receiver": email, "name": "Grace Hopper", "order": "A-17"},
    }
    r = await client.post("/v1/payouts", json=body, headers=auth)
    assert r.status_code == 201, r.text
    payout = r.json()["id"]
    r = await client.post("/v1/privacy/erase", json={"subject": email.lower()}, headers=admin_auth)
    assert r.status_code == 409 and r.json()["error"]["code"] == "subject_has_open_payment"
    assert (await client.post(f"/v1/payouts/{payout}/cancel", headers=auth)).status_code == 200
    r = await client.post("/v1/privacy/erase", json={"subject": email.upper()}, headers=admin_auth)
    assert r.status_code == 200, r.text
    pseudonym = r.json()["pseudonym"]
    r = await client.get(f"/v1/payouts/{payout}", headers=auth)
    assert r.json()["metadata"] == {
        "paypal_receiver": pseudonym,
        "name": pseudonym,
        "order": "A-17",
    }
    dump = (await everything(db)).lower()
    assert email.lower() not in dump and "grace hopper" not in dump
    # The payee's address is a subject of its own: still there until it is erased.
    assert r.json()["destination"] == DEST
    await chain_ok(db)
