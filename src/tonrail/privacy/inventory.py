"""The data inventory: which columns of which tables may hold personal data, of what kind,
and under which retention class (docs/PRIVACY.md is its prose; a test keeps them together).

Export reads these places, erasure pseudonymises them; the ledger (`journal_entries`,
`ledger_lines`) holds no personal data, only merchant accounts and amounts, and is never
written by either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tonrail.events.models import OutboxEvent
from tonrail.monitoring.models import Alert, AlertDelivery, AlertEvent, SecurityReport
from tonrail.notify.models import WebhookAttempt
from tonrail.payments.models import Attempt, Payment, Refund
from tonrail.processing.models import ProviderEvent
from tonrail.rails.ton.models import TonDeposit, TonTransfer
from tonrail.security.models import IdempotencyRecord, Lockout, SecurityFailure

RetentionClass = Literal["financial", "security", "idempotency"]


@dataclass(frozen=True)
class Place:
    """Columns of one table where a subject's email, IBAN, address or name may be stored."""

    model: type[Any]
    columns: tuple[str, ...]  # text columns, compared by every spelling of the subject
    documents: tuple[str, ...]  # JSON columns, searched in their text, rewritten in Python
    retention: RetentionClass
    # The column naming the payment a row belongs to (the subject's payments), if any.
    payment_column: str | None = None

    @property
    def table(self) -> str:
        return str(self.model.__tablename__)


PLACES: tuple[Place, ...] = (
    Place(
        Payment,
        ("counterparty", "description", "failure_message"),
        ("metadata_",),
        "financial",
        "id",
    ),
    Place(Attempt, ("error_message",), ("details",), "financial", "payment_id"),
    Place(Refund, ("destination", "reason"), (), "financial", "payout_id"),
    Place(TonTransfer, ("destination", "message_to"), ("trace",), "financial", "payment_id"),
    Place(TonDeposit, ("sender", "comment", "resolution"), (), "financial", "payment_id"),
    Place(ProviderEvent, ("outcome",), ("payload",), "financial"),
    Place(OutboxEvent, (), ("payload", "data"), "financial", "payment_id"),
    Place(IdempotencyRecord, (), ("response_body",), "idempotency"),
    Place(WebhookAttempt, ("response_body", "error"), (), "security"),
    Place(SecurityFailure, ("subject",), (), "security"),
    Place(Lockout, ("subject", "reason"), (), "security"),
    Place(Alert, ("summary",), ("details",), "security"),
    Place(AlertEvent, (), ("details",), "security"),
    Place(AlertDelivery, ("last_error",), (), "security"),
    Place(SecurityReport, (), ("body",), "security"),
)
# The audit log (security/audit_log.py) is searched too: its subject and details, redacted
# through the hash chain's content digest, never rewritten in place of the chain.
