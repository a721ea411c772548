"""Status moves applied to the database: every illegal move refused with nothing written,
every legal one applied with compare-and-set, its event, and (payouts that end without
moving money) its books and daily volume."""

from __future__ import annotations

import asyncio
import itertools
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from tonrail import clock
from tonrail.db import Database
from tonrail.errors import Conflict, IllegalTransition
from tonrail.events.models import OutboxEvent
from tonrail.ids import new_id
from tonrail.ledger.models import JournalEntry
from tonrail.limits.models import DailyVolume
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.states import (
    ATTEMPT_TRANSITIONS,
    TERMINAL_PAYMENT_STATES,
    AttemptStatus,
    PaymentStatus,
    payment_transitions,
)
from tonrail.payments.transitions import (
    AttemptMove,
    move_attempt,
    move_attempts,
    move_payment,
    move_payments,
    start_attempt,
    start_attempts,
)

DAY = date(2026, 1, 2).isoformat()


def _payment(direction: str, status: PaymentStatus, *, volume_day: str | None = None) -> Payment:
    now = clock.now()
    return Payment(
        id=new_id("pay"),
        account_id="acct",
        direction=direction,
        status=status,
        asset="USDT",
        amount=5_000_000,
        usdt_equivalent=5_000_000,
        rate="1",
        rate_at=now,
        volume_day=volume_day,
        priority="normal",
        target_confirmation_seconds=60,
        metadata_={},
        requested_by="key:x",
        created_at=now,
        updated_at=now,
    )


def _attempt(payment_id: str, status: AttemptStatus, number: int = 1) -> Attempt:
    now = clock.now()
    return Attempt(
        id=new_id("att"),
        payment_id=payment_id,
        number=number,
        rail="ton",
        status=status,
        idempotency_key=f"{payment_id}:{number}",
        details={},
        created_at=now,
        updated_at=now,
    )


async def _count(db: Database, model: type[OutboxEvent] | type[JournalEntry]) -> int:
    async with db.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


@pytest.mark.parametrize("direction", ["out", "in"])
async def test_every_illegal_payment_move_is_refused_and_writes_nothing(
    db: Database, direction: str
) -> None:
    table = payment_transitions(direction)
    refused = 0
    for current in PaymentStatus:
        async with db.transaction() as session:
            session.add(_payment(direction, current))
        for target in PaymentStatus:
            if target in table.get(current, frozenset()):
                continue
            with pytest.raises(IllegalTransition):
                async with db.transaction() as session:
                    [p] = (
                        await session.execute(select(Payment).where(Payment.status == current))
                    ).scalars()
                    await move_payment(session, p, target, actor="test")
            refused += 1
    async with db.transaction() as session:
        statuses = sorted((await session.execute(select(Payment.status))).scalars())
    assert statuses == sorted(PaymentStatus)  # nothing moved
    assert await _count(db, OutboxEvent) == 0
    assert await _count(db, JournalEntry) == 0
    legal = sum(len(v) for v in table.values())
    assert refused == len(PaymentStatus) ** 2 - legal


@pytest.mark.parametrize("direction", ["out", "in"])
async def test_every_legal_payment_move_applies_with_its_event(
    db: Database, direction: str
) -> None:
    table = payment_transitions(direction)
    kind = "payout" if direction == "out" else "invoice"
    for current, targets in table.items():
        for target in targets:
            async with db.transaction() as session:
                p = _payment(direction, PaymentStatus(current))
                session.add(p)
            async with db.transaction() as session:
                loaded = await session.get(Payment, p.id)
                assert loaded is not None
                await move_payment(
                    session, loaded, PaymentStatus(target), actor="test", failure_code="why"
                )
                assert loaded.status is PaymentStatus(target)
            async with db.transaction() as session:
                row = await session.get(Payment, p.id)
                assert row is not None
                assert row.status == target and isinstance(row.status, PaymentStatus)
                assert row.failure_code == "why"
                assert (row.completed_at is not None) == (target in TERMINAL_PAYMENT_STATES)
                [event] = (
                    await session.execute(select(OutboxEvent).where(OutboxEvent.payment_id == p.id))
                ).scalars()
                assert event.type == f"{kind}.{target}"
                assert (event.payload["from"], event.payload["to"]) == (current, target)
                entries = list(
                    (
                        await session.execute(
                            select(JournalEntry.kind).where(JournalEntry.payment_id == p.id)
                        )
                    ).scalars()
                )
            released = direction == "out" and target in ("canceled", "failed")
            assert entries == ([f"payout.{target}"] if released else [])


async def test_payouts_failed_together_release_their_books_and_volume(db: Database) -> None:
    async with db.transaction() as session:
        session.add(DailyVolume(day=DAY, used_usdt=20_000_000))
        payouts = [_payment("out", PaymentStatus.QUEUED, volume_day=DAY) for _ in range(3)]
        payouts.append(_payment("out", PaymentStatus.PROCESSING, volume_day=DAY))
        session.add_all(payouts)
    async with db.transaction() as session:
        loaded = list((await session.execute(select(Payment))).scalars())
        await move_payments(session, loaded, PaymentStatus.FAILED, actor="test")
    async with db.transaction() as session:
        assert (await session.get(DailyVolume, DAY)).used_usdt == 0  # type: ignore[union-attr]
        kinds = list((await session.execute(select(JournalEntry.kind))).scalars())
        statuses = set((await session.execute(select(Payment.status))).scalars())
    assert kinds == ["payout.failed"] * 4
    assert statuses == {PaymentStatus.FAILED}


async def test_one_illegal_move_in_a_group_moves_none(db: Database) -> None:
    async with db.transaction() as session:
        session.add_all(
            [_payment("out", PaymentStatus.QUEUED), _payment("out", PaymentStatus.SUCCEEDED)]
        )
    with pytest.raises(IllegalTransition):
        async with db.transaction() as session:
            loaded = list((await session.execute(select(Payment))).scalars())
            await move_payments(session, loaded, PaymentStatus.PROCESSING, actor="test")
    async with db.transaction() as session:
        statuses = sorted((await session.execute(select(Payment.status))).scalars())
    assert statuses == [PaymentStatus.QUEUED, PaymentStatus.SUCCEEDED]
    assert await _count(db, OutboxEvent) == 0


async def test_a_payment_moved_meanwhile_is_a_conflict(db: Database) -> None:
    async with db.transaction() as session:
        p = _payment("out", PaymentStatus.QUEUED)
        session.add(p)
    with pytest.raises(Conflict) as err:
        async with db.transaction() as session:
            stale = await session.get(Payment, p.id)
            assert stale is not None
            # Another worker takes it between our read and our write.
            await session.execute(
                update(Payment)
                .where(Payment.id == p.id)
                .values(status=PaymentStatus.PROCESSING)
                .execution_options(synchronize_session=False)
            )
            await move_payment(session, stale, PaymentStatus.CANCELED, actor="test")
    assert err.value.code == "concurrent_update"


async def test_every_illegal_attempt_move_is_refused(db: Database) -> None:
    payments = [_payment("out", PaymentStatus.PROCESSING) for _ in AttemptStatus]
    async with db.transaction() as session:
        session.add_all(payments)
        await session.flush()
        session.add_all(_attempt(p.id, s) for p, s in zip(payments, AttemptStatus, strict=True))
    refused = 0
    for current, target in itertools.product(AttemptStatus, repeat=2):
        if target in ATTEMPT_TRANSITIONS[current]:
            continue
        with pytest.raises(IllegalTransition):
            async with db.transaction() as session:
                [a] = (
                    await session.execute(select(Attempt).where(Attempt.status == current))
                ).scalars()
                await move_attempt(session, a, target, error_code="x")
        refused += 1
    async with db.transaction() as session:
        rows = (await session.execute(select(Attempt.status, Attempt.error_code))).all()
    assert sorted(s for s, _ in rows) == sorted(AttemptStatus)
    assert {code for _, code in rows} == {None}
    assert refused == len(AttemptStatus) ** 2 - sum(len(v) for v in ATTEMPT_TRANSITIONS.values())


async def test_attempts_move_together_with_their_own_values(db: Database) -> None:
    payments = [_payment("out", PaymentStatus.PROCESSING) for _ in range(3)]
    async with db.transaction() as session:
        session.add_all(payments)
        await session.flush()
        attempts = await start_attempts(session, payments, "ton", provider_ref="hash")
        assert {a.status for a in attempts.values()} == {AttemptStatus.CREATED}
        await move_attempts(
            session, [AttemptMove(a, AttemptStatus.SUBMITTED) for a in attempts.values()]
        )
        a1, a2, a3 = (attempts[p.id] for p in payments)
        await move_attempts(
            session,
            [
                AttemptMove(a1, AttemptStatus.CONFIRMED, {"fee_amount": 7, "fee_asset": "TON"}),
                AttemptMove(a2, AttemptStatus.CONFIRMED, {"fee_amount": 9, "fee_asset": "TON"}),
                AttemptMove(a3, AttemptStatus.UNKNOWN, {"error_code": "unproven"}),
            ],
        )
    async with db.transaction() as session:
        rows = {
            r.id: (r.status, r.fee_amount, r.error_code, r.provider_ref)
            for r in (await session.execute(select(Attempt))).scalars()
        }
    assert rows == {
        a1.id: (AttemptStatus.CONFIRMED, 7, None, "hash"),
        a2.id: (AttemptStatus.CONFIRMED, 9, None, "hash"),
        a3.id: (AttemptStatus.UNKNOWN, None, "unproven", "hash"),
    }


async def test_no_attempt_starts_beside_a_live_one(db: Database) -> None:
    payments = [_payment("out", PaymentStatus.PROCESSING) for _ in range(2)]
    async with db.transaction() as session:
        session.add_all(payments)
        await session.flush()
        first = await start_attempt(session, payments[0], "ton")
        await move_attempt(session, first, AttemptStatus.SUBMITTED)
    for live in (AttemptStatus.SUBMITTED, AttemptStatus.UNKNOWN):
        with pytest.raises(Conflict) as err:
            async with db.transaction() as session:
                await start_attempts(session, payments, "stripe")
        assert err.value.code == "attempt_live"
        if live is AttemptStatus.SUBMITTED:
            async with db.transaction() as session:
                a = await session.get(Attempt, first.id)
                assert a is not None
                await move_attempt(session, a, AttemptStatus.UNKNOWN)
    async with db.transaction() as session:
        a = await session.get(Attempt, first.id)
        assert a is not None
        await move_attempt(session, a, AttemptStatus.FAILED, error_code="bounced")
        again = await start_attempts(session, payments, "stripe")
    assert {p.id: again[p.id].number for p in payments} == {payments[0].id: 2, payments[1].id: 1}


# A random walk through the database: each move applies exactly when the rules allow it.
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    direction=st.sampled_from(["out", "in"]),
    moves=st.lists(st.sampled_from(list(PaymentStatus)), max_size=6),
    attempt_moves=st.lists(st.sampled_from(list(AttemptStatus)), max_size=5),
)
def test_random_walks_follow_the_rules(
    database_url: str,
    direction: str,
    moves: list[PaymentStatus],
    attempt_moves: list[AttemptStatus],
) -> None:
    async def walk() -> None:
        db = Database(database_url)
        try:
            start = PaymentStatus.QUEUED if direction == "out" else PaymentStatus.AWAITING_PAYMENT
            p = _payment(direction, start)
            a = _attempt(p.id, AttemptStatus.CREATED)
            async with db.transaction() as session:
                session.add(p)
                await session.flush()
                session.add(a)
            status, attempt_status = start, AttemptStatus.CREATED
            for target in moves:
                legal = target in payment_transitions(direction).get(status, frozenset())
                try:
                    async with db.transaction() as session:
                        row = await session.get(Payment, p.id)
                        assert row is not None
                        await move_payment(session, row, target, actor="walk")
                except IllegalTransition:
                    assert not legal
                else:
                    assert legal
                    status = target
            for target in attempt_moves:
                legal = target in ATTEMPT_TRANSITIONS[attempt_status]
                try:
                    async with db.transaction() as session:
                        row_a = await session.get(Attempt, a.id)
                        assert row_a is not None
                        await move_attempt(session, row_a, target)
                except IllegalTransition:
                    assert not legal
                else:
                    assert legal
                    attempt_status = target
            async with db.transaction() as session:
                assert (await session.get(Payment, p.id)).status == status  # type: ignore[union-attr]
                assert (await session.get(Attempt, a.id)).status == attempt_status  # type: ignore[union-attr]
                events = (
                    await session.execute(
                        select(func.count())
                        .select_from(OutboxEvent)
                        .where(OutboxEvent.payment_id == p.id)
                    )
                ).scalar_one()
            moved = sum(1 for _ in _legal_prefix_moves(direction, start, moves))
            assert events == moved
        finally:
            await db.dispose()

    asyncio.run(walk())


def _legal_prefix_moves(
    direction: str, start: PaymentStatus, moves: list[PaymentStatus]
) -> list[PaymentStatus]:
    applied, status = [], start
    for target in moves:
        if target in payment_transitions(direction).get(status, frozenset()):
            applied.append(target)
            status = target
    return applied
