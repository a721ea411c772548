"""The one protocol every rail speaks (TON, Stripe, PayPal, bank).

Rails see plain data, never database sessions: the payments domain owns the transactions
and records what a rail reports. Every call must be safe to repeat for the same attempt:
`attempt.idempotency_key` (`{payment_id}:{n}`) goes to the provider, and what `prepare`
returns is stored on the attempt before `submit` runs, so a re-submit after a crash sends
the very same request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from tonrail.states import AttemptStatus, PollStatus

RailName = Literal["ton", "stripe", "paypal", "bank"]


# A payout's metadata key naming the Stripe PaymentIntent it refunds: set only by refunds
# (payments/refunds.py); merchants may not set it on payouts of their own.
STRIPE_REFUND_OF = "stripe_refund_of"
# The same for the PayPal capture a refund gives back (a capture refund).
PAYPAL_REFUND_OF = "paypal_refund_of"
# And the bank transfer reference of an invoice paid by bank, refunded by credit transfer.
BANK_REFUND_OF = "bank_refund_of"
REFUND_OF_KEYS = (STRIPE_REFUND_OF, PAYPAL_REFUND_OF, BANK_REFUND_OF)
# PollResult.details key of who paid an invoice, as its provider tells us (AML/KYC screening:
# processing/payer_screening.py): {"name", "email", "iban"}, each only when known.
PAYER = "payer"


def payer_of(name: Any = None, email: Any = None, iban: Any = None) -> dict[str, str]:
    """The payer entry of a poll's details: the non-empty strings among name, email, IBAN."""
    given = {"name": name, "email": email, "iban": iban}
    return {k: " ".join(v.split()) for k, v in given.items() if isinstance(v, str) and v.strip()}


# Plain frozen dataclasses, a few typed fields each: alike others in shape only.
@dataclass(frozen=True, slots=True)
class PaymentView:
    id: str
    account_id: str
    direction: Literal["in", "out"]
    amount: int
    asset: str
    counterparty: str | None
    priority: str
    target_confirmation_seconds: int
    reference: str | None
    metadata: dict[str, str] = field(default_factory=dict)


# Plain frozen dataclasses (fields only): alike others in shape only.
@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a batch rail builds no message for a payout: it fails at once with `code`."""

    code: str  # the payout's failure_code
    message: str


@dataclass(frozen=True, slots=True)
class AttemptView:
    id: str
    payment_id: str
    number: int
    idempotency_key: str
    provider_ref: str | None
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Quote:
    """What a rail would charge and how long it would take; `available` False says why not."""

    rail: RailName
    fee: int
    fee_asset: str
    eta_seconds: int
    available: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """`submitted`: the provider has it; `failed`: it definitely did not and will not happen;
    `unknown`: we cannot tell (timeout, crash) and must poll before doing anything else."""

    status: AttemptStatus  # SUBMITTED, FAILED or UNKNOWN
    provider_ref: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class PollResult:
    status: PollStatus
    fee: int | None = None
    fee_asset: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None


class Rail(Protocol):
    name: RailName

    async def quote(self, payment: PaymentView) -> Quote:
        """Fee and ETA for this payment on this rail, without side effects."""
        ...

    async def prepare(self, payment: PaymentView, attempt: AttemptView) -> dict[str, Any]:
        """Everything needed to (re-)send the attempt; stored before `submit` is called."""
        ...

    async def submit(self, payment: PaymentView, attempt: AttemptView) -> SubmitResult:
        """Hand the prepared attempt to the provider; repeatable for the same attempt."""
        ...

    async def poll(self, payment: PaymentView, attempt: AttemptView) -> PollResult:
        """The provider's current view of the attempt."""
        ...


TransferT = TypeVar("TransferT")
SignedT = TypeVar("SignedT", covariant=True)


class BatchRail(Protocol[TransferT, SignedT]):
    """A rail that pays many payouts with one signed message (TON: rails/ton/rail.py).

    Plain data as well: the pipeline allocates the message's id (`query_id`), stores what
    `sign` returns together with the attempts in one transaction, and only then `send`s the
    stored message — again after a crash or a lost answer (the wallet accepts an id once).
    Nothing is signed twice while an earlier message could still be executed."""

    def refusal(self, payment: PaymentView) -> Refusal | None:
        """Why no message may be built for `payment` (it fails at once), or None."""
        ...

    def transfer(self, payment: PaymentView, *, attach: int, jetton_query_id: int) -> TransferT:
        """What pays `payment` inside a batch (only when `refusal` is None)."""
        ...

    def sign(
        self, transfers: Sequence[TransferT], *, query_id: int, created_at: int, deploy: bool
    ) -> SignedT:
        """One message carrying `transfers`, signed; stored before it is sent."""
        ...

    async def send(self, message: str) -> None:
        """Hand a stored message to the network; repeatable."""
        ...
