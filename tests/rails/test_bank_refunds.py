"""Refunds of invoices paid by bank transfer: a credit transfer line in the next pain.001
file (processing/bank_files.py), settled by the bank statement's debit line."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import xmlschema

from tests.helpers import row_counts
from tests.rails.camt import Entry, statement
from tests.rails.conftest import OUR_IBAN, PAYEE_IBAN, books_ok
from tests.rails.test_bank import PAIN_XSD, bank_invoice
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.payments.service import PaymentService
from tonrail.processing.backup_loop import BackupContext, backup_round
from tonrail.processing.bank_files import BankFiles
from tonrail.rails.registry import routing_policy
from tonrail.settings import Settings


async def test_bank_refund_is_a_credit_transfer_in_the_next_file(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    rail_settings: Settings,
    auth: dict[str, str],
    tmp_path: Path,
) -> None:
    inv = await bank_invoice(rail_client, auth, "300.00")
    files = BankFiles(db, rail_settings, PaymentService(db, rail_settings))
    paid = statement(OUR_IBAN, [Entry("C1", 30_000, "USD", "CRDT", inv["provider_ref"])])
    assert [ln.outcome for ln in (await files.import_statement(paid)).lines] == ["paid"]

    before = await row_counts(db)
    for body, code in (
        ({}, "bank_account_invalid"),
        ({"bank_iban": "GB00BUKB20201555555555", "bank_name": "Ada"}, "bank_account_invalid"),
        ({"bank_iban": PAYEE_IBAN}, "bank_account_invalid"),
        ({"amount": "300.01", "bank_iban": PAYEE_IBAN, "bank_name": "Ada"}, None),
    ):
        r = await rail_client.post(
            f"/v1/invoices/{inv['invoice']}/refunds", json=body, headers=auth
        )
        expected = code or "refund_exceeds_received"
        assert r.status_code in (400, 422) and r.json()["error"]["code"] == expected, r.text
    assert await row_counts(db) == before

    r = await rail_client.post(
        f"/v1/invoices/{inv['invoice']}/refunds",
        json={"amount": "120.50", "bank_iban": PAYEE_IBAN, "bank_name": "Ada Lovelace"},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    re = r.json()
    assert re["rail"] == "bank" and re["status"] == "pending"
    ctx = BackupContext(
        db,
        rail_app.state.settings,
        rail_app.state.payments,
        rail_app.state.backup_rails,
        routing_policy(rail_app.state.settings),
        "w-refunds",
    )
    await backup_round(ctx)
    payout = (await rail_client.get(f"/v1/payouts/{re['payout']}", headers=auth)).json()
    [att] = payout["attempts"]
    assert (att["rail"], att["status"], att["reason"]) == ("bank", "submitted", "refund")

    exported = await files.export_payouts(tmp_path / "out", date(2026, 12, 4))
    assert exported.path is not None and exported.attempts == [att["id"]]
    xml = exported.path.read_bytes().decode()
    schema = xmlschema.XMLSchema(str(PAIN_XSD))
    schema.validate(xml)  # a valid ISO 20022 pain.001.001.03 file
    [tx] = schema.to_dict(xml)["CstmrCdtTrfInitn"]["PmtInf"][0]["CdtTrfTxInf"]
    assert tx["CdtrAcct"]["Id"]["IBAN"] == PAYEE_IBAN
    assert tx["Cdtr"]["Nm"] == "Ada Lovelace"
    assert tx["Amt"]["InstdAmt"]["$"] == pytest.approx(120.50)

    settled = statement(
        OUR_IBAN,
        [Entry("D1", 12_050, "USD", "DBIT", "refund", end_to_end=att["id"])],
        "STMT-2",
    )
    assert [ln.outcome for ln in (await files.import_statement(settled)).lines] == ["settled"]
    got = (await rail_client.get(f"/v1/refunds/{re['id']}", headers=auth)).json()
    assert got["status"] == "succeeded"
    inv_view = (await rail_client.get(f"/v1/invoices/{inv['invoice']}", headers=auth)).json()
    assert inv_view["amount_received"] == "300.00" and inv_view["amount_refunded"] == "120.50"
    balances = await books_ok(db)
    assert balances[(books.merchant_account("acct_test"), "USD")] == -(30_000 - 12_050)
