"""Screening a payout before it is queued: every configured provider asked, the strictest
verdict wins, and the decision stored (docs/COMPLIANCE.md)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.db import Write, insert_row
from tonrail.errors import PermissionDenied
from tonrail.ids import new_id
from tonrail.monitoring.signals import SCREENING_BLOCKED, write_signal
from tonrail.screening.models import ScreeningDecision
from tonrail.screening.providers import HttpProvider, ListProvider, Provider
from tonrail.screening.rules import Outcome, Subject, Verdict, worst
from tonrail.settings import Settings

log = structlog.get_logger(__name__)

REVIEW_HOLD = "screening_review"  # hold_reason of a payment waiting for an approver
DECISIONS: Table = ScreeningDecision.__table__  # type: ignore[assignment]
# What was being decided (screening_decisions.stage).
PAYOUT_REQUEST = "payout_request"  # POST /v1/payouts and each item of POST /v1/payouts/batch
REFUND_REQUEST = "refund_request"  # a refund's payout (API or an operator's resolution)
DEPOSIT_CREDIT = "deposit_credit"  # an incoming transfer about to be credited
PAYMENT_CREDIT = "payment_credit"  # an invoice paid by card, PayPal or bank transfer
# attempt.details[SCREENING_MARK] of a backup-rail payment screening set apart
# (processing/payer_screening.py): held (for review), frozen (blocked), released.
SCREENING_MARK = "screening"
HELD_MARK, FROZEN_MARK, RELEASED_MARK = "held", "frozen", "released"


class ScreeningBlocked(PermissionDenied):
    code = "screening_blocked"


class Screening:
    """The configured providers; `None` from `of` when screening is off."""

    def __init__(self, providers: list[Provider]) -> None:
        self.providers = providers

    @classmethod
    def of(cls, settings: Settings) -> Screening | None:
        providers: list[Provider] = []
        if settings.screening_list_file.strip():
            providers.append(ListProvider(Path(settings.screening_list_file.strip())))
        if settings.screening_http_url.strip():
            providers.append(
                HttpProvider(
                    settings.screening_http_url.strip(),
                    settings.screening_http_api_key.get_secret_value(),
                    settings.screening_http_timeout_seconds,
                )
            )
        return cls(providers) if providers else None

    async def decide(self, subject: Subject, context: dict[str, Any]) -> Verdict:
        """Ask every provider; the strictest verdict wins."""
        return worst([await p.screen(subject, context) for p in self.providers])


def decision_write(
    verdict: Verdict,
    *,
    stage: str,
    subject: Subject,
    payment_id: str | None,
    requested_by: str | None,
    now: datetime,
    deposit_id: str | None = None,
) -> Write:
    """The decision's INSERT, to commit with the payment it decided (write_at_once)."""
    values = {
        "id": new_id("scr"),
        "payment_id": payment_id,
        "deposit_id": deposit_id,
        "stage": stage,
        "address": subject.address,
        "name": subject.name,
        "email": subject.email,
        "iban": subject.iban,
        "provider": verdict.provider,
        "outcome": str(verdict.outcome),
        "reason": verdict.reason,
        "reference": verdict.reference,
        "requested_by": requested_by,
        "decided_at": now,
    }
    return insert_row(DECISIONS, values)


async def record_refusal(
    session: AsyncSession, verdict: Verdict, subject: Subject, requested_by: str, stage: str
) -> None:
    """Store a `blocked` decision (nothing else is written for the refused request) and count
    it: the alert rule `screening_blocked` opens on the counter's latest update."""
    now = clock.now()
    row = decision_write(
        verdict, stage=stage, subject=subject, payment_id=None, requested_by=requested_by, now=now
    )
    await session.execute(DECISIONS.insert().values(**row.values))
    await write_signal(session, SCREENING_BLOCKED, 1, kind="counter")
    log.warning("refused by screening", provider=verdict.provider, by=requested_by, stage=stage)


async def store_decision(
    session: AsyncSession,
    verdict: Verdict,
    *,
    stage: str,
    subject: Subject,
    payment_id: str | None,
    requested_by: str | None,
    deposit_id: str | None = None,
) -> None:
    """`decision_write` inside the caller's transaction: it commits with what it decided."""
    row = decision_write(
        verdict,
        stage=stage,
        subject=subject,
        payment_id=payment_id,
        requested_by=requested_by,
        now=clock.now(),
        deposit_id=deposit_id,
    )
    await session.execute(DECISIONS.insert().values(**row.values))


def refusal(verdict: Verdict, param: str | None = "destination") -> ScreeningBlocked:
    why = f": {verdict.reason}" if verdict.reason else ""
    return ScreeningBlocked(
        f"the destination is refused by screening ({verdict.provider}{why})", param=param
    )


__all__ = [
    "DEPOSIT_CREDIT",
    "PAYMENT_CREDIT",
    "PAYOUT_REQUEST",
    "REFUND_REQUEST",
    "Outcome",
    "Screening",
    "ScreeningBlocked",
    "decision_write",
    "refusal",
    "store_decision",
]
