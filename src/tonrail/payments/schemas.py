"""API shapes of payouts and incoming payments (invoices)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from tonrail.chain.links import explorer_link, transfer_link
from tonrail.money import DECIMAL_PATTERN, MAX_DIGITS, format_minor
from tonrail.payments.models import Attempt, Payment, Refund
from tonrail.payments.receipts import ChainFacts
from tonrail.payments.states import AttemptStatus, PaymentStatus
from tonrail.rails.ton.models import TonDeposit
from tonrail.rails.ton.states import DepositStatus
from tonrail.states import RefundStatus
from tonrail.treasury.models import TreasuryOrder

Priority = Literal["urgent", "normal", "low"]
PAYOUT_ASSETS = ("TON", "USDT")
INVOICE_ASSETS = ("TON", "USDT", "USD")  # the assets with a rate (rates.py)

# What the service parses (money.parse_minor): a decimal string in major units, never a JSON
# number; its decimals at most the asset's (TON 9, USDT 6, USD 2).
AMOUNT_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": DECIMAL_PATTERN,
    "maxLength": MAX_DIGITS,
    "description": 'decimal string in major units, e.g. "12.50"; at most the asset\'s decimals '
    "(TON 9, USDT 6, USD 2)",
    "examples": ["12.50"],
}
Amount = Annotated[Any, WithJsonSchema(AMOUNT_SCHEMA)]
PayoutAsset = Annotated[str, WithJsonSchema({"type": "string", "enum": list(PAYOUT_ASSETS)})]
InvoiceAsset = Annotated[str, WithJsonSchema({"type": "string", "enum": list(INVOICE_ASSETS)})]


class PayoutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Amount
    asset: PayoutAsset
    destination: str = Field(
        description="TON address (raw or user-friendly) of the payee",
        examples=["0:b113a994b5024a16719f69139328eb759596c38a25f59028b146fecdc3621dfe"],
    )
    priority: Priority = "normal"
    target_confirmation_seconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    description: str | None = Field(default=None, max_length=1000)
    metadata: dict[str, str] = Field(default_factory=dict)


class InvoiceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Amount
    asset: InvoiceAsset
    expires_in_seconds: int = Field(default=3600, ge=60, le=30 * 24 * 3600)
    description: str | None = Field(default=None, max_length=1000)
    metadata: dict[str, str] = Field(default_factory=dict)


class AttemptOut(BaseModel):
    id: str
    number: int
    rail: str
    status: AttemptStatus
    provider_ref: str | None
    fee: str | None
    fee_asset: str | None
    error_code: str | None
    # Why this rail: "primary", a fallback ("ton_congested", "fee_diverted",
    # "ton_failed_after_retries") or "customer_choice" (backup rail checkout).
    reason: str | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, a: Attempt) -> AttemptOut:
        # A field-by-field copy into the view: alike other views in shape only.
        return cls(
            id=a.id,
            number=a.number,
            rail=a.rail,
            status=a.status,
            provider_ref=a.provider_ref,
            fee=format_minor(a.fee_amount, a.fee_asset) if a.fee_amount and a.fee_asset else None,
            fee_asset=a.fee_asset,
            error_code=a.error_code,
            reason=(a.details or {}).get("reason"),
            created_at=a.created_at,
            updated_at=a.updated_at,
        )


class TreasuryOrderOut(BaseModel):
    """A payout's order on the treasury multisig (docs/TREASURY.md), as the worker last read it."""

    address: str = Field(description="the order contract's address (raw form)")
    seqno: int = Field(description="the order's seqno on the multisig")
    status: Literal["signed", "proposed", "executed", "confirmed", "failed"] = Field(
        description="signed: the hot wallet's proposal is stored and sent; proposed: the order "
        "is on chain, waiting for its signers; executed: approved, the multisig sent the "
        "payout; confirmed: the payee's side took it; failed: it can never pay"
    )
    approvals: int = Field(description="signers' approvals counted on the order so far")
    threshold: int = Field(description="approvals the multisig needs to execute it")
    expires_at: datetime = Field(description="the order's expiration date: unapproved, it fails")

    @classmethod
    def of(cls, o: TreasuryOrder) -> TreasuryOrderOut:
        return cls(
            address=o.order_address,
            seqno=o.order_seqno,
            status=o.status.value,
            approvals=o.approvals,
            threshold=o.threshold,
            expires_at=datetime.fromtimestamp(o.expiration_date, UTC),
        )


class DepositOut(BaseModel):
    """A transfer that arrived on chain for an invoice."""

    id: str
    tx_hash: str = Field(description="hex hash of the transaction that received it")
    explorer_url: str | None = Field(description="the transaction in an explorer")
    amount: str
    amount_minor: int
    asset: str
    sender: str | None = Field(
        description="who paid (raw address; for USDT the owner of the sending jetton wallet)"
    )
    status: DepositStatus = Field(
        description="credited | underpaid | overpaid (count towards the invoice), late (the "
        "invoice had ended), resolved (an operator decided), held (AML/KYC screening: waits "
        "for an approver, not credited), frozen (screening blocked the sender: never credited)"
    )
    resolution: str | None
    received_at: datetime = Field(description="when the deposit watcher recorded it")

    @classmethod
    def of(cls, d: TonDeposit, explorer: str | None) -> DepositOut:
        return cls(
            id=d.id,
            tx_hash=d.tx_hash,
            explorer_url=explorer_link(explorer, d.tx_hash),
            amount=format_minor(d.amount, d.asset),
            amount_minor=d.amount,
            asset=d.asset,
            sender=d.sender,
            status=d.status,
            resolution=d.resolution,
            received_at=d.created_at,
        )


class FeeDecisionOut(BaseModel):
    """What the fee optimizer decided for a payout, and what then happened (nanoton)."""

    decided_at: datetime
    revisions: int = Field(description="how often the decision was re-taken while queued")
    congestion_pct: float | None = Field(description="null: congestion was not known")
    send_at: datetime = Field(description="not sent before this (later than queued: held)")
    send_by: datetime = Field(description="in a sent request by this time")
    batch_window_ms: int
    batch_max: int
    jetton_attach_nanoton: int = Field(description="TON attached to a jetton transfer")
    divert_reason: str | None = Field(description="set: the payout should use a backup rail")
    expected_fee_nanoton: int | None
    alone_fee_nanoton: int | None = Field(description="the fee had it been sent alone")
    reasons: list[str]
    outcome: str | None = Field(description="confirmed | failed | diverted, once known")
    fee_paid_nanoton: int | None
    confirm_ms: int | None = Field(description="from queued to confirmed")


class PaymentOut(BaseModel):
    # API fields: alike other schemas in shape only.
    object: Literal["payout", "invoice"]
    id: str
    status: PaymentStatus
    direction: Literal["in", "out"]
    amount: str
    amount_minor: int
    asset: str
    usdt_equivalent: str
    rate: str
    rate_at: datetime
    destination: str | None = None
    reference: str | None = None
    pay_to: str | None = None
    comment: str | None = Field(default=None, description="the text the payer must attach")
    deep_link: str | None = Field(default=None, description="ton://transfer link for wallets")
    amount_received: str | None = Field(
        default=None,
        description="invoices: what counts towards the invoice so far (credited, underpaid and "
        "overpaid deposits, or the whole amount paid on a backup rail)",
    )
    amount_received_minor: int | None = None
    amount_remaining: str | None = Field(
        default=None, description="invoices: amount - amount_received, not below zero"
    )
    amount_refunded: str | None = Field(
        default=None, description="invoices: refunds pending or succeeded"
    )
    deposits: list[DepositOut] = Field(
        default_factory=list, description="invoices: the transfers that arrived for it"
    )
    paid_at: datetime | None = Field(default=None, description="invoices: when it was paid")
    tx_hash: str | None = Field(
        default=None,
        description="TON payouts, once confirmed: hex hash of the hot wallet's transaction "
        "that sent it",
    )
    explorer_url: str | None = Field(
        default=None, description="TON payouts: tx_hash in an explorer of the network in use"
    )
    priority: str
    target_confirmation_seconds: int
    description: str | None
    metadata: dict[str, Any]
    approvals: list[str] = Field(default_factory=list)
    attempts: list[AttemptOut] = Field(default_factory=list)
    failure_code: str | None
    failure_message: str | None
    hold_reason: str | None = None
    fee_decision: FeeDecisionOut | None = Field(
        default=None, description="the fee optimizer's decision for a TON payout (docs/FEES.md)"
    )
    treasury_order: TreasuryOrderOut | None = Field(
        default=None,
        description="payouts paid from the treasury multisig: their order and its approvals",
    )
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(
        cls,
        p: Payment,
        approvals: list[str] | None = None,
        attempts: list[Attempt] | None = None,
        pay_to: str | None = None,
        usdt_master: str | None = None,
        fee_decision: FeeDecisionOut | None = None,
        facts: ChainFacts | None = None,
        explorer: str | None = None,
    ) -> PaymentOut:
        invoice = p.direction == "in"
        facts = facts or ChainFacts()
        link = (
            transfer_link(pay_to, p.asset, p.amount, p.reference or "", usdt_master)
            if invoice and pay_to
            else None
        )
        return cls(
            object="payout" if p.direction == "out" else "invoice",
            id=p.id,
            status=p.status,
            direction="out" if p.direction == "out" else "in",
            amount=format_minor(p.amount, p.asset),
            amount_minor=p.amount,
            asset=p.asset,
            usdt_equivalent=format_minor(p.usdt_equivalent, "USDT"),
            rate=p.rate,
            rate_at=p.rate_at,
            destination=p.counterparty if p.direction == "out" else None,
            reference=p.reference,
            pay_to=pay_to if invoice else None,
            comment=p.reference if invoice else None,
            deep_link=link,
            amount_received=format_minor(facts.received, p.asset) if invoice else None,
            amount_received_minor=facts.received if invoice else None,
            amount_remaining=format_minor(max(p.amount - facts.received, 0), p.asset)
            if invoice
            else None,
            amount_refunded=format_minor(facts.refunded, p.asset) if invoice else None,
            deposits=[DepositOut.of(d, explorer) for d in facts.deposits],
            paid_at=p.completed_at if invoice and p.status == PaymentStatus.SUCCEEDED else None,
            tx_hash=facts.tx_hash,
            explorer_url=explorer_link(explorer, facts.tx_hash),
            priority=p.priority,
            target_confirmation_seconds=p.target_confirmation_seconds,
            description=p.description,
            metadata=p.metadata_,
            approvals=approvals or [],
            attempts=[AttemptOut.of(a) for a in attempts or []],
            failure_code=p.failure_code,
            failure_message=p.failure_message,
            hold_reason=p.hold_reason,
            fee_decision=fee_decision,
            treasury_order=TreasuryOrderOut.of(facts.treasury_order)
            if facts.treasury_order is not None
            else None,
            expires_at=p.expires_at,
            created_at=p.created_at,
            updated_at=p.updated_at,
            completed_at=p.completed_at,
        )

    @classmethod
    def of_new_payout(cls, v: Mapping[str, Any]) -> PaymentOut:
        """`of` for a payout being created, given as its fields (Payment's attribute names,
        `PaymentService.payout_values`): what `of` renders for it (no approvals, attempts,
        fee decision or chain facts yet; a payout has no reference, invoice fields or
        failure), without a mapped Payment to read."""
        asset = v["asset"]
        return cls(
            object="payout",
            id=v["id"],
            status=v["status"],
            direction="out",
            amount=format_minor(v["amount"], asset),
            amount_minor=v["amount"],
            asset=asset,
            usdt_equivalent=format_minor(v["usdt_equivalent"], "USDT"),
            rate=v["rate"],
            rate_at=v["rate_at"],
            destination=v["counterparty"],
            reference=v.get("reference"),
            priority=v["priority"],
            target_confirmation_seconds=v["target_confirmation_seconds"],
            description=v["description"],
            metadata=v["metadata_"],
            failure_code=None,
            failure_message=None,
            hold_reason=v["hold_reason"],
            expires_at=v.get("expires_at"),
            created_at=v["created_at"],
            updated_at=v["updated_at"],
            completed_at=None,
        )


class PaymentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[PaymentOut]
    has_more: bool


class ApproveResult(BaseModel):
    payment: PaymentOut
    approvals_needed: int


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Annotated[
        Any,
        WithJsonSchema({"anyOf": [AMOUNT_SCHEMA, {"type": "null"}]}),
        Field(
            description="Decimal string in major units; omitted: everything received from the "
            "payer that is not refunded yet"
        ),
    ] = None
    reason: str | None = Field(default=None, max_length=500)
    deposit: str | None = Field(
        default=None,
        description="the deposit whose payer is paid back; needed when several addresses "
        "paid the invoice",
    )
    bank_iban: str | None = Field(
        default=None,
        max_length=42,
        description="an invoice paid by bank transfer: the IBAN to pay back (required there)",
    )
    bank_name: str | None = Field(
        default=None, max_length=140, description="with bank_iban: the account holder's name"
    )


class RefundOut(BaseModel):
    object: Literal["refund"] = "refund"
    id: str
    invoice: str
    payout: str | None = Field(description="the payout that carries the refund (TON)")
    deposit: str | None
    rail: str
    status: RefundStatus
    amount: str
    amount_minor: int
    asset: str
    destination: str = Field(description="who is paid back (raw TON address)")
    reason: str | None
    failure_code: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: Refund) -> RefundOut:
        return cls(
            id=r.id,
            invoice=r.invoice_id,
            payout=r.payout_id,
            deposit=r.deposit_id,
            rail=r.rail,
            status=r.status,
            amount=format_minor(r.amount, r.asset),
            amount_minor=r.amount,
            asset=r.asset,
            destination=r.destination,
            reason=r.reason,
            failure_code=r.failure_code,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )


class RefundList(BaseModel):
    object: Literal["list"] = "list"
    data: list[RefundOut]
    has_more: bool = False
