"""Bank files: export payouts as an ISO 20022 pain.001 file; import a CAMT.053 statement.

Each statement line is stored first as a provider event (source `bank`, unique on the
bank's reference for the line), so importing the same statement twice changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import structlog
from pycamt.parser import Camt053Parser
from sepaxml import SepaTransfer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tonrail import clock
from tonrail.db import Database
from tonrail.errors import InvalidRequest
from tonrail.ids import new_id
from tonrail.ledger import rules as books
from tonrail.ledger.service import post
from tonrail.money import parse_minor
from tonrail.payments.models import Attempt
from tonrail.payments.service import PaymentService
from tonrail.payments.states import AttemptStatus
from tonrail.processing.models import ProviderEvent
from tonrail.processing.outcomes import record_poll
from tonrail.processing.payer_screening import Screened, screen_payer
from tonrail.processing.states import EventStatus
from tonrail.rails.base import PAYER, PollResult, payer_of
from tonrail.settings import Settings
from tonrail.states import PollStatus

log = structlog.get_logger(__name__)


@dataclass
class ExportResult:
    path: Path | None
    message_id: str | None
    attempts: list[str] = field(default_factory=list)
    total: int = 0


@dataclass
class StatementLine:
    reference: str
    # settled | paid | partial | overpaid | unmatched | duplicate | ignored |
    # screening_held | screening_frozen (the debtor screened: not credited to the merchant)
    outcome: str
    amount: int
    currency: str
    direction: str  # CRDT | DBIT
    attempt_id: str | None = None


@dataclass
class ImportReport:
    lines: list[StatementLine] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for line in self.lines if line.outcome == outcome)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _creditor_bic(creditor: dict[str, Any]) -> dict[str, str]:
    return {"BIC": creditor["bic"]} if creditor.get("bic") else {}


class BankFiles:
    """Exports payment files and imports statements for the bank rail."""

    def __init__(self, db: Database, settings: Settings, payments: PaymentService):
        self.db = db
        self.settings = settings
        self.payments = payments

    async def export_payouts(
        self, out_dir: Path, execution_date: date | None = None
    ) -> ExportResult:
        """Write one pain.001 file (validated against its ISO 20022 schema) with every bank
        payout not yet in a file, and mark those attempts as exported."""
        async with self.db.transaction() as session:
            rows = (
                (
                    await session.execute(
                        select(Attempt)
                        .where(Attempt.rail == "bank", Attempt.status == AttemptStatus.SUBMITTED)
                        .order_by(Attempt.created_at, Attempt.id)
                        .with_for_update()
                    )
                )
                .scalars()
                .all()
            )
            todo = [
                a
                for a in rows
                if a.details.get("mode") == "credit_transfer" and not a.details.get("exported_file")
            ]
            if not todo:
                return ExportResult(None, None)
            currency = self.settings.bank_currency.upper()
            config: dict[str, Any] = {
                "name": self.settings.bank_account_name,
                "IBAN": self.settings.bank_account_iban.replace(" ", ""),
                "batch": True,
                "currency": currency,
            }
            if self.settings.bank_account_bic:
                config["BIC"] = self.settings.bank_account_bic
            sepa = SepaTransfer(config, schema=self.settings.bank_pain001_schema, clean=True)
            when = execution_date or clock.now().date()
            total = 0
            for a in todo:
                creditor = a.details["creditor"]
                sepa.add_payment(
                    {
                        "name": creditor["name"],
                        "IBAN": creditor["iban"],
                        **_creditor_bic(creditor),
                        "amount": int(a.details["rail_amount"]),
                        "currency": a.details["rail_asset"],
                        "execution_date": when,
                        "description": f"Payment {a.payment_id}",
                        "endtoend_id": a.details["reference"],
                    }
                )
                total += int(a.details["rail_amount"])
            xml: bytes = sepa.export(validate=True, pretty_print=True)
            path = out_dir / f"pain001-{sepa.msg_id}.xml"
            await asyncio.to_thread(_write_file, path, xml)
            for a in todo:
                a.details = {**a.details, "exported_file": path.name, "message_id": sepa.msg_id}
            await session.flush()
            log.info("bank.exported", file=path.name, count=len(todo), total=total)
            return ExportResult(path, sepa.msg_id, [a.id for a in todo], total)

    async def import_statement(self, xml: bytes) -> ImportReport:
        """Reconcile a CAMT.053 statement: credits against invoice references (partial and
        over-payments included), debits against exported payouts by EndToEndId. Every
        credit is booked; what matches nothing stays in unapplied receipts for an operator."""
        try:
            parser = Camt053Parser(xml)
            lines = parser.get_transactions()
        except Exception as exc:
            raise InvalidRequest(
                f"not a CAMT.053 statement: {exc}", code="statement_invalid"
            ) from exc
        report = ImportReport()
        for index, line in enumerate(lines):
            report.lines.append(await self._import_line(line, index))
        return report

    async def _import_line(self, line: dict[str, Any], index: int) -> StatementLine:
        currency = str(line.get("Currency") or "")
        direction = str(line.get("CreditDebitIndicator") or "")
        amount = parse_minor(str(line.get("Amount")), currency, rounding="half_even")
        remittance = str(
            line.get("RemittanceInformationFull") or line.get("RemittanceInformation") or ""
        )
        end_to_end = line.get("EndToEndId")
        external = (
            line.get("TransactionID")
            or hashlib.sha256(repr(sorted(line.items())).encode()).hexdigest()[:40]
        )
        result = StatementLine(str(external), "ignored", amount, currency, direction)
        if str(line.get("Status") or "BOOK").upper() not in ("BOOK", "BOOKED"):
            return result  # only booked entries move money
        # The debtor of a credit is screened before the transaction (a provider may be slow);
        # the decision is stored if the line pays an invoice (outcomes.record_poll).
        payer = {PAYER: payer_of(line.get("DebtorName"), None, line.get("DebtorIBAN"))}
        screened = (
            await screen_payer(self.payments, "in", currency, amount, "bank", payer)
            if direction == "CRDT"
            else None
        )
        async with self.db.transaction() as session:
            event = ProviderEvent(
                id=new_id("pev"),
                source="bank",
                external_id=str(external),
                type=f"camt053.{direction.lower()}",
                object_ref=None,
                payload={k: v for k, v in line.items() if isinstance(v, str | int | None)},
                status=EventStatus.RECEIVED,
                process_count=1,
                received_at=clock.now(),
            )
            session.add(event)
            try:
                async with session.begin_nested():
                    await session.flush()
            except IntegrityError:
                result.outcome = "duplicate"
                return result
            if direction == "CRDT":
                await self._credit(session, result, remittance, payer, screened)
            elif direction == "DBIT" and end_to_end:
                await self._debit(session, result, str(end_to_end))
            else:
                result.outcome = "unmatched"
            event.object_ref = result.attempt_id
            event.status = EventStatus.PROCESSED
            event.outcome = result.outcome
            event.processed_at = clock.now()
        return result

    async def _credit(
        self,
        session: Any,
        result: StatementLine,
        remittance: str,
        payer: dict[str, Any],
        screened: Screened | None,
    ) -> None:
        await post(session, "bank.credit", books.bank_credit_booked(result.currency, result.amount))
        candidates = (
            (
                await session.execute(
                    select(Attempt).where(
                        Attempt.rail == "bank",
                        Attempt.status.in_((AttemptStatus.SUBMITTED, AttemptStatus.UNKNOWN)),
                    )
                )
            )
            .scalars()
            .all()
        )
        words = remittance.upper().replace(",", " ").split()
        match = next(
            (
                a
                for a in candidates
                if a.details.get("mode") == "instructions"
                and str(a.provider_ref or "").upper() in words
                and a.details.get("rail_asset") == result.currency
            ),
            None,
        )
        if match is None:
            result.outcome = "unmatched"
            return
        result.attempt_id = match.id
        received = int(match.details.get("received", 0)) + result.amount
        expected = int(match.details["rail_amount"])
        extra = {
            "received": received,
            "statement_lines": [*match.details.get("statement_lines", []), result.reference],
            **payer,
        }
        if received < expected:
            pending = PollResult(PollStatus.PENDING)
            await record_poll(session, self.payments, match, pending, extra, screened=None)
            result.outcome = "partial"
            return
        extra["received_into"] = books.UNAPPLIED_RECEIPTS
        outcome = await record_poll(
            session,
            self.payments,
            match,
            PollResult(PollStatus.CONFIRMED, self.settings.bank_fee_fixed, result.currency),
            extra,
            screened=screened,
        )
        if outcome in ("screening_held", "screening_frozen"):
            result.outcome = outcome
            return
        result.outcome = "overpaid" if received > expected and outcome == "succeeded" else "paid"

    async def _debit(self, session: Any, result: StatementLine, end_to_end: str) -> None:
        match = (
            (
                await session.execute(
                    select(Attempt).where(
                        Attempt.rail == "bank",
                        Attempt.provider_ref == end_to_end,
                        Attempt.status.in_((AttemptStatus.SUBMITTED, AttemptStatus.UNKNOWN)),
                    )
                )
            )
            .scalars()
            .first()
        )
        if match is None or int(match.details["rail_amount"]) != result.amount:
            result.outcome = "unmatched"
            return
        result.attempt_id = match.id
        await record_poll(
            session,
            self.payments,
            match,
            PollResult(PollStatus.CONFIRMED, self.settings.bank_fee_fixed, result.currency),
            {"statement_lines": [result.reference]},
            screened=None,  # our own transfer out: no payer to screen
        )
        result.outcome = "settled"
