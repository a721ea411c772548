"""Use cases of payouts and invoices; each public method is one database transaction."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.chain.address import asset_workchain_refusal, check_network, raw_form
from tonrail.chain.links import explorer_template
from tonrail.chain.network import resolve_network
from tonrail.db import Database, Write, write_at_once
from tonrail.errors import (
    Conflict,
    InvalidAddress,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    TonrailError,
)
from tonrail.events.service import emit, event_write
from tonrail.ids import new_id
from tonrail.json_text import RenderedJson, render_json
from tonrail.ledger import rules as books
from tonrail.ledger.service import (
    available,
    entry_writes,
    has_balance,
    insufficient,
    is_balance_violation,
    post,
)
from tonrail.limits.rules import LimitPolicy, approvals_satisfied, check_amount, needs_approval
from tonrail.limits.service import (
    is_key_limit_violation,
    is_limit_violation,
    key_limit_exceeded,
    key_reservation_write,
    limit_exceeded,
    reservation_write,
    reserve_daily_volume,
    reserve_key_volume,
)
from tonrail.money import decimals_of, parse_minor
from tonrail.payments import repository as repo
from tonrail.payments.coalesce import GroupCommit
from tonrail.payments.models import Payment
from tonrail.payments.receipts import chain_facts
from tonrail.payments.rules import DEFAULT_TARGET_SECONDS, check_metadata, new_reference
from tonrail.payments.schemas import (
    FeeDecisionOut,
    InvoiceCreate,
    PaymentList,
    PaymentOut,
    PayoutCreate,
)
from tonrail.payments.states import PaymentStatus, initial_status, payment_transitions
from tonrail.payments.transitions import move_payment
from tonrail.rails.base import REFUND_OF_KEYS
from tonrail.rails.ton.models import TonOwnAccount
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.rails.ton.toncenter.models import GetMethodResult
from tonrail.rates import GetMethodReader, Rate, Rates, rate_source
from tonrail.screening.rules import Outcome, Subject, Verdict
from tonrail.screening.service import (
    PAYOUT_REQUEST,
    REVIEW_HOLD,
    Screening,
    decision_write,
    record_refusal,
    refusal,
    store_decision,
)
from tonrail.security import idempotency
from tonrail.security.api_keys import Principal
from tonrail.security.idempotency import IdempotencyKey
from tonrail.security.lockouts import check_not_locked, lockout_refusal
from tonrail.security.switches import refuse_in_maintenance, switch_refusal
from tonrail.security.two_person import refuse_approval_by_requester
from tonrail.settings import Settings
from tonrail.states import HoldReason

TON_ASSETS = frozenset({"TON", "USDT"})
# A payout held for a fresh rate is leased to this holder for this long (released earlier).
RATE_HOLDER = "rates"
RATE_HOLD = timedelta(days=3650)
# How long the list of our own accounts (ton_own_accounts) is trusted before it is re-read.
OWN_ACCOUNTS_REFRESH_S = 10.0


@dataclass(frozen=True, slots=True)
class Response:
    """What an endpoint sends back: a status code and a JSON body (maybe replayed)."""

    status: int
    body: dict[str, Any]
    replayed: bool = False
    text: RenderedJson | None = None  # `body` rendered, when it already was (`send_answer`)


@dataclass(frozen=True, slots=True)
class CheckedPayout:
    """A payout request that passed every check, with its amount in minor units and its
    USDT equivalent at `rate` (what limits and approvals count)."""

    req: PayoutCreate
    amount: int
    usdt: int
    # None: no fresh rate (rates.py); the payout is held (`rate_stale`) and valued, counted
    # against the limits and routed to approval once a fresh rate arrives (rate_holds.py).
    rate: Rate | None


def limit_policy(settings: Settings) -> LimitPolicy:
    from tonrail.limits.rules import AssetLimits

    return LimitPolicy(
        per_asset={
            "TON": AssetLimits(settings.limits_min_ton, settings.limits_max_ton),
            "USDT": AssetLimits(settings.limits_min_usdt, settings.limits_max_usdt),
            "USD": AssetLimits(settings.limits_min_usd, settings.limits_max_usd),
        },
        approval_threshold_usdt=settings.approval_threshold_usdt,
        approvals_required=settings.approvals_required,
        daily_volume_limit_usdt=settings.daily_volume_limit_usdt,
    )


# The fee optimizer's decision of each payout that has one (fees.service.fee_decisions_for).
# fees reads payments, so payments is handed this lookup from above instead of importing it.
FeeDecisions = Callable[[AsyncSession, Sequence[str]], Awaitable[Mapping[str, FeeDecisionOut]]]


class ToncenterOnFirstUse:
    """The TON rail's toncenter client (failover over every TON_API_URL, retries, error
    parsing) for RATE_SOURCE=dex, opened at the first get-method: a worker whose rail hands
    its own client (`PaymentService.read_pools_with`) never opens this one."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.client: ToncenterClient | None = None

    async def run_get_method(
        self, address: str, method: str, stack: list[Any] | None = None
    ) -> GetMethodResult:
        if self.client is None:
            network = resolve_network(self.settings)
            self.client = ToncenterClient.from_network(network, self.settings)
        return await self.client.run_get_method(address, method, stack)

    async def aclose(self) -> None:
        """Close the client if a read opened it."""
        if self.client is not None:
            await self.client.aclose()


class PaymentService:
    """Creates, reads, cancels and approves payments, posting ledger lines and outbox events.

    `fee_decisions` fills a payout's `fee_decision` (None: the field stays null, as it is
    for a payout the optimizer has not decided yet). `get_methods` reads the pool of
    RATE_SOURCE=dex (None: a toncenter client of the TON rail over every TON_API_URL).
    `groups`: the API process's group commit of single payouts (payments/coalesce.py;
    None: each payout writes alone)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        fee_decisions: FeeDecisions | None = None,
        get_methods: GetMethodReader | None = None,
        groups: GroupCommit | None = None,
    ):
        self.db = db
        self._fee_decisions = fee_decisions
        self.settings = settings
        self.policy = limit_policy(settings)
        # The toncenter client this service opens itself (closed by `aclose`), if any.
        self._pool_reader: ToncenterOnFirstUse | None = None
        if get_methods is None and settings.rate_source == "dex":
            get_methods = self._pool_reader = ToncenterOnFirstUse(settings)
        self.rates = Rates(settings, get_methods=get_methods)
        self.screening = Screening.of(settings)
        self._pay_to = settings.payment_processor_address or None
        self._network = resolve_network(settings)
        self._usdt_master = self._network.usdt_master
        self._explorer = explorer_template(self._network, settings.ton_explorer_url)
        self.groups = groups
        # Our hot wallet and jetton wallet (raw, upper case), as the TON worker recorded them.
        self._own: frozenset[str] = frozenset()
        self._own_read_at: float | None = None

    def read_pools_with(self, get_methods: GetMethodReader) -> None:
        """RATE_SOURCE=dex: read the pool with this client from now on. The worker's TON rail
        hands its own, so the process's toncenter calls share one rate limiter."""
        if self.settings.rate_source == "dex":
            self.rates.source = rate_source(self.settings, get_methods)

    async def aclose(self) -> None:
        """Close what this service opened: RATE_SOURCE=dex's toncenter client."""
        if self._pool_reader is not None:
            await self._pool_reader.aclose()

    def draws_on_balance(self, account_id: str) -> bool:
        """Whether the account's payouts must be covered by its balance (HOUSE_ACCOUNT_ID)."""
        return books.draws_on_balance(self.settings.house_account_id, account_id)

    async def own_accounts(self) -> frozenset[str]:
        """Our own accounts on chain, re-read at most every OWN_ACCOUNTS_REFRESH_S; payouts
        to them are refused by `check_payout` (which reads what this last returned)."""
        now = time.monotonic()
        if self._own_read_at is None or now - self._own_read_at > OWN_ACCOUNTS_REFRESH_S:
            async with self.db.engine.connect() as conn:
                rows = await conn.execute(select(TonOwnAccount.address))
                self._own = frozenset(str(a).upper() for a in rows.scalars())
            self._own_read_at = now
        return self._own

    # ---------------------------------------------------------------- idempotent writes
    async def idempotent(
        self,
        ikey: IdempotencyKey | None,
        status: int,
        work: Callable[[AsyncSession], Awaitable[dict[str, Any]]],
        last: Callable[[AsyncSession], Awaitable[None]] | None = None,
        *,
        take_turns: bool = False,
    ) -> Response:
        """Run `work` once per idempotency key, in one transaction with the key's record
        (the record commits with its effects), then `last` (e.g. the volume row every
        payout locks: touched last). A request seen before replays its first response.

        A unique index that refuses a write means a concurrent request committed first
        (the same key, or a key `work` writes itself): the whole transaction runs again
        and finds it. `take_turns`: on SQLite, this process's writers queue for the write
        lock first come first served (see `_turn`)."""
        for _ in range(3):
            try:
                async with _turn(self.db, take_turns), self.db.transaction() as session:
                    if ikey is not None:
                        record = await idempotency.find(session, ikey)
                        if record is not None:
                            return Response(record.status_code, record.response_body, True)
                    body = await work(session)
                    if ikey is not None:
                        idempotency.save(session, ikey, status, body)
                    if last is not None:
                        await last(session)
                    return Response(status, body)
            except IntegrityError:
                continue
            except TonrailError:
                # A request with the same key that committed while this one waited (e.g. for
                # the payout's row lock) answered it: replay that rather than the refusal.
                if (replay := await self.replay(ikey)) is not None:
                    return replay
                raise
        raise Conflict("the request raced with another one; retry it", code="concurrent_request")

    # ---------------------------------------------------------------- payouts
    def parse_amount(self, asset: str, amount: str) -> int:
        """A requested amount in minor units of `asset`: positive and within its limits."""
        decimals_of(asset)
        minor = parse_minor(amount, asset)
        if minor == 0:
            raise InvalidRequest(
                "amount must be greater than zero", param="amount", code="amount_invalid"
            )
        return minor

    def check_payout(self, req: PayoutCreate) -> CheckedPayout:
        """Every check of a payout request, in order: the one validation of
        `POST /v1/payouts` and of each item of `POST /v1/payouts/batch`."""
        asset = req.asset
        amount = self.parse_amount(asset, req.amount)
        if asset not in TON_ASSETS:
            raise InvalidRequest(
                f"payouts in {asset} are not supported yet; use TON or USDT",
                param="asset",
                code="asset_unsupported",
            )
        destination = check_network(req.destination, self._network, "destination")
        refusal = asset_workchain_refusal(destination.wc, asset)
        if refusal is not None:
            raise InvalidAddress(refusal, param="destination", code="address_workchain_unsupported")
        if raw_form(destination).upper() in self._own:
            raise InvalidRequest(
                "destination is this service's own hot wallet or jetton wallet; a payout to "
                "ourselves would move nothing",
                param="destination",
                code="destination_own_wallet",
            )
        check_amount(self.policy, asset, amount)
        check_metadata(req.metadata, self.settings.metadata_max_bytes)
        for reserved in REFUND_OF_KEYS:
            if reserved in req.metadata:
                raise InvalidRequest(
                    f"metadata key {reserved} is reserved for refunds",
                    param=f"metadata[{reserved}]",
                    code="metadata_invalid",
                )
        rate = self.rates.fresh(asset)
        if rate is None:
            return CheckedPayout(req, amount, 0, None)
        return CheckedPayout(req, amount, rate.usdt_equivalent(amount, asset), rate)

    def new_payout(self, principal: Principal, payout: CheckedPayout, now: datetime) -> Payment:
        """The (transient) payment of a checked payout, counted on `now`'s daily volume."""
        return Payment(**self.payout_values(principal, payout, now))

    def payout_values(
        self, principal: Principal, payout: CheckedPayout, now: datetime
    ) -> dict[str, Any]:
        """`new_payout`'s fields (Payment's attribute names) without the ORM object: the
        write paths insert them as a row (`repo.values_write`) and render them with
        `PaymentOut.of_new_payout`, which costs a fraction of building a mapped object."""
        req = payout.req
        held = payout.rate is None
        return dict(
            id=new_id("pay"),
            account_id=principal.account_id,
            direction="out",
            status=initial_status("out", not held and needs_approval(self.policy, payout.usdt)),
            hold_reason=HoldReason.RATE_STALE if held else None,
            # Held: no worker claims it until `release_rate_holds` values it.
            locked_by=RATE_HOLDER if held else None,
            locked_until=now + RATE_HOLD if held else None,
            asset=req.asset,
            amount=payout.amount,
            usdt_equivalent=payout.usdt,
            rate=str(payout.rate.usdt_per_unit) if payout.rate is not None else "",
            rate_at=payout.rate.at if payout.rate is not None else now,
            volume_day=now.date().isoformat(),
            counterparty=req.destination.strip(),
            priority=req.priority,
            target_confirmation_seconds=req.target_confirmation_seconds
            or DEFAULT_TARGET_SECONDS[req.priority],
            description=req.description,
            metadata_=req.metadata,
            requested_by=principal.identity,
            created_at=now,
            updated_at=now,
        )

    async def create_payout(
        self,
        principal: Principal,
        req: PayoutCreate,
        ikey: IdempotencyKey | None,
        client_ip: str | None = None,
        *,
        again: bool = False,
    ) -> Response:
        """Validate, reserve daily volume, and record a payout (queued or awaiting approval).

        Refused with 423 while the key, the destination or `client_ip` is locked out."""
        await self.own_accounts()
        await self.rates.ensure()
        checked = self.check_payout(req)
        principal.limits.check(
            req.asset, checked.usdt, req.destination, valued=checked.rate is not None
        )
        if self.screening is not None and (replay := await self.replay(ikey)) is not None:
            return replay  # a request seen before is answered as it was, not screened again
        screened = await self._screen_payout(principal, checked)
        now = clock.now()
        payment = self.payout_values(principal, checked, now)
        self.hold_values_for_review(payment, screened)
        payment_id = payment["id"]
        asset, amount, usdt = payment["asset"], payment["amount"], payment["usdt_equivalent"]
        day = now.date().isoformat()
        limit = self.policy.daily_volume_limit_usdt
        body = PaymentOut.of_new_payout(payment).model_dump(mode="json")
        text = render_json(body)  # stored twice and sent once: rendered once (json_text.py)
        covered = self.draws_on_balance(principal.account_id)
        try:
            _, entry = entry_writes(
                "payout.reserved",
                books.payout_reserved(principal.account_id, asset, amount),
                payment_id,
                dialect=self.db.dialect,
                covered=covered,
            )
            # Everything the payout writes, as one atomic write (one statement on
            # PostgreSQL). The idempotency record goes first: a concurrent duplicate waits
            # there, before it holds anything. The volume row, which every payout locks,
            # goes last.
            writes = [
                *([idempotency.record_write(ikey, 201, text)] if ikey is not None else []),
                repo.values_write(payment),
                *entry,
                event_write("payout.created", principal.account_id, text, payment_id),
                *self.key_volume_writes(principal, day, usdt),
                *(
                    [
                        decision_write(
                            screened,
                            stage=PAYOUT_REQUEST,
                            subject=Subject(payment["counterparty"]),
                            payment_id=payment_id,
                            requested_by=principal.identity,
                            now=now,
                        )
                    ]
                    if screened is not None
                    else []
                ),
                reservation_write(self.db.dialect, day, usdt, limit),
            ]
            locked = lockout_refusal(principal.key_id, req.destination, client_ip)
            refusals = [switch_refusal("maintenance"), *([locked] if locked else [])]
            if covered and not await self._has_balance(principal.account_id, asset):
                insufficient(asset, 0, amount)

            async def write_alone() -> bool:
                async with self.db.one_write() as conn:
                    return await write_at_once(conn, writes, refuse_if=refusals)

            for attempt in range(3):
                if attempt == 0 and self.groups is not None:
                    # Maybe in one transaction with concurrent payouts (payments/coalesce.py);
                    # whatever that group's fate, this answers as `write_alone` would.
                    key = (ikey.account_id, ikey.key) if ikey is not None else None
                    written = await self.groups.write(writes, refusals, key, write_alone)
                else:
                    written = await write_alone()
                if written:
                    return Response(201, body, text=text)
                # Refused (maintenance or a lockout): a replay answers first, else say why.
                if (replay := await self.replay(ikey)) is not None:
                    return replay
                async with self.db.transaction() as session:
                    await refuse_in_maintenance(session)
                    await check_not_locked(session, principal.key_id, req.destination, client_ip)
                # Whatever refused has ended since: write again.
            raise Conflict(
                "the request kept racing with lockouts; retry it", code="concurrent_request"
            )
        except TonrailError:
            # A request seen before replays its first response, whatever refuses work now.
            if (replay := await self.replay(ikey)) is not None:
                return replay
            raise
        except IntegrityError as exc:
            # The same key committed first (replay it), or the day's volume is used up.
            if (replay := await self.replay(ikey)) is not None:
                return replay
            if is_key_limit_violation(exc) and principal.limits.max_daily_usdt is not None:
                key_limit_exceeded(principal.limits.max_daily_usdt)
            if is_limit_violation(exc):
                limit_exceeded(day, limit)
            if is_balance_violation(exc):
                async with self.db.transaction() as session:
                    left = await available(session, principal.account_id, asset)
                insufficient(asset, left, amount)
            if ikey is not None and not again:
                # The key's record had expired (`replay` removed it): a new request now.
                return await self.create_payout(principal, req, ikey, client_ip, again=True)
            raise

    def key_volume_writes(self, principal: Principal, day: str, usdt: int) -> list[Write]:
        """The reservation of the key's own daily limit, if it has one."""
        daily = principal.limits.max_daily_usdt
        if daily is None:
            return []
        return [key_reservation_write(self.db.dialect, principal.key_id, day, usdt, daily)]

    async def reserve_key_volume(
        self, session: AsyncSession, principal: Principal, day: str, usdt: int
    ) -> None:
        """`key_volume_writes` inside a transaction: KeyLimitExceeded changes nothing."""
        daily = principal.limits.max_daily_usdt
        if daily is not None and usdt:
            await reserve_key_volume(session, principal.key_id, day, usdt, daily)

    async def _has_balance(self, account_id: str, asset: str) -> bool:
        async with self.db.engine.connect() as conn:
            return await has_balance(conn, account_id, asset)

    async def replay(self, ikey: IdempotencyKey | None) -> Response | None:
        """The saved response of an earlier request with this key (409 if its body differed)."""
        if ikey is None:
            return None
        async with self.db.transaction() as session:
            record = await idempotency.find(session, ikey)
        if record is None:
            return None
        return Response(record.status_code, record.response_body, True)

    # ---------------------------------------------------------------- invoices
    async def create_invoice(
        self, principal: Principal, req: InvoiceCreate, ikey: IdempotencyKey | None
    ) -> Response:
        """Record an invoice the customer pays on chain with the reference as comment."""
        await self.rates.ensure()  # an API process that only takes invoices reads rates too
        asset = req.asset
        amount = self.parse_amount(asset, req.amount)
        if not self.rates.has(asset):  # no USDT value: no limits could hold it
            raise InvalidRequest(
                f"invoices in {asset} are not supported; use TON, USDT or USD",
                param="asset",
                code="asset_unsupported",
            )
        check_amount(self.policy, asset, amount)
        check_metadata(req.metadata, self.settings.metadata_max_bytes)

        async def work(session: AsyncSession) -> dict[str, Any]:
            await refuse_in_maintenance(session)
            now = clock.now()
            rate = self.rates.fresh(asset)
            if rate is None:  # the price source is down: no value to record, never a guess
                raise ServiceUnavailable(
                    f"no fresh {asset} rate to value this invoice; retry later",
                    param="asset",
                    code="rate_stale",
                )
            payment = Payment(
                id=new_id("pay"),
                account_id=principal.account_id,
                direction="in",
                status=initial_status("in", False),
                asset=asset,
                amount=amount,
                usdt_equivalent=rate.usdt_equivalent(amount, asset),
                rate=str(rate.usdt_per_unit),
                rate_at=rate.at,
                reference=new_reference(),
                priority="normal",
                target_confirmation_seconds=DEFAULT_TARGET_SECONDS["normal"],
                description=req.description,
                metadata_=req.metadata,
                requested_by=principal.identity,
                expires_at=now + timedelta(seconds=req.expires_in_seconds),
                created_at=now,
                updated_at=now,
            )
            session.add(payment)
            await session.flush()
            body = self._out(payment)
            emit(session, "invoice.created", payment.account_id, body, payment.id)
            return body

        return await self.idempotent(ikey, 201, work)

    # ---------------------------------------------------------------- reads
    async def get(self, principal: Principal, payment_id: str, direction: str) -> dict[str, Any]:
        async with self.db.transaction() as session:
            payment = await self._load(session, principal, payment_id, direction)
            return await self._render(session, payment)

    async def view(self, session: AsyncSession, payment_id: str) -> dict[str, Any] | None:
        """The payment as `get` returns it, read in the caller's transaction (the data of
        the events merchants receive: notify/publish.py); None if there is none."""
        payment = await session.get(Payment, payment_id)
        return None if payment is None else await self._render(session, payment)

    async def invoice_by_id(self, invoice_id: str) -> dict[str, Any] | None:
        """An invoice as `get` returns it, found by its id alone, whatever the account (the
        hosted checkout page: the unguessable id is the customer's capability); None for an
        unknown id or a payout."""
        async with self.db.transaction() as session:
            payment = await session.get(Payment, invoice_id)
            if payment is None or payment.direction != "in":
                return None
            return await self._render(session, payment)

    async def list(
        self,
        principal: Principal,
        direction: str,
        limit: int,
        starting_after: str | None,
        status: str | None,
    ) -> dict[str, Any]:
        if not 1 <= limit <= self.settings.page_max_limit:
            raise InvalidRequest(
                f"limit must be between 1 and {self.settings.page_max_limit}", param="limit"
            )
        if status is not None and status not in payment_transitions(direction):
            raise InvalidRequest(
                f"status must be one of {', '.join(payment_transitions(direction))}",
                param="status",
                code="parameter_invalid",
            )
        async with self.db.transaction() as session:
            cursor = None
            if starting_after is not None:
                cursor = await repo.get(session, starting_after, principal.account_id)
                if cursor is None or cursor.direction != direction:
                    raise InvalidRequest(
                        f"starting_after {starting_after!r} is not one of your objects",
                        param="starting_after",
                        code="cursor_invalid",
                    )
            rows, more = await repo.page(
                session, principal.account_id, direction, limit, cursor, status
            )
            facts = await chain_facts(session, rows)
            return PaymentList(
                data=[
                    PaymentOut.of(
                        p,
                        pay_to=self._pay_to,
                        usdt_master=self._usdt_master,
                        facts=facts.get(p.id),
                        explorer=self._explorer,
                    )
                    for p in rows
                ],
                has_more=more,
            ).model_dump(mode="json")

    # ---------------------------------------------------------------- cancel / approve
    async def cancel(
        self, principal: Principal, payment_id: str, direction: str, ikey: IdempotencyKey | None
    ) -> Response:
        """Cancel a payout that has not started moving money, or an open invoice."""

        async def work(session: AsyncSession) -> dict[str, Any]:
            payment = await self._load(session, principal, payment_id, direction)
            await move_payment(session, payment, PaymentStatus.CANCELED, actor=principal.identity)
            return await self._render(session, payment)

        return await self.idempotent(ikey, 200, work)

    async def approve(
        self, principal: Principal, payment_id: str, ikey: IdempotencyKey | None
    ) -> Response:
        """Record one approval; the payout is queued once enough distinct approvers agree."""
        if "payouts:approve" not in principal.scopes:
            raise PermissionDenied(
                "this API key may not approve payouts (scope payouts:approve)",
                code="scope_missing",
            )
        return await self.idempotent(
            ikey,
            200,
            lambda s: self.approve_in(s, principal.account_id, payment_id, principal.identity),
        )

    async def approve_in(
        self, session: AsyncSession, account_id: str | None, payment_id: str, approver: str
    ) -> dict[str, Any]:
        """Approve inside a transaction (shared by the API and the dashboard).

        One step per approval: the payout's row is locked first, so approvals of one payout
        take turns, each counts every approval committed before it, and exactly the one that
        brings the distinct approvers to `approvals_required` queues the payout. A second
        approval by the same approver is `409 already_approved` and writes nothing."""
        payment = await repo.get_for_update(session, payment_id, account_id)
        if payment is None or payment.direction != "out":
            raise NotFound(f"no payout {payment_id!r}", param="id")
        if payment.status != PaymentStatus.REQUIRES_APPROVAL:
            raise Conflict(
                f"payout is {payment.status}, not waiting for approval",
                code="not_awaiting_approval",
            )
        refuse_approval_by_requester(approver, payment.requested_by, "the requester of a payout")
        if not await repo.add_approval(session, payment.id, approver, clock.now()):
            raise Conflict("you have already approved this payout", code="already_approved")
        emit(
            session,
            "payout.approval_added",
            payment.account_id,
            {"id": payment.id, "approver": approver},
            payment.id,
        )
        approvers = await repo.approvers(session, payment.id)
        if approvals_satisfied(self.policy, payment.requested_by, approvers):
            # With a treasury, what needed approvers is paid by a multisig order (the chain
            # asks its own approvers again); the hot wallet's loops never take it.
            route = (
                {"route": "treasury", "route_reason": "above_approval_threshold"}
                if self.settings.treasury_address.strip() and payment.asset in ("TON", "USDT")
                else None
            )
            await move_payment(session, payment, PaymentStatus.QUEUED, actor=approver, values=route)
        return await self._render(session, payment, approvers)

    async def screen(
        self,
        requested_by: str,
        subject: Subject,
        context: dict[str, Any],
        stage: str,
        param: str | None = "destination",
    ) -> Verdict | None:
        """AML/KYC screening of where a payout goes (None: screening is off). Called before
        any write transaction (a provider may answer slowly). A `blocked` verdict is stored
        with the refusal counted (alert `screening_blocked`) and raised as 403
        `screening_blocked`; `clear` and `review` are returned, for the caller to store with
        the payout it decided (`add_payout`, `decision_write`)."""
        if self.screening is None:
            return None
        verdict = await self.screening.decide(subject, context)
        if verdict.outcome != Outcome.BLOCKED:
            return verdict
        async with self.db.transaction() as session:
            await record_refusal(session, verdict, subject, requested_by, stage)
        raise refusal(verdict, param)

    async def _screen_payout(self, principal: Principal, checked: CheckedPayout) -> Verdict | None:
        req = checked.req
        context = {"direction": "out", "asset": req.asset, "amount": req.amount}
        return await self.screen(
            principal.identity, Subject(req.destination.strip()), context, PAYOUT_REQUEST
        )

    @staticmethod
    def hold_for_review(payment: Payment, screened: Verdict | None) -> None:
        """A `review` verdict holds the new payout for approvers (the Approvals page),
        whatever its amount."""
        if screened is not None and screened.outcome == Outcome.REVIEW:
            payment.status = PaymentStatus.REQUIRES_APPROVAL
            payment.hold_reason = payment.hold_reason or REVIEW_HOLD

    @staticmethod
    def hold_values_for_review(payment: dict[str, Any], screened: Verdict | None) -> None:
        """`hold_for_review` for a new payout's `payout_values`."""
        if screened is not None and screened.outcome == Outcome.REVIEW:
            payment["status"] = PaymentStatus.REQUIRES_APPROVAL
            payment["hold_reason"] = payment["hold_reason"] or REVIEW_HOLD

    async def add_payout(
        self,
        session: AsyncSession,
        payout: Payment,
        *,
        reason: str = "payout.reserved",
        screened: tuple[Subject, Verdict] | None = None,
        stage: str = PAYOUT_REQUEST,
    ) -> dict[str, Any]:
        """Write a new payout inside the caller's transaction, as `create_payout` writes
        one: held for review if screening said so, its row, its reservation in the books
        (`reason`), its `payout.created` event and its screening decision. The caller
        reserves the daily volumes (`reserve_volumes`) before it commits. Returns the
        payout as the API renders it."""
        if screened is not None:
            self.hold_for_review(payout, screened[1])
        session.add(payout)
        await session.flush()
        await post(
            session,
            reason,
            books.payout_reserved(payout.account_id, payout.asset, payout.amount),
            payout.id,
            covered=self.draws_on_balance(payout.account_id),
        )
        body = PaymentOut.of(payout).model_dump(mode="json")
        emit(session, "payout.created", payout.account_id, body, payout.id)
        if screened is not None:
            await store_decision(
                session,
                screened[1],
                stage=stage,
                subject=screened[0],
                payment_id=payout.id,
                requested_by=payout.requested_by,
            )
        return body

    async def reserve_volumes(
        self, session: AsyncSession, principal: Principal, payouts: Sequence[Payment]
    ) -> None:
        """Count new payouts on the key's own daily limit and the service's daily volume,
        each on its day, inside the caller's transaction (touched last: every payout locks
        the volume row)."""
        for payout in payouts:
            day = payout.volume_day or ""
            await self.reserve_key_volume(session, principal, day, payout.usdt_equivalent)
            await reserve_daily_volume(
                session, day, payout.usdt_equivalent, self.policy.daily_volume_limit_usdt
            )

    # ---------------------------------------------------------------- helpers
    async def _load(
        self, session: AsyncSession, principal: Principal, payment_id: str, direction: str
    ) -> Payment:
        payment = await repo.get(session, payment_id, principal.account_id)
        if payment is None or payment.direction != direction:
            kind = "payout" if direction == "out" else "invoice"
            raise NotFound(f"no {kind} {payment_id!r}", param="id")
        return payment

    def _out(self, payment: Payment) -> dict[str, Any]:
        return PaymentOut.of(
            payment, pay_to=self._pay_to, usdt_master=self._usdt_master
        ).model_dump(mode="json")

    async def _render(
        self, session: AsyncSession, payment: Payment, approvals: Sequence[str] | None = None
    ) -> dict[str, Any]:
        approvers = await repo.approvers(session, payment.id) if approvals is None else [*approvals]
        attempts = list(await repo.attempts(session, payment.id))
        decision = (
            (await self._fee_decisions(session, [payment.id])).get(payment.id)
            if payment.direction == "out" and self._fee_decisions is not None
            else None
        )
        facts = (await chain_facts(session, [payment])).get(payment.id)
        return PaymentOut.of(
            payment,
            approvers,
            attempts,
            self._pay_to,
            self._usdt_master,
            decision,
            facts,
            self._explorer,
        ).model_dump(mode="json")


_TURNS: weakref.WeakKeyDictionary[Database, asyncio.Lock] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def _turn(db: Database, take: bool) -> AsyncIterator[None]:
    """On SQLite, this process's writers take turns for the write lock first come first
    served, instead of racing for it in SQLite's busy handler (which is not fair: under a
    stream of large batches one can wait past the busy timeout). PostgreSQL needs no turns."""
    if not take or db.dialect != "sqlite":
        yield
        return
    async with _TURNS.setdefault(db, asyncio.Lock()):
        yield
