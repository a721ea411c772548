"""Every table of the service, imported so that Base.metadata knows them all (Alembic, tests)."""

from tonrail.db import Base
from tonrail.events.models import OutboxEvent
from tonrail.fees.models import FeeDecisionRecord, FeeSample
from tonrail.kit.models import WorkerHeartbeat
from tonrail.ledger.models import AccountBalance, JournalEntry, LedgerLine
from tonrail.limits.models import DailyVolume, KeyDailyVolume
from tonrail.monitoring.models import (
    Alert,
    AlertDelivery,
    AlertEvent,
    MonitoringSignal,
    SecurityReport,
)
from tonrail.notify.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tonrail.payments.models import Approval, Attempt, Payment, Refund
from tonrail.privacy.models import RetentionRun
from tonrail.processing.models import ProviderEvent
from tonrail.rails.models import RailHealth
from tonrail.rails.ton.models import (
    TonDeposit,
    TonOwnAccount,
    TonQueryCounter,
    TonRequest,
    TonTransfer,
    TonWalletCursor,
)
from tonrail.screening.models import ScreeningDecision
from tonrail.security.admins import AdminUser
from tonrail.security.audit_log import AuditEntry, AuditHead
from tonrail.security.models import (
    AccessVersion,
    AdminSession,
    ApiKey,
    IdempotencyRecord,
    Lockout,
    SecurityFailure,
)
from tonrail.security.switches import OpsSwitch
from tonrail.treasury.models import TreasuryOrder

metadata = Base.metadata

__all__ = [
    "AccessVersion",
    "AccountBalance",
    "AdminSession",
    "AdminUser",
    "Alert",
    "AlertDelivery",
    "AlertEvent",
    "ApiKey",
    "Approval",
    "Attempt",
    "AuditEntry",
    "AuditHead",
    "DailyVolume",
    "FeeDecisionRecord",
    "FeeSample",
    "IdempotencyRecord",
    "JournalEntry",
    "KeyDailyVolume",
    "LedgerLine",
    "Lockout",
    "MonitoringSignal",
    "OpsSwitch",
    "OutboxEvent",
    "Payment",
    "ProviderEvent",
    "RailHealth",
    "Refund",
    "RetentionRun",
    "ScreeningDecision",
    "SecurityFailure",
    "SecurityReport",
    "TonDeposit",
    "TonOwnAccount",
    "TonQueryCounter",
    "TonRequest",
    "TonTransfer",
    "TonWalletCursor",
    "TreasuryOrder",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WorkerHeartbeat",
    "metadata",
]
