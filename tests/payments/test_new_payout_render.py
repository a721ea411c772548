"""The write paths render and insert a new payout from its fields (`payout_values`), not from
a mapped Payment: what they answer and store must be what the ORM object would give."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tonrail.db import Database
from tonrail.payments import repository as repo
from tonrail.payments.models import Payment
from tonrail.payments.schemas import PaymentOut, PayoutCreate
from tonrail.payments.service import CheckedPayout, PaymentService
from tonrail.rates import Rate
from tonrail.screening.rules import Outcome, Verdict
from tonrail.security.api_keys import Principal
from tonrail.settings import Settings

DESTINATION = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"
NOW = datetime(2026, 12, 5, 4, 30, 1, 123456, tzinfo=UTC)
RATE = Rate(Decimal("3.25"), datetime(2026, 12, 5, 4, 29, tzinfo=UTC), "test")


def _checked(rate: Rate | None, **fields: Any) -> CheckedPayout:
    req = PayoutCreate.model_validate(
        {"amount": "1.5", "asset": "TON", "destination": DESTINATION, **fields}
    )
    usdt = rate.usdt_equivalent(1_500_000_000, "TON") if rate is not None else 0
    return CheckedPayout(req, 1_500_000_000, usdt, rate)


CASES = {
    "plain": (_checked(RATE), None),
    "described, with metadata and a priority": (
        _checked(
            RATE,
            description="rent\tDecember",
            metadata={"order": "A-1", "n": "2"},
            priority="urgent",
            target_confirmation_seconds=30,
        ),
        None,
    ),
    "held for a fresh rate": (_checked(None), None),
    "above the approval threshold": (_checked(Rate(Decimal("10000000"), NOW, "test")), None),
    "held for review by screening": (
        _checked(RATE),
        Verdict(Outcome.REVIEW, "test", "listed for review"),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_new_payout_fields_render_and_insert_as_the_mapped_payment(
    case: str, tmp_path: Path
) -> None:
    checked, screened = CASES[case]
    url = f"sqlite+aiosqlite:///{tmp_path / 'unused.sqlite3'}"  # never connected to
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=url,
        data_dir=tmp_path,
        approval_threshold_usdt=1_000 * 10**6,
    )
    db = Database(url)
    service = PaymentService(db, settings)
    principal = Principal("key_1", "acct_1", frozenset({"payments:write"}))

    values = service.payout_values(principal, checked, NOW)
    payment = Payment(**values)
    service.hold_for_review(payment, screened)
    service.hold_values_for_review(values, screened)

    assert PaymentOut.of_new_payout(values).model_dump(mode="json") == PaymentOut.of(
        payment
    ).model_dump(mode="json")
    assert repo.values_write(values).values == repo.insert_write(payment).values
    if screened is not None:
        assert values["status"] == "requires_approval"
        assert values["hold_reason"] is not None
    await db.dispose()
