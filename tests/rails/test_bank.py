"""The bank rail: IBAN validation, instructions, pain.001 files valid against the ISO 20022
schema, and CAMT.053 reconciliation with full, partial, over- and unmatched lines."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sepaxml
import xmlschema
from typer.testing import CliRunner

from tests.rails.camt import Entry, statement
from tests.rails.conftest import (
    OUR_IBAN,
    PAYEE_IBAN,
    books_ok,
    new_payout,
    rails_of,
    start_on_rail,
    state,
)
from tonrail.cli import app as cli
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.payments.models import Attempt
from tonrail.payments.service import PaymentService
from tonrail.processing.bank_files import BankFiles
from tonrail.rails.bank.rail import BankRail, settles_by, valid_iban
from tonrail.rails.pricing import RailRates
from tonrail.rates import fixed_rates
from tonrail.settings import Settings, get_settings

PAIN_XSD = Path(sepaxml.__file__).parent / "schemas" / "pain.001.001.03.xsd"


def test_iban_validation_and_business_days(settings: Settings) -> None:
    assert valid_iban("DE89 3704 0044 0532 0130 00") == OUR_IBAN
    assert valid_iban("DE89370400440532013001") is None  # checksum
    assert valid_iban("not an iban") is None
    with pytest.raises(ValueError):
        BankRail(
            settings.model_copy(update={"bank_account_iban": "DE00123"}),
            RailRates(fixed_rates(settings), "1.08"),
        )
    friday = datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert settles_by(friday, 1) == date(2026, 11, 30)  # Monday
    assert settles_by(friday, 3) == date(2026, 12, 2)


async def bank_invoice(
    client: httpx.AsyncClient, auth: dict[str, str], amount: str
) -> dict[str, Any]:
    r = await client.post("/v1/invoices", json={"amount": amount, "asset": "USD"}, headers=auth)
    inv = r.json()["id"]
    r = await client.post(f"/v1/invoices/{inv}/checkout", json={"rail": "bank"}, headers=auth)
    assert r.status_code == 201, r.text
    return {"invoice": inv, **r.json()}


async def test_bank_rail_end_to_end_with_files(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    rail_settings: Settings,
    auth: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    full = await bank_invoice(rail_client, auth, "1000.00")
    partial = await bank_invoice(rail_client, auth, "300.00")
    instructions = full["bank_instructions"]
    assert instructions["iban"] == OUR_IBAN and instructions["amount"] == "1000.00"
    assert instructions["reference"] == full["provider_ref"]
    assert full["status"] == "submitted"

    rail = rails_of(rail_app)["bank"]
    bad = await new_payout(db, rail_app, {"bank_iban": "GB00BUKB20201555555555", "bank_name": "X"})
    from tonrail.payments.attempts import payment_view
    from tonrail.payments.models import Payment

    async with db.transaction() as session:
        p = await session.get(Payment, bad)
        assert p is not None
        q = await rail.quote(payment_view(p))
    assert not q.available and q.reason == "counterparty_iban_invalid"

    payout = await new_payout(
        db, rail_app, {"bank_iban": PAYEE_IBAN, "bank_name": "Ada Lovelace", "bank_bic": "BUKBGB22"}
    )
    att = await start_on_rail(db, rail_app, payout, "bank", "fee_diverted")
    assert await state(db, payout) == ("processing", [("bank", "submitted")])

    files = BankFiles(db, rail_settings, PaymentService(db, rail_settings))
    exported = await files.export_payouts(tmp_path / "out", date(2026, 11, 30))
    assert exported.path is not None and exported.attempts == [att] and exported.total == 10_000
    xml = exported.path.read_bytes()
    schema = xmlschema.XMLSchema(str(PAIN_XSD))
    schema.validate(xml.decode())  # raises if the file is not valid ISO 20022 pain.001.001.03
    doc = schema.to_dict(xml.decode())
    tx = doc["CstmrCdtTrfInitn"]["PmtInf"][0]["CdtTrfTxInf"][0]
    assert tx["PmtId"]["EndToEndId"] == att
    assert tx["CdtrAcct"]["Id"]["IBAN"] == PAYEE_IBAN
    assert tx["Amt"]["InstdAmt"]["$"] == pytest.approx(100.00)
    assert doc["CstmrCdtTrfInitn"]["PmtInf"][0]["DbtrAcct"]["Id"]["IBAN"] == OUR_IBAN
    again = await files.export_payouts(tmp_path / "out")
    assert again.path is None  # nothing exported twice

    stmt = statement(
        OUR_IBAN,
        [
            Entry("B1", 100_000, "USD", "CRDT", f"Invoice {full['provider_ref']} thanks"),
            Entry("B2", 10_000, "USD", "CRDT", f"{partial['provider_ref']} part 1"),
            Entry("B3", 4_242, "USD", "CRDT", "no reference at all"),
            Entry("B4", 10_000, "USD", "DBIT", "payout", end_to_end=att),
            Entry("B5", 5_000, "USD", "CRDT", partial["provider_ref"], status="PDNG"),
        ],
    )
    report = await files.import_statement(stmt)
    assert [(ln.reference, ln.outcome) for ln in report.lines] == [
        ("B1", "paid"),
        ("B2", "partial"),
        ("B3", "unmatched"),
        ("B4", "settled"),
        ("B5", "ignored"),
    ]
    assert (await state(db, full["invoice"]))[0] == "succeeded"
    assert (await state(db, partial["invoice"]))[0] == "awaiting_payment"
    assert await state(db, payout) == ("succeeded", [("bank", "confirmed")])
    # The same statement again: every line is a duplicate, nothing moves.
    assert {ln.outcome for ln in (await files.import_statement(stmt)).lines} == {
        "duplicate",
        "ignored",
    }

    # The rest of the partial payment arrives (a little more than asked) via the CLI.
    path = tmp_path / "stmt2.xml"
    path.write_bytes(
        statement(
            OUR_IBAN,
            [Entry("B6", 20_500, "USD", "CRDT", f"rest {partial['provider_ref']}")],
            "STMT-2",
        )
    )
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("BANK_ACCOUNT_IBAN", OUR_IBAN)
    get_settings.cache_clear()
    try:
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, ["bank", "import-statement", str(path)]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "B6\tCRDT\t20500\tUSD\toverpaid" in result.output
    assert (await state(db, partial["invoice"]))[0] == "succeeded"
    async with db.transaction() as session:
        a = await session.get(Attempt, partial["attempt"])
        assert a is not None and a.details["received"] == 30_500 and a.fee_amount == 500

    balances = await books_ok(db)
    assert balances[(books.merchant_account("acct_test"), "USD")] == -130_000
    # Unmatched 42.42 and the 5.00 overpayment wait in unapplied receipts for an operator.
    assert balances[(books.UNAPPLIED_RECEIPTS, "USD")] == -(4_242 + 500)
    assert balances[(books.PROVIDER_FEES, "USD")] == 3 * 500
    # Only the payout with the invalid IBAN is still reserved (it never went to the bank).
    assert balances[(books.PAYOUTS_PAYABLE, "TON")] == -20 * 10**9
