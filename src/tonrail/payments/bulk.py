"""Many payouts at once: the batch endpoint's use case, and bulk state changes for rails.

`POST /v1/payouts/batch` creates up to PAYOUTS_BATCH_MAX payouts in one transaction, each
exactly as `POST /v1/payouts` would (same validation, limits, approvals, books, events);
one bad item refuses the whole batch and writes nothing. Each item may carry its own
idempotency key, so a client can re-send a batch after a timeout without paying twice.

The rails move payouts in batches too (a highload request carries up to 254): `move_payments`
and `move_attempts` apply one state change to many rows with one compare-and-set statement
per (from, to) pair, `start_attempts` opens attempts for many payments at once. The moves
are checked against the same tables (`payments/states.py`) as the one-at-a-time path.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from tonrail import clock
from tonrail.chain.address import check_network, counterparty_key
from tonrail.chain.network import resolve_network
from tonrail.db import Database
from tonrail.errors import Conflict, IdempotencyConflict, InvalidRequest, TonrailError
from tonrail.events.service import emit
from tonrail.ids import new_id
from tonrail.ledger import rules as books
from tonrail.ledger.service import post_many
from tonrail.limits.models import DailyVolume
from tonrail.limits.rules import check_amount, needs_approval
from tonrail.limits.service import reserve_daily_volume
from tonrail.money import decimals_of, parse_minor
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.rules import DEFAULT_TARGET_SECONDS, check_metadata
from tonrail.payments.schemas import PaymentOut, PayoutCreate
from tonrail.payments.service import TON_ASSETS, PaymentService, Response
from tonrail.payments.states import (
    LIVE_ATTEMPT_STATES,
    check_attempt_transition,
    check_payment_transition,
    initial_status,
)
from tonrail.security import idempotency
from tonrail.security.api_keys import Principal
from tonrail.security.idempotency import IdempotencyKey
from tonrail.security.lockouts import SubjectLocked, check_not_locked
from tonrail.security.models import IdempotencyRecord, Lockout
from tonrail.security.switches import refuse_in_maintenance

ITEM_KEY_PREFIX = "payouts.batch:"  # item keys live beside request keys, in their own space
ITEM_KEY_MAX = 200


# ------------------------------------------------------------------------- API shapes
class PayoutBatchItem(PayoutCreate):
    idempotency_key: str | None = Field(
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
    req: PayoutBatchItem
    amount: int
    usdt: int
    rate: Any
    key: str | None  # the stored item key (prefixed), if the item has one
    fingerprint: str


def _item_fingerprint(req: PayoutBatchItem) -> str:
    fields = req.model_dump(mode="json", exclude={"idempotency_key"})
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(b"POST /v1/payouts/batch item\n" + canonical.encode()).hexdigest()


class BulkPayouts:
    """`POST /v1/payouts/batch`: the single-payout rules of `PaymentService`, many at once."""

    def __init__(self, payments: PaymentService):
        self.payments = payments
        self.settings = payments.settings
        self.network = resolve_network(self.settings)

    def _validate(self, index: int, req: PayoutBatchItem) -> _Item:
        """The checks of `PaymentService.create_payout`, in its order, for one item."""
        asset = req.asset
        decimals_of(asset)
        amount = parse_minor(req.amount, asset)
        if amount == 0:
            raise InvalidRequest(
                "amount must be greater than zero", param="amount", code="amount_invalid"
            )
        if asset not in TON_ASSETS:
            raise InvalidRequest(
                f"payouts in {asset} are not supported yet; use TON or USDT",
                param="asset",
                code="asset_unsupported",
            )
        check_network(req.destination, self.network, "destination")
        check_amount(self.payments.policy, asset, amount)
        check_metadata(req.metadata, self.settings.metadata_max_bytes)
        key = req.idempotency_key
        if key is not None and (not key or len(key) > ITEM_KEY_MAX or not key.isprintable()):
            raise InvalidRequest(
                f"idempotency_key must be 1 to {ITEM_KEY_MAX} printable characters",
                param="idempotency_key",
                code="idempotency_key_invalid",
            )
        rate = self.payments.rates.rate(asset)
        return _Item(
            index=index,
            req=req,
            amount=amount,
            usdt=rate.usdt_equivalent(amount, asset),
            rate=rate,
            key=ITEM_KEY_PREFIX + key if key is not None else None,
            fingerprint=_item_fingerprint(req),
        )

    def validate(self, batch: PayoutBatchCreate) -> list[_Item]:
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
                item = self._validate(i, req)
            except TonrailError as exc:
                errors.append((i, exc))
                continue
            if item.key is not None:
                if item.key in seen:
                    errors.append(
                        (
                            i,
                            InvalidRequest(
                                f"idempotency_key repeats the key of item {seen[item.key]}",
                                param="idempotency_key",
                                code="idempotency_key_duplicate",
                            ),
                        )
                    )
                    continue
                seen[item.key] = i
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
        """Create every payout of the batch in one transaction, or none of them."""
        items = self.validate(batch)
        now = clock.now()
        day = now.date().isoformat()
        policy = self.payments.policy
        account = principal.account_id

        async def work(session: AsyncSession) -> tuple[dict[str, Any], list[_Item]]:
            await refuse_in_maintenance(session)
            await check_not_locked(session, principal.key_id, None, client_ip)
            await _refuse_locked_destinations(session, items)
            known = await _item_records(session, account, items)
            bodies: list[dict[str, Any]] = []
            replayed: list[int] = []
            fresh: list[_Item] = []
            entries: list[tuple[str, list[books.Line], str | None]] = []
            for item in items:
                record = known.get(item.key) if item.key is not None else None
                if record is not None:
                    bodies.append(record.response_body)
                    replayed.append(item.index)
                    continue
                req = item.req
                payment = Payment(
                    id=new_id("pay"),
                    account_id=account,
                    direction="out",
                    status=initial_status("out", needs_approval(policy, item.usdt)),
                    asset=req.asset,
                    amount=item.amount,
                    usdt_equivalent=item.usdt,
                    rate=str(item.rate.usdt_per_unit),
                    rate_at=item.rate.at,
                    volume_day=day,
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
                session.add(payment)
                entries.append(
                    (
                        "payout.reserved",
                        books.payout_reserved(account, req.asset, item.amount),
                        payment.id,
                    )
                )
                body = PaymentOut.of(payment).model_dump(mode="json")
                emit(session, "payout.created", account, body, payment.id)
                if item.key is not None:
                    session.add(
                        IdempotencyRecord(
                            account_id=account,
                            key=item.key,
                            request_fingerprint=item.fingerprint,
                            status_code=201,
                            response_body=body,
                            created_at=now,
                        )
                    )
                bodies.append(body)
                fresh.append(item)
            await post_many(session, entries)
            out = PayoutBatchOut(
                count=len(items),
                created=len(fresh),
                replayed=replayed,
                data=[PaymentOut.model_validate(b) for b in bodies],
            )
            return out.model_dump(mode="json"), fresh

        async def reserve(session: AsyncSession, fresh: list[_Item]) -> None:
            # Each item counts as if posted alone, in order; all of them or none.
            total = sum(i.usdt for i in fresh)
            if not total:
                return
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
                    running += item.usdt
                    if running > policy.daily_volume_limit_usdt:
                        raise BatchRejected([(item.index, exc)]) from None
                raise

        return await _idempotent(self.payments, ikey, work, reserve)


async def _idempotent(
    payments: PaymentService,
    ikey: IdempotencyKey | None,
    work: Callable[[AsyncSession], Awaitable[tuple[dict[str, Any], list[_Item]]]],
    reserve: Callable[[AsyncSession, list[_Item]], Awaitable[None]],
) -> Response:
    """The whole batch under the request's Idempotency-Key (as `POST /v1/payouts`); a
    concurrent batch with the same request key or item key makes this one replay."""
    for _ in range(3):
        try:
            async with _turn(payments.db), payments.db.transaction() as session:
                if ikey is not None:
                    record = await idempotency.find(session, ikey)
                    if record is not None:
                        return Response(record.status_code, record.response_body, True)
                body, fresh = await work(session)
                if ikey is not None:
                    idempotency.save(session, ikey, 201, body)
                # The volume row is the one every payout locks: touch it last.
                await reserve(session, fresh)
                return Response(201, body)
        except IntegrityError:
            continue  # an item key or the request key committed concurrently: look again
    raise Conflict("the request raced with another one; retry it", code="concurrent_request")


_TURNS: weakref.WeakKeyDictionary[Database, asyncio.Lock] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def _turn(db: Database) -> AsyncIterator[None]:
    """On SQLite, this process's batches take turns for the write lock first come first
    served, instead of racing for it in SQLite's busy handler (which is not fair: under a
    stream of batches one can wait past the busy timeout). PostgreSQL needs no turns."""
    if db.dialect != "sqlite":
        yield
        return
    lock = _TURNS.setdefault(db, asyncio.Lock())
    async with lock:
        yield


async def _refuse_locked_destinations(session: AsyncSession, items: Sequence[_Item]) -> None:
    """423 `counterparty_locked` naming the first item whose destination is locked."""
    keys = {counterparty_key(i.req.destination): i.index for i in reversed(items)}
    rows = (
        await session.execute(
            select(Lockout.subject).where(
                Lockout.unlocked_at.is_(None),
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
    keyed = {i.key: i for i in items if i.key is not None}
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
        keyed[k].index for k, r in found.items() if r.request_fingerprint != keyed[k].fingerprint
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


# ------------------------------------------------------------------------- bulk state changes
_FINAL = ("succeeded", "failed", "canceled", "expired")


async def move_payments(
    service: PaymentService,
    session: AsyncSession,
    payments: Sequence[Payment],
    target: str,
    *,
    actor: str,
    values: dict[str, Any] | None = None,
) -> None:
    """`PaymentService.transition` for many payments: the same checks, values and events,
    with one compare-and-set UPDATE per current status. A move that posts to the books
    (a payout canceled or failed) goes one at a time through the service."""
    if not payments:
        return
    if target in ("canceled", "failed"):
        for p in payments:
            await service.transition(session, p, target, actor=actor)
        return
    now = clock.now()
    common: dict[str, Any] = {"updated_at": now, **(values or {})}
    if target in _FINAL:
        common.update(completed_at=now, locked_by=None, locked_until=None)
    groups: dict[str, list[Payment]] = {}
    for p in payments:
        check_payment_transition(p.direction, p.status, target)
        groups.setdefault(p.status, []).append(p)
    for current, group in groups.items():
        ids = [p.id for p in group]
        moved = set(
            (
                await session.execute(
                    update(Payment)
                    .where(Payment.id.in_(ids), Payment.status == current)
                    .values(status=target, **common)
                    .returning(Payment.id)
                    .execution_options(synchronize_session=False)
                )
            ).scalars()
        )
        if len(moved) != len(ids):
            stale = next(i for i in ids if i not in moved)
            raise Conflict(
                f"payment {stale} changed concurrently; reload and retry", code="concurrent_update"
            )
        for p in group:
            # Keep the loaded objects true without making the session write them again.
            set_committed_value(p, "status", target)
            for name, value in common.items():
                set_committed_value(p, name, value)
            kind = "payout" if p.direction == "out" else "invoice"
            emit(
                session,
                f"{kind}.{target}",
                p.account_id,
                {"id": p.id, "from": current, "to": target, "actor": actor},
                p.id,
            )


async def start_attempts(
    session: AsyncSession,
    payments: Sequence[Payment],
    rail: str,
    *,
    provider_ref: str | None = None,
) -> dict[str, Attempt]:
    """`start_attempt` for many payments: attempt n+1 each, in `created` (with the rail's
    reference when it is known already); refused, and nothing kept, if any of them still
    has a live attempt."""
    if not payments:
        return {}
    ids = [p.id for p in payments]
    rows = (
        await session.execute(
            select(
                Attempt.payment_id,
                func.max(Attempt.number),
                func.sum(case((Attempt.status.in_(LIVE_ATTEMPT_STATES), 1), else_=0)),
            )
            .where(Attempt.payment_id.in_(ids))
            .group_by(Attempt.payment_id)
        )
    ).all()
    numbers: dict[str, int] = {}
    for payment_id, number, live in rows:
        if live:
            raise Conflict(
                f"payment {payment_id} has a live attempt; resolve it first", code="attempt_live"
            )
        numbers[payment_id] = int(number or 0)
    now = clock.now()
    out: dict[str, Attempt] = {}
    for p in payments:
        n = numbers.get(p.id, 0) + 1
        out[p.id] = Attempt(
            id=new_id("att"),
            payment_id=p.id,
            number=n,
            rail=rail,
            status="created",
            idempotency_key=f"{p.id}:{n}",
            provider_ref=provider_ref,
            details={},
            created_at=now,
            updated_at=now,
        )
    session.add_all(out.values())
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(
            "a payment of the batch has a live attempt; resolve it first", code="attempt_live"
        ) from None
    return out


@dataclass(frozen=True, slots=True)
class AttemptMove:
    """One attempt's move; `values` are its own columns (fee, error, details...)."""

    attempt: Attempt
    target: str
    values: dict[str, Any]


async def move_attempts(session: AsyncSession, moves: Iterable[AttemptMove]) -> None:
    """`move_attempt` for many attempts: checked against the attempt state table, one
    compare-and-set UPDATE per (from, to), then each attempt's own values."""
    groups: dict[tuple[str, str], list[AttemptMove]] = {}
    for m in moves:
        check_attempt_transition(m.attempt.status, m.target)
        groups.setdefault((m.attempt.status, m.target), []).append(m)
    now = clock.now()
    for (current, target), group in groups.items():
        ids = [m.attempt.id for m in group]
        moved = set(
            (
                await session.execute(
                    update(Attempt)
                    .where(Attempt.id.in_(ids), Attempt.status == current)
                    .values(status=target, updated_at=now)
                    .returning(Attempt.id)
                    .execution_options(synchronize_session=False)
                )
            ).scalars()
        )
        if len(moved) != len(ids):
            stale = next(i for i in ids if i not in moved)
            raise Conflict(f"attempt {stale} changed concurrently", code="concurrent_update")
        # The rows are ours now (row locks / the write lock): set each one's own values.
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for m in group:
            if m.values:
                by_columns.setdefault(tuple(sorted(m.values)), []).append(
                    {"id": m.attempt.id, **m.values}
                )
            set_committed_value(m.attempt, "status", target)
            set_committed_value(m.attempt, "updated_at", now)
            for name, value in m.values.items():
                set_committed_value(m.attempt, name, value)
        for rows in by_columns.values():
            await session.execute(update(Attempt), rows)
