"""A service with the bank rail configured, and payouts that really settle through it
(pain.001 out, CAMT.053 back): ledger lines, attempts with the payee's IBAN and name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import make_key
from tests.rails.camt import Entry, statement
from tests.rails.conftest import new_payout, start_on_rail, state
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.ledger.service import check_books
from tonrail.models import metadata
from tonrail.payments.service import PaymentService
from tonrail.processing.bank_files import BankFiles
from tonrail.security import audit_log
from tonrail.settings import Settings

OUR_IBAN = "DE89370400440532013000"
PAYEE_IBAN = "GB33BUKB20201555555555"
OTHER_IBAN = "GB94BARC10201530093459"
PAYEE_NAME = "Ada Lovelace"
PAYEE_EMAIL = "ada.lovelace@example.com"


@pytest.fixture
def bank_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "bank_account_name": "Tonrail Operations Ltd",
            "bank_account_iban": OUR_IBAN,
            "bank_account_bic": "COBADEFFXXX",
        }
    )


@pytest.fixture
def bank_app(bank_settings: Settings, db: Database) -> Any:
    return create_app(bank_settings, db)


@pytest.fixture
async def bank_client(bank_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=bank_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
        yield c


@pytest.fixture
async def admin_auth(db: Database) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key(db, 'acct_ops', 'privacy:admin')}"}


async def settled_bank_payout(
    db: Database, app: Any, settings: Settings, out: Path, iban: str, name: str, ref: str
) -> str:
    """A payout to `iban` paid by bank transfer and settled by the bank's statement."""
    payout = await new_payout(
        db, app, {"bank_iban": iban, "bank_name": name, "contact": PAYEE_EMAIL}
    )
    attempt = await start_on_rail(db, app, payout, "bank", "fee_diverted")
    files = BankFiles(db, settings, PaymentService(db, settings))
    exported = await files.export_payouts(out, date(2026, 11, 30))
    assert exported.attempts == [attempt]
    report = await files.import_statement(
        statement(OUR_IBAN, [Entry(ref, 10_000, "USD", "DBIT", "payout", end_to_end=attempt)], ref)
    )
    assert [ln.outcome for ln in report.lines] == ["settled"]
    assert await state(db, payout) == ("succeeded", [("bank", "confirmed")])
    return payout


async def books(db: Database) -> dict[tuple[str, str], int]:
    """The balances, after `tonrail ledger check`'s own check passed."""
    async with db.transaction() as session:
        report = await check_books(session)
    assert report.ok, report
    assert report.lines > 0
    return report.balances


async def chain_ok(db: Database) -> int:
    """`tonrail audit verify`'s walk: the chain must verify; returns its length."""
    async with db.transaction() as session:
        result = await audit_log.verify(session)
    assert result.ok, result
    return result.entries


async def everything(db: Database) -> str:
    """Every row of every table as text: what a subject's spelling must be gone from."""
    parts: list[str] = []
    async with db.transaction() as session:
        for table in metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                parts.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(parts)
