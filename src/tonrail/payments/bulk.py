"""Many payouts at once: the batch endpoint's use case, and bulk state changes for rails.

`POST /v1/payouts/batch` creates up to PAYOUTS_BATCH_MAX payouts in one transaction, each
exactly as `POST /v1/payouts` would (same validation, limits, approvals, books, events);
one bad item refuses the whole batch and writes nothing. Each item may carry its own
idempotency key, so a client can re-send a batch after a timeout without paying twice.

AML/KYC screening keeps that rule: every item not answered from its own key is screened
before the transaction; one `blocked` item refuses the whole batch (403 `screening_blocked`,
every blocked item named under `items`, only the decisions stored), and a `review` item is
created held for approvers (`requires_approval`, hold_reason `screening_review`) beside the
others, each decision stored with its payout.

Validation and the idempotency wrapper are `PaymentService`'s (`check_payout`,
`idempotent`): a batch item passes exactly the checks of a single payout.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.chain.address import counterparty_key
from tonrail.errors import (
    Conflict,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidRequest,
    TonrailError,
)
from tonrail.events.service import OUTBOX, event_write
from tonrail.ledger import rules as books
from tonrail.ledger.service import available, post_many
from tonrail.limits.models import DailyVolume
from tonrail.limits.service import reserve_daily_volume
from tonrail.payments import repository as repo
from tonrail.payments.schemas import PaymentOut, PayoutCreate
from tonrail.payments.service import CheckedPayout, PaymentService, Response
from tonrail.screening.rules import Outcome, Subject, Verdict
from tonrail.screening.service import PAYOUT_REQUEST, record_refusal, refusal, store_decision
from tonrail.security import idempotency
from tonrail.security.api_keys import Principal
from tonrail.security.idempotency import KEY_PATTERN, IdempotencyKey, well_formed_key
from tonrail.security.lockouts import SubjectLocked, check_not_locked, in_force
from tonrail.security.models import IdempotencyRecord, Lockout
from tonrail.security.switches import refuse_in_maintenance

ITEM_KEY_PREFIX = "payouts.batch:"  # item keys live beside request keys, in their own space
ITEM_KEY_MAX = 200
# Items screened at once (a screening API answers each over HTTP; a batch holds up to 500).
SCREENING_CONCURRENCY = 16


# ------------------------------------------------------------------------- API shapes
ItemKey = Annotated[
    str, WithJsonSchema({"type": "string", "pattern": KEY_PATTERN, "maxLength": ITEM_KEY_MAX})
]


class PayoutBatchItem(PayoutCreate):
    idempotency_key: ItemKey | None = Field(
        default=None,
        description="this item's own key: re-sending it with the same fields returns the "
        "payout it created instead of a new one",
    )


class PayoutBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payouts: list[PayoutBatchItem] = Field(description="1 to PAYOUTS_BATCH_MAX payouts")


class PayoutBatchOut(BaseModel):
    object: str = "payout_batch"
    count: int
    created: int
    replayed: list[int] = Field(description="indexes of items answered from their own key")
    data: list[PaymentOut]


class BatchRejected(TonrailError):
    """A batch refused because of its items: the first item's error (its `param` names the
    item, `payouts.<index>.<field>`), and under `items` the error of every bad item."""

    def __init__(self, errors: Sequence[tuple[int, TonrailError]]):
        index, first = errors[0]
        super().__init__(first.message, param=_item_param(index, first.param), code=first.code)
        self.status = first.status
        self.items = [
            {
                "index": i,
                "code": e.code,
                "message": e.message,
                "param": _item_param(i, e.param),
            }
            for i, e in errors
        ]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "items": self.items}


def _item_param(index: int, param: str | None) -> str:
    return f"payouts.{index}" + (f".{param}" if param else "")


# ------------------------------------------------------------------------- the use case
@dataclass(frozen=True, slots=True)
class _Item:
    index: int
    payout: CheckedPayout
    key: IdempotencyKey | None  # the item's own key (prefixed), if it has one


def _item_fingerprint(req: PayoutBatchItem) -> str:
    fields = req.model_dump(mode="json", exclude={"idempotency_key"})
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(b"POST /v1/payouts/batch item\n" + canonical.encode()).hexdigest()


class BulkPayouts:
    """`POST /v1/payouts/batch`: the single-payout rules of `PaymentService`, many at once."""

    def __init__(self, payments: PaymentService):
        self.payments = payments
        self.settings = payments.settings

    def _validate(self, index: int, principal: Principal, req: PayoutBatchItem) -> _Item:
        """The checks of `POST /v1/payouts` for one item, then its own key."""
        payout = self.payments.check_payout(req)
        principal.limits.check(
            req.asset, payout.usdt, req.destination, valued=payout.rate is not None
        )
        account_id = principal.account_id
        key = req.idempotency_key
        if key is not None and not well_formed_key(key, ITEM_KEY_MAX):
            raise InvalidRequest(
                f"idempotency_key must be 1 to {ITEM_KEY_MAX} printable ASCII characters",
                param="idempotency_key",
                code="idempotency_key_invalid",
            )
        ikey = (
            IdempotencyKey(
                account_id,
                ITEM_KEY_PREFIX + key,
                _item_fingerprint(req),
                self.settings.idempotency_ttl_hours,
            )
            if key is not None
            else None
        )
        return _Item(index, payout, ikey)

    def validate(self, principal: Principal, batch: PayoutBatchCreate) -> list[_Item]:
        """Every item checked; all bad items reported at once, nothing written."""
        size = len(batch.payouts)
        if size == 0:
            raise InvalidRequest(
                "a batch needs at least one payout", param="payouts", code="batch_empty"
            )
        limit = self.settings.payouts_batch_max
        if size > limit:
            raise InvalidRequest(
                f"a batch holds at most {limit} payouts, this one has {size}",
                param="payouts",
                code="batch_too_large",
            )
        items: list[_Item] = []
        errors: list[tuple[int, TonrailError]] = []
        seen: dict[str, int] = {}
        for i, req in enumerate(batch.payouts):
            try:
                item = self._validate(i, principal, req)
            except TonrailError as exc:
                errors.append((i, exc))
                continue
            if item.key is not None:
                if item.key.key in seen:
                    errors.append(
                        (
                            i,
                            InvalidRequest(
                                f"idempotency_key repeats the key of item {seen[item.key.key]}",
                                param="idempotency_key",
                                code="idempotency_key_duplicate",
                            ),
                        )
                    )
                    continue
                seen[item.key.key] = i
            items.append(item)
        if errors:
            raise BatchRejected(errors)
        return items

    async def create(
        self,
        principal: Principal,
        batch: PayoutBatchCreate,
        ikey: IdempotencyKey | None,
        client_ip: str | None = None,
    ) -> Response:
        """Create every payout of the batch in one transaction, or none of them; under the
        request's Idempotency-Key as `POST /v1/payouts`, and each item under its own."""
        account = principal.account_id
        await self.payments.own_accounts()
        await self.payments.rates.ensure()
        items = self.validate(principal, batch)
        if (
            self.payments.screening is not None
            and (replay := await self.payments.replay(ikey)) is not None
        ):
            return replay  # a batch seen before is answered as it was, not screened again
        screened = await self._screen(principal, items)
        now = clock.now()
        day = now.date().isoformat()
        policy = self.payments.policy
        fresh: list[_Item] = []  # the items this run creates (not replayed)

        async def work(session: AsyncSession) -> dict[str, Any]:
            await refuse_in_maintenance(session)
            await check_not_locked(session, principal.key_id, None, client_ip)
            await _refuse_locked_destinations(session, items)
            known = await _item_records(session, account, items)
            fresh.clear()  # a rerun after a concurrent commit starts over
            bodies: list[dict[str, Any]] = []
            replayed: list[int] = []
            entries: list[tuple[str, list[books.Line], str | None]] = []
            # Rows, not ORM objects: each table's rows go in one executemany (the unit of
            # work's per-object bookkeeping cost more CPU than everything else a batch does).
            records: list[Mapping[str, Any]] = []
            payments: list[Mapping[str, Any]] = []
            decisions: list[tuple[str, Subject, Verdict]] = []
            events: list[Mapping[str, Any]] = []
            for item in items:
                record = known.get(item.key.key) if item.key is not None else None
                if record is not None:
                    # Saved by an earlier version maybe: rendered as the API renders it now.
                    body = PaymentOut.model_validate(record.response_body).model_dump(mode="json")
                    bodies.append(body)
                    replayed.append(item.index)
                    continue
                payment = self.payments.payout_values(principal, item.payout, now)
                verdict = screened.get(item.index)
                if verdict is None and self.payments.screening is not None:
                    # Its key's record was there when the batch was screened, and is gone.
                    raise Conflict(
                        "an item's idempotency record expired while the batch was screened; "
                        "send the batch again",
                        code="concurrent_request",
                    )
                payment_id = payment["id"]
                if verdict is not None:
                    self.payments.hold_values_for_review(payment, verdict[1])
                    decisions.append((payment_id, *verdict))
                payments.append(repo.values_write(payment).values)
                entries.append(
                    (
                        "payout.reserved",
                        books.payout_reserved(account, payment["asset"], payment["amount"]),
                        payment_id,
                    )
                )
                body = PaymentOut.of_new_payout(payment).model_dump(mode="json")
                events.append(event_write("payout.created", account, body, payment_id).values)
                if item.key is not None:
                    records.append(idempotency.record_write(item.key, 201, body).values)
                bodies.append(body)
                fresh.append(item)
            # As `POST /v1/payouts`: the keys' records first (a concurrent duplicate waits
            # there, before it holds anything), then the payouts and what refers to them.
            if records:
                await session.execute(insert(idempotency.RECORDS), records)
            if payments:
                await session.execute(insert(repo.PAYMENTS), payments)
            for decided_id, subject, decision in decisions:
                await store_decision(
                    session,
                    decision,
                    stage=PAYOUT_REQUEST,
                    subject=subject,
                    payment_id=decided_id,
                    requested_by=principal.identity,
                )
            if events:
                await session.execute(insert(OUTBOX), events)
            # The account balances last (before the day's volume, `reserve`): every batch and
            # payout of the account waits for their rows until this transaction commits.
            covered = self.payments.draws_on_balance(account)
            try:
                await post_many(session, entries, covered=covered, balances_last=True)
            except InsufficientBalance as exc:
                raise await _first_uncovered(session, account, fresh, exc) from None
            # The fields of PayoutBatchOut, in its order; every body is a PaymentOut dump.
            return {
                "object": "payout_batch",
                "count": len(items),
                "created": len(fresh),
                "replayed": replayed,
                "data": bodies,
            }

        async def reserve(session: AsyncSession) -> None:
            # Each item counts as if posted alone, in order; all of them or none.
            total = sum(i.payout.usdt for i in fresh)
            if not total:
                return
            try:
                await self.payments.reserve_key_volume(session, principal, day, total)
            except TonrailError as exc:
                # The first item past the key's own daily limit, as for the day's below.
                raise BatchRejected([(fresh[0].index, exc)]) from None
            try:
                await reserve_daily_volume(session, day, total, policy.daily_volume_limit_usdt)
            except TonrailError as exc:
                used = (
                    await session.execute(
                        select(DailyVolume.used_usdt).where(DailyVolume.day == day)
                    )
                ).scalar_one_or_none() or 0
                running = used
                for item in fresh:
                    running += item.payout.usdt
                    if running > policy.daily_volume_limit_usdt:
                        raise BatchRejected([(item.index, exc)]) from None
                raise

        return await self.payments.idempotent(ikey, 201, work, reserve, take_turns=True)

    async def _screen(
        self, principal: Principal, items: Sequence[_Item]
    ) -> dict[int, tuple[Subject, Verdict]]:
        """Every item the batch may create (not answered from its own key) screened, by
        index; one or more `blocked` refuse the batch, with their decisions stored."""
        screening = self.payments.screening
        if screening is None:
            return {}
        async with self.payments.db.transaction() as session:
            known = await _item_records(session, principal.account_id, items)
        slots = asyncio.Semaphore(SCREENING_CONCURRENCY)

        async def one(item: _Item) -> tuple[int, tuple[Subject, Verdict]]:
            req = item.payout.req
            subject = Subject(req.destination.strip())
            context = {"direction": "out", "asset": req.asset, "amount": req.amount}
            async with slots:
                return item.index, (subject, await screening.decide(subject, context))

        todo = [i for i in items if i.key is None or i.key.key not in known]
        verdicts = dict(await asyncio.gather(*(one(i) for i in todo)))
        blocked = [(i, s, v) for i, (s, v) in verdicts.items() if v.outcome == Outcome.BLOCKED]
        if blocked:
            async with self.payments.db.transaction() as session:
                for _, subject, verdict in blocked:
                    await record_refusal(
                        session, verdict, subject, principal.identity, PAYOUT_REQUEST
                    )
            raise BatchRejected([(i, refusal(v)) for i, _, v in blocked])
        return verdicts


async def _first_uncovered(
    session: AsyncSession, account: str, fresh: Sequence[_Item], exc: InsufficientBalance
) -> BatchRejected:
    """The refusal naming the first item (in order) the balance of its asset cannot cover."""
    running: dict[str, int] = {}
    for item in fresh:
        asset = item.payout.req.asset
        if asset not in running:
            running[asset] = await available(session, account, asset)
        running[asset] -= item.payout.amount
        if running[asset] < 0:
            return BatchRejected([(item.index, exc)])
    return BatchRejected([(fresh[0].index, exc)])


async def _refuse_locked_destinations(session: AsyncSession, items: Sequence[_Item]) -> None:
    """423 `counterparty_locked` naming the first item whose destination is locked."""
    keys = {counterparty_key(i.payout.req.destination): i.index for i in reversed(items)}
    rows = (
        await session.execute(
            select(Lockout.subject).where(
                in_force(clock.now()),
                Lockout.subject_kind == "counterparty",
                Lockout.subject.in_(list(keys)),
            )
        )
    ).scalars()
    locked = sorted(keys[s] for s in rows if s in keys)
    if locked:
        raise BatchRejected(
            [
                (
                    i,
                    SubjectLocked(
                        "this destination is locked after repeated failures; an administrator "
                        "must unlock it (tonrail lockouts unlock)",
                        param="destination",
                        code="counterparty_locked",
                    ),
                )
                for i in locked
            ]
        )


async def _item_records(
    session: AsyncSession, account_id: str, items: Sequence[_Item]
) -> dict[str, IdempotencyRecord]:
    """Records of the items' own keys; 409 for a key used with other fields."""
    keyed = {i.key.key: i.key for i in items if i.key is not None}
    index = {i.key.key: i.index for i in items if i.key is not None}
    if not keyed:
        return {}
    rows = (
        await session.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.account_id == account_id,
                IdempotencyRecord.key.in_(list(keyed)),
            )
        )
    ).scalars()
    found = {r.key: r for r in rows}
    clashes = sorted(
        index[k] for k, r in found.items() if r.request_fingerprint != keyed[k].fingerprint
    )
    if clashes:
        raise BatchRejected(
            [
                (
                    i,
                    IdempotencyConflict(
                        "this idempotency_key was already used with different fields",
                        param="idempotency_key",
                    ),
                )
                for i in clashes
            ]
        )
    return found
