"""Refunds: money of an invoice given back to whoever paid it, through the payout pipeline.

An invoice paid by card (a Stripe PaymentIntent, or a Checkout Session through the
PaymentIntent it completed with) or by PayPal (a capture) is refunded by a payout routed to
that rail, whose adapter makes it a Stripe Refund of the PaymentIntent (rails/stripe/rail.py)
or a PayPal capture refund (rails/paypal/rail.py).

On TON a refund is a payout to the address that paid (for USDT, the owner of the jetton
wallet that sent it), created exactly as `POST /v1/payouts` creates one: the same checks and
limits, the approval gate, the daily volume, its reservation in the books (`refund.reserved`,
from the merchant's balance) and its outbox events. The refund follows its payout: when the
payout succeeds or ends unpaid, `transitions.py` moves the refund in the same transaction
(`refund.succeeded` / `refund.failed`).

Never more than received: the invoice row is locked (`FOR UPDATE` on PostgreSQL; SQLite's
`BEGIN IMMEDIATE` serializes writers) before what was received and what is already refunded
are summed, so concurrent refunds of one invoice take turns and the last ones are refused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.errors import Conflict, InvalidRequest, NotFound, TonrailError
from tonrail.events.service import emit
from tonrail.ids import new_id
from tonrail.limits.rules import check_amount
from tonrail.money import format_minor
from tonrail.payments.models import Attempt, Payment, Refund
from tonrail.payments.schemas import PayoutCreate, RefundCreate, RefundList, RefundOut
from tonrail.payments.service import CheckedPayout, PaymentService, Response
from tonrail.payments.states import AttemptStatus
from tonrail.rails.bank.rail import valid_iban
from tonrail.rails.base import BANK_REFUND_OF, PAYPAL_REFUND_OF, STRIPE_REFUND_OF
from tonrail.rails.ton.models import TonDeposit
from tonrail.rails.ton.states import CREDITING_DEPOSIT_STATES
from tonrail.screening.rules import Subject, Verdict
from tonrail.screening.service import FROZEN_MARK, HELD_MARK, REFUND_REQUEST, SCREENING_MARK
from tonrail.security.api_keys import Principal
from tonrail.security.idempotency import IdempotencyKey
from tonrail.security.lockouts import check_not_locked
from tonrail.security.switches import refuse_in_maintenance
from tonrail.states import RefundStatus


class RefundTooLarge(TonrailError):
    """More than what is left to refund of what the payer sent."""

    code = "refund_exceeds_received"
    status = 422


async def refunded_by_destination(session: AsyncSession, invoice_id: str) -> dict[str, int]:
    """What the invoice's refunds that may still pay or have paid (not failed) hold, by
    destination."""
    rows = await session.execute(
        select(Refund.destination, Refund.amount).where(
            Refund.invoice_id == invoice_id, Refund.status != RefundStatus.FAILED
        )
    )
    out: dict[str, int] = defaultdict(int)
    for destination, amount in rows.all():
        out[destination] += int(amount)
    return out


def _payer_of(deposits: Sequence[TonDeposit], deposit_id: str | None) -> str:
    """Whom the refund pays: the named deposit's sender, or the one address that paid."""
    if deposit_id is not None:
        named = next((d for d in deposits if d.id == deposit_id), None)
        if named is None or not named.sender:
            raise InvalidRequest(
                f"{deposit_id!r} is not a deposit that paid this invoice",
                param="deposit",
                code="deposit_invalid",
            )
        return named.sender
    payers = sorted({d.sender for d in deposits if d.sender})
    if len(payers) > 1:
        raise Conflict(
            f"{len(payers)} addresses paid this invoice; name the deposit whose payer to pay back",
            param="deposit",
            code="refund_payer_ambiguous",
        )
    if not payers:
        raise Conflict("nothing was received for this invoice", code="nothing_to_refund")
    return payers[0]


def _bank_account(req: RefundCreate, rail: str) -> dict[str, str]:
    """The payee account of a bank refund (a credit transfer line in the next pain.001);
    refused for other rails, which pay back where the money came from."""
    if rail != "bank":
        if req.bank_iban is not None or req.bank_name is not None:
            raise InvalidRequest(
                "bank_iban and bank_name apply only to invoices paid by bank transfer",
                param="bank_iban",
                code="bank_account_not_applicable",
            )
        return {}
    iban = valid_iban(req.bank_iban or "")
    if iban is None:
        raise InvalidRequest(
            "an invoice paid by bank transfer is refunded to an account: bank_iban must be a "
            "valid IBAN",
            param="bank_iban",
            code="bank_account_invalid",
        )
    name = (req.bank_name or "").strip()
    if not name:
        raise InvalidRequest(
            "bank_name (the account holder) is needed with bank_iban",
            param="bank_name",
            code="bank_account_invalid",
        )
    return {"bank_iban": iban, "bank_name": name}


# Whom a refund pays and what screening answered for them (RefundService.screen).
Screened = tuple[Subject, Verdict]


@dataclass(frozen=True, slots=True)
class RefundPlan:
    """A refund that fits: the invoice, how a backup rail paid it (None: deposits on TON),
    whom it pays (an address, or the provider's payment) and how much."""

    invoice: Payment
    card: tuple[str, str, str] | None
    payer: str
    amount: int

    def subject(self, req: RefundCreate) -> Subject | None:
        """Whom screening looks at: the address that paid, a bank refund's account holder;
        None for a card or PayPal refund (back to the instrument that paid)."""
        if self.card is None:
            return Subject(self.payer)
        name = (req.bank_name or "").strip()
        if self.card[0] == "bank" and name:  # no name: create_in refuses it (bank_account_invalid)
            return Subject(None, name)
        return None


@runtime_checkable
class CheckoutSessions(Protocol):
    """A rail that can say which PaymentIntent paid a Stripe Checkout Session."""

    async def session_payment_intent(self, session_id: str) -> str | None: ...


async def _backup_attempt(session: AsyncSession, invoice_id: str) -> Attempt | None:
    """The confirmed attempt of a backup rail that paid the invoice, if one did."""
    stmt = select(Attempt).where(
        Attempt.payment_id == invoice_id,
        Attempt.rail != "ton",
        Attempt.status == AttemptStatus.CONFIRMED,
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def _session_unlearned(paid: Attempt | None) -> bool:
    """A Checkout Session confirmed before its PaymentIntent was recorded on the attempt."""
    return (
        paid is not None
        and paid.rail == "stripe"
        and str(paid.provider_ref or "").startswith("cs_")
        and not str((paid.details or {}).get("payment_intent") or "").startswith("pi_")
    )


async def _card_payment(session: AsyncSession, invoice_id: str) -> tuple[str, str, str] | None:
    """How a backup rail paid the invoice, if one did: (rail, the payout metadata key, the
    provider's payment: a Stripe PaymentIntent (of a Checkout Session too), a PayPal
    capture, a bank transfer's reference)."""
    paid = await _backup_attempt(session, invoice_id)
    if paid is None:
        return None
    mark = (paid.details or {}).get(SCREENING_MARK)
    if mark in (HELD_MARK, FROZEN_MARK):
        # Money screening set apart is not the merchant's to give back (payer_screening.py).
        raise Conflict(
            f"the {paid.rail} payment of this invoice is {mark} by AML/KYC screening: "
            "it cannot be refunded"
            + (" until an approver releases it" if mark == HELD_MARK else ""),
            code="refund_screening_hold",
        )
    if paid.rail == "stripe" and str(paid.provider_ref or "").startswith("pi_"):
        return "stripe", STRIPE_REFUND_OF, str(paid.provider_ref)
    if paid.rail == "stripe" and str(paid.provider_ref or "").startswith("cs_"):
        if _session_unlearned(paid):
            raise Conflict(
                f"no PaymentIntent is known for Checkout Session {paid.provider_ref} (Stripe "
                "reports none, or the Stripe rail is not configured): nothing to refund through",
                code="refund_payment_intent_unknown",
            )
        return "stripe", STRIPE_REFUND_OF, str(paid.details["payment_intent"])
    if paid.rail == "paypal" and (paid.details or {}).get("capture_id"):
        return "paypal", PAYPAL_REFUND_OF, str(paid.details["capture_id"])
    if paid.rail == "bank" and paid.provider_ref:
        return "bank", BANK_REFUND_OF, str(paid.provider_ref)
    raise Conflict(
        f"refunds of invoices paid on {paid.rail} are not supported yet",
        code="refund_rail_unsupported",
    )


class RefundService:
    """Creates and reads refunds of invoices (`POST/GET /v1/invoices/{id}/refunds`)."""

    def __init__(self, payments: PaymentService, rails: Mapping[str, object] | None = None):
        self.payments = payments
        self.rails = rails or {}

    async def create(
        self,
        principal: Principal,
        invoice_id: str,
        req: RefundCreate,
        ikey: IdempotencyKey | None,
        client_ip: str | None = None,
    ) -> Response:
        """Refund (part of) what the invoice received, to the address that paid it."""
        await self.payments.own_accounts()
        await self.payments.rates.ensure()
        await self.learn_session_payment_intent(principal, invoice_id)
        if (
            self.payments.screening is not None
            and (replay := await self.payments.replay(ikey)) is not None
        ):
            return replay  # a request seen before is answered as it was, not screened again
        screened = await self.screen(principal, invoice_id, req)
        reserved: list[Payment] = []

        async def work(session: AsyncSession) -> dict[str, Any]:
            reserved.clear()  # a rerun after a concurrent commit starts over
            await refuse_in_maintenance(session)
            refund, payout = await self.create_in(
                session, principal, invoice_id, req, screened=screened
            )
            await check_not_locked(session, principal.key_id, refund.destination, client_ip)
            reserved.append(payout)
            return RefundOut.of(refund).model_dump(mode="json")

        async def reserve(session: AsyncSession) -> None:
            await self.payments.reserve_volumes(session, principal, reserved)

        return await self.payments.idempotent(ikey, 201, work, reserve, take_turns=True)

    async def screen(
        self,
        principal: Principal,
        invoice_id: str,
        req: RefundCreate,
        requested_by: str | None = None,
    ) -> Screened | None:
        """AML/KYC screening of whom the refund pays (before its transaction: a provider may
        answer slowly): the address that paid on TON, the account holder (`bank_name`) of a
        bank refund. A card or PayPal refund goes back to the instrument that paid through
        its provider and is not screened. `blocked` is stored and raised (403
        `screening_blocked`); None when screening is off or there is nothing to screen."""
        if self.payments.screening is None:
            return None
        async with self.payments.db.transaction() as session:
            plan = await self._plan(session, principal, invoice_id, req, lock=False)
        subject = plan.subject(req)
        if subject is None:
            return None
        context = {
            "direction": "out",
            "asset": plan.invoice.asset,
            "amount": format_minor(plan.amount, plan.invoice.asset),
            "purpose": "refund",
        }
        param = "bank_name" if subject.address is None else None
        verdict = await self.payments.screen(
            requested_by or principal.identity, subject, context, REFUND_REQUEST, param
        )
        assert verdict is not None
        return subject, verdict

    async def learn_session_payment_intent(self, principal: Principal, invoice_id: str) -> None:
        """For an invoice paid through a Checkout Session confirmed before the attempt kept
        its PaymentIntent: ask Stripe (outside the refund's transaction) and record it."""
        async with self.payments.db.transaction() as session:
            invoice = await session.get(Payment, invoice_id)
            if invoice is None or invoice.account_id != principal.account_id:
                return
            paid = await _backup_attempt(session, invoice_id)
            if paid is None or not _session_unlearned(paid):
                return
            attempt_id, session_id = paid.id, str(paid.provider_ref)
        rail = self.rails.get("stripe")
        if not isinstance(rail, CheckoutSessions):
            return  # Stripe is not configured here: create_in answers 409
        intent = await rail.session_payment_intent(session_id)
        if intent is None:
            return
        async with self.payments.db.transaction() as session:
            attempt = await session.get(Attempt, attempt_id, with_for_update=True)
            assert attempt is not None
            attempt.details = {**attempt.details, "payment_intent": intent}

    async def _plan(
        self,
        session: AsyncSession,
        principal: Principal,
        invoice_id: str,
        req: RefundCreate,
        *,
        lock: bool,
    ) -> RefundPlan:
        """How the invoice was paid, whom the refund pays and how much (every refusal of a
        refund that does not fit). `lock`: the invoice row is locked first, so concurrent
        refunds of one invoice take turns (create_in); without it, a look (screen)."""
        invoice = await session.get(Payment, invoice_id, with_for_update=lock)
        if (
            invoice is None
            or invoice.direction != "in"
            or invoice.account_id != principal.account_id
        ):
            raise NotFound(f"no invoice {invoice_id!r}", param="id")
        deposits = list(
            (
                await session.execute(
                    select(TonDeposit)
                    .where(
                        TonDeposit.payment_id == invoice.id,
                        TonDeposit.status.in_(CREDITING_DEPOSIT_STATES),
                    )
                    .order_by(TonDeposit.lt)
                )
            ).scalars()
        )
        card = None if deposits else await _card_payment(session, invoice.id)
        if card is not None:
            if req.deposit is not None:
                raise InvalidRequest(
                    "this invoice was paid by card, not by deposits",
                    param="deposit",
                    code="deposit_invalid",
                )
            payer, received = card[2], invoice.amount
        else:
            _bank_account(req, "ton")
            payer = _payer_of(deposits, req.deposit)
            received = sum(d.amount for d in deposits if d.sender == payer)
        left = received - (await refunded_by_destination(session, invoice.id)).get(payer, 0)
        if req.amount is None:
            if left <= 0:
                raise Conflict(
                    "everything this payer sent is refunded already", code="nothing_to_refund"
                )
            amount = left
        else:
            amount = self.payments.parse_amount(invoice.asset, req.amount)
            if amount > left:
                raise RefundTooLarge(
                    f"at most {format_minor(max(left, 0), invoice.asset)} {invoice.asset} of "
                    "what this payer sent is left to refund",
                    param="amount",
                )
        return RefundPlan(invoice, card, payer, amount)

    async def create_in(
        self,
        session: AsyncSession,
        principal: Principal,
        invoice_id: str,
        req: RefundCreate,
        requested_by: str | None = None,
        *,
        screened: Screened | None = None,
    ) -> tuple[Refund, Payment]:
        """The refund and its payout, inside the caller's transaction (which must reserve the
        payout's daily volumes before it commits: `PaymentService.reserve_volumes`).
        `requested_by`: who asked, when not the principal's key (an operator's resolution).
        `screened`: what `screen` answered for this refund; with screening on, a refund whose
        payee was not screened (or changed since) is refused with 409 `screening_stale`."""
        plan = await self._plan(session, principal, invoice_id, req, lock=True)
        invoice, card, payer, amount = plan.invoice, plan.card, plan.payer, plan.amount
        subject = plan.subject(req)
        if (
            self.payments.screening is not None
            and subject is not None
            and (screened is None or screened[0] != subject)
        ):
            raise Conflict(
                "whom this refund pays changed since it was screened; send the request again",
                code="screening_stale",
            )
        now = clock.now()
        refund_id = new_id("re")
        request = PayoutCreate(
            amount=format_minor(amount, invoice.asset),
            asset=invoice.asset,
            destination=payer,
            description=f"refund {refund_id} of invoice {invoice.id}",
            metadata={"refund": refund_id, "invoice": invoice.id},
        )
        if card is None:
            checked = self.payments.check_payout(request)
        else:
            # Back to the card through its PaymentIntent: the payout limits of the asset
            # apply; the destination is the PaymentIntent, not an address.
            check_amount(self.payments.policy, invoice.asset, amount)
            request.metadata[card[1]] = card[2]
            request.metadata.update(_bank_account(req, card[0]))
            rate = self.payments.rates.fresh(invoice.asset)
            usdt = rate.usdt_equivalent(amount, invoice.asset) if rate is not None else 0
            checked = CheckedPayout(request, amount, usdt, rate)
        # A refund goes back to whoever paid: the key's allow-list of destinations is moot.
        principal.limits.check(invoice.asset, checked.usdt, None, valued=checked.rate is not None)
        payout = self.payments.new_payout(principal, checked, now)
        payout.requested_by = requested_by or principal.identity
        if card is not None:
            payout.route, payout.route_reason = card[0], "refund"
        await self.payments.add_payout(
            session,
            payout,
            reason="refund.reserved",
            screened=screened if subject is not None else None,
            stage=REFUND_REQUEST,
        )
        refund = Refund(
            id=refund_id,
            account_id=invoice.account_id,
            invoice_id=invoice.id,
            payout_id=payout.id,
            deposit_id=req.deposit,
            rail="ton" if card is None else card[0],
            asset=invoice.asset,
            amount=amount,
            destination=payer,
            reason=req.reason,
            status=RefundStatus.PENDING,
            requested_by=payout.requested_by,
            created_at=now,
            updated_at=now,
        )
        session.add(refund)
        await session.flush()
        emit(
            session,
            "refund.created",
            refund.account_id,
            RefundOut.of(refund).model_dump(mode="json"),
            invoice.id,
        )
        return refund, payout

    async def list(self, principal: Principal, invoice_id: str) -> dict[str, Any]:
        """The invoice's refunds, oldest first."""
        async with self.payments.db.transaction() as session:
            invoice = await session.get(Payment, invoice_id)
            if (
                invoice is None
                or invoice.direction != "in"
                or invoice.account_id != principal.account_id
            ):
                raise NotFound(f"no invoice {invoice_id!r}", param="id")
            rows = (
                await session.execute(
                    select(Refund)
                    .where(Refund.invoice_id == invoice_id)
                    .order_by(Refund.created_at, Refund.id)
                )
            ).scalars()
            return RefundList(data=[RefundOut.of(r) for r in rows]).model_dump(mode="json")

    async def get(self, principal: Principal, refund_id: str) -> dict[str, Any]:
        async with self.payments.db.transaction() as session:
            refund = await session.get(Refund, refund_id)
            if refund is None or refund.account_id != principal.account_id:
                raise NotFound(f"no refund {refund_id!r}", param="id")
            return RefundOut.of(refund).model_dump(mode="json")
