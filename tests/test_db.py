"""`write_at_once`: several writes as one atomic write (one statement on PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from tests.helpers import row_counts
from tonrail.db import Database, Write, insert_row, write_at_once
from tonrail.events.models import OutboxEvent
from tonrail.events.service import event_write
from tonrail.limits.models import DailyVolume
from tonrail.limits.service import reservation_write
from tonrail.security.idempotency import IdempotencyKey, record_write
from tonrail.security.switches import set_switch, switch_refusal


async def _events(db: Database) -> list[str]:
    async with db.transaction() as session:
        rows = await session.execute(select(OutboxEvent.type).order_by(OutboxEvent.seq))
        return list(rows.scalars())


async def test_writes_run_in_the_given_order(db: Database) -> None:
    writes = [event_write(f"test.{n}", "acct_t", {"n": n}) for n in (3, 1, 2)]
    async with db.one_write() as conn:
        assert await write_at_once(conn, writes) is True
    # seq is assigned as each row is inserted: the order of the writes, not of the SQL text
    assert await _events(db) == ["test.3", "test.1", "test.2"]


async def test_a_failing_write_fails_them_all(db: Database) -> None:
    first = event_write("test.first", "acct_t", {})
    again = event_write("test.again", "acct_t", {})
    duplicate = Write(again.key, again.template, {**again.values, "id": first.values["id"]})
    before = await row_counts(db)
    with pytest.raises(IntegrityError):
        async with db.one_write() as conn:
            await write_at_once(conn, [first, event_write("test.second", "acct_t", {}), duplicate])
    assert await row_counts(db) == before


async def test_a_refusal_that_holds_writes_nothing(db: Database) -> None:
    refusals = [switch_refusal("maintenance")]
    async with db.one_write() as conn:
        assert await write_at_once(conn, [event_write("test.open", "acct_t", {})], refusals)
    async with db.transaction() as session:
        await set_switch(session, "maintenance", True, "test")
    before = await row_counts(db)
    async with db.one_write() as conn:
        refused = await write_at_once(conn, [event_write("test.closed", "acct_t", {})], refusals)
    assert refused is False
    assert await row_counts(db) == before
    assert "test.closed" not in await _events(db)


async def test_a_left_out_column_gets_its_python_default(db: Database) -> None:
    row = {"day": "2026-01-02", "limit_usdt": 10}  # used_usdt has default=0 in the model
    async with db.one_write() as conn:
        assert await write_at_once(conn, [insert_row(DailyVolume.__table__, row)])
    async with db.transaction() as session:
        assert (await session.execute(select(DailyVolume.used_usdt))).scalar_one() == 0


async def test_a_broken_connection_is_not_handed_out_again(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("the one-statement path runs on PostgreSQL's driver")
    async with db.one_write() as conn:
        assert await write_at_once(conn, [event_write("test.before", "acct_t", {})])
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    async with db.transaction() as session:  # a server restart, as the pool sees it
        await session.execute(text(f"SELECT pg_terminate_backend(pid) {others}"))
    for _ in range(100):  # termination is asynchronous: wait until the backends are gone
        async with db.transaction() as session:
            if not (await session.execute(text(f"SELECT count(*) {others}"))).scalar_one():
                break
        await asyncio.sleep(0.05)
    with pytest.raises(Exception):  # whatever the driver raises for a dead socket
        async with db.one_write() as conn:
            await write_at_once(conn, [event_write("test.lost", "acct_t", {})])
    async with db.one_write() as conn:
        assert await write_at_once(conn, [event_write("test.after", "acct_t", {})])
    assert await _events(db) == ["test.before", "test.after"]


# ------------------------------------------------------------------ one_write's connections
async def test_postgres_one_write_reuses_a_sound_connection_and_drops_a_broken_one(
    postgres_url: str,
) -> None:
    db = Database(postgres_url, pool_size=2)
    try:
        async with db.one_write() as first:
            assert await write_at_once(first, [event_write("test.a", "acct_t", {})])
        async with db.one_write() as again:
            assert again is first  # kept checked out: no pool checkout per write
            assert await write_at_once(again, [event_write("test.b", "acct_t", {})])
        # A failed statement leaves an autocommit connection sound: still kept.
        dup = event_write("test.c", "acct_t", {})
        with pytest.raises(IntegrityError):
            async with db.one_write() as conn:
                await write_at_once(conn, [dup, Write(dup.key, dup.template, dup.values)])
        async with db.one_write() as conn:
            assert conn is first
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            # A statement abandoned half-way (cancelled) invalidates the connection...
            task = asyncio.ensure_future(
                write_at_once(conn, [event_write("test.slow", "acct_t", {})])
            )
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert conn.invalidated
        # ... and it is never handed out again.
        async with db.one_write() as fresh:
            assert fresh is not first
            assert await write_at_once(fresh, [event_write("test.d", "acct_t", {})])
    finally:
        await db.dispose()


async def test_postgres_more_concurrent_one_writes_than_connections_all_run(
    postgres_url: str,
) -> None:
    """Writes beyond the pool's size wait for a connection another write leaves (they
    waited on the pool, which never got the kept connections back, until its timeout)."""
    db = Database(postgres_url, pool_size=2)

    async def write(n: int) -> bool:
        async with db.one_write() as conn:
            await asyncio.sleep(0.01)
            return await write_at_once(conn, [event_write(f"test.many.{n}", "acct_t", {})])

    try:
        done = await asyncio.wait_for(asyncio.gather(*(write(n) for n in range(12))), 20)
        assert done == [True] * 12
        async with db.transaction() as session:
            count = await session.scalar(
                select(func.count()).where(OutboxEvent.type.startswith("test.many."))
            )
        assert count == 12
    finally:
        await db.dispose()


def test_writes_together_keep_each_atomic_write_order() -> None:
    from tonrail.db import _merged

    def w(key: str) -> Write:
        return Write(key, lambda prefix, source: None, {})  # type: ignore[arg-type,return-value]

    one = [w("record"), w("payment"), w("line"), w("line"), w("event"), w("volume")]
    two = [w("payment"), w("line"), w("line"), w("event"), w("key"), w("volume")]
    order = [key for key, _ in _merged([two, one])]
    assert order == ["record", "payment", "line", "event", "key", "volume"]
    assert [len(rows) for _, rows in _merged([one, two])] == [1, 2, 4, 2, 1, 2]
    with pytest.raises(ValueError):
        _merged([[w("a"), w("b")], [w("b"), w("a")]])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # the group commit's
async def test_write_together_is_all_or_nothing(db: Database) -> None:
    from tonrail.db import write_together

    first, second = event_write("test.a", "acct_t", {}), event_write("test.b", "acct_t", {})
    async with db.one_write() as conn:
        assert await write_together(conn, [[first], [second]]) is True
    # The second write repeats its event's id: the first is not written either.
    again = event_write("test.c", "acct_t", {})
    twin = Write(again.key, again.template, {**again.values, "type": "test.d"})
    with pytest.raises(IntegrityError):
        async with db.one_write() as conn:
            await write_together(conn, [[again], [twin]])
    assert await _events(db) == ["test.a", "test.b"]
    async with db.transaction() as session:
        await set_switch(session, "maintenance", True, "test")
    refused = [switch_refusal("maintenance")]
    async with db.one_write() as conn:
        written = await write_together(conn, [[event_write("test.e", "acct_t", {})]], refused)
    assert written is False
    assert [e for e in await _events(db) if e.startswith("test.")] == ["test.a", "test.b"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # the group commit's
async def test_write_together_adds_a_days_volume_once(db: Database) -> None:
    """The day's volume of a group of payouts is one row changed once by their sum, with the
    limit applied to the sum; other days' rows stay apart; over the limit, nothing at all."""
    from tonrail.db import _summed, write_together
    from tonrail.limits.service import is_limit_violation, key_reservation_write

    def day(d: str, usdt: int) -> Write:
        return reservation_write("postgresql", d, usdt, 100)

    rows = _summed([day("2026-12-06", 10), day("2026-12-07", 5), day("2026-12-06", 20)])
    assert [dict(r.values) for r in rows] == [
        {"day": "2026-12-06", "used_usdt": 30, "limit_usdt": 100},
        {"day": "2026-12-07", "used_usdt": 5, "limit_usdt": 100},
    ]
    key_rows = [key_reservation_write("postgresql", k, "2026-12-06", 7, 50) for k in "aba"]
    assert [r.values["used_usdt"] for r in _summed(key_rows)] == [14, 7]
    with pytest.raises(ValueError):  # a limit's additions are never negative
        day("2026-12-06", -1)
    with pytest.raises(ValueError):
        key_reservation_write("postgresql", "a", "2026-12-06", -1, 50)
    async with db.one_write() as conn:
        together = [[day("2026-12-06", usdt)] for usdt in (10, 20, 30)] + [[day("2026-12-07", 5)]]
        assert await write_together(conn, together) is True
    with pytest.raises(IntegrityError) as refused:
        async with db.one_write() as conn:  # 60 + 30 + 20 > 100: all or nothing
            await write_together(conn, [[day("2026-12-06", 30)], [day("2026-12-06", 20)]])
    assert is_limit_violation(refused.value)
    async with db.transaction() as session:
        used = dict((await session.execute(select(DailyVolume.day, DailyVolume.used_usdt))).all())
    assert used == {"2026-12-06": 60, "2026-12-07": 5}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # the group commit's
async def test_write_together_is_one_statement_when_it_can_be(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inserted rows and one counter row per kind: one statement, one round trip, arrays of
    values (JSON documents and times stored as they are one by one). Two keys' counters
    (two rows of an upsert): a statement per kind inside a transaction, as before."""
    from datetime import UTC, datetime

    from tonrail import db as db_module
    from tonrail.db import write_together
    from tonrail.ledger.models import AccountBalance
    from tonrail.ledger.rules import Line, merchant_account
    from tonrail.ledger.service import check_books, entry_writes
    from tonrail.limits.models import KeyDailyVolume
    from tonrail.limits.service import key_reservation_write

    calls: list[str] = []
    for name in ("fetchrow", "executemany"):
        real = getattr(db_module._DriverStatement, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(db_module._DriverStatement, name, spy)

    day = "2026-12-06"
    payloads = [{"n": n, "nested": {"list": [n, "x"]}} for n in range(3)]
    writes = [
        [
            event_write("test.group", "acct_t", payload),
            reservation_write("postgresql", day, 10, 100),
        ]
        for payload in payloads
    ]
    async with db.one_write() as conn:
        assert await write_together(conn, writes) is True
    assert calls == ["fetchrow"]
    async with db.transaction() as session:
        stored = (
            await session.execute(
                select(OutboxEvent.payload, OutboxEvent.created_at)
                .where(OutboxEvent.type == "test.group")
                .order_by(OutboxEvent.seq)
            )
        ).all()
        used = (await session.execute(select(DailyVolume.used_usdt))).scalar_one()
    assert [row.payload for row in stored] == payloads and used == 30
    assert all(abs(row.created_at - datetime.now(UTC)).total_seconds() < 60 for row in stored)

    # Counter rows of several keys (two keys' volumes, two accounts' balances, any sign):
    # each summed row its own part of the one statement.
    calls.clear()
    moves = [(k, +20 if k == "acct_a" else -3) for k in ("acct_a", "acct_b", "acct_a", "acct_b")]
    counters = [
        [
            event_write("test.keys", "acct_t", {}),
            key_reservation_write("postgresql", key, day, 5, 50),
            *entry_writes(
                "test.move",
                [Line(merchant_account(acct), "USDT", -change), Line("asset:test", "USDT", change)],
                None,
                dialect="postgresql",
            )[1],
        ]
        for key, (acct, change) in zip(("key_a", "key_b", "key_a", "key_b"), moves, strict=True)
    ]
    async with db.one_write() as conn:
        assert await write_together(conn, counters) is True
    assert calls == ["fetchrow"]
    async with db.transaction() as session:
        keys = dict(
            (await session.execute(select(KeyDailyVolume.key_id, KeyDailyVolume.used_usdt))).all()
        )
        balances = dict(
            (
                await session.execute(select(AccountBalance.account_id, AccountBalance.available))
            ).all()
        )
        assert (await check_books(session)).ok
    assert keys == {"key_a": 10, "key_b": 10}
    assert balances == {"acct_a": 40, "acct_b": -6}

    # A covered hold (an UPDATE, which may change no row): a statement per kind, as before.
    calls.clear()
    holds = [
        entry_writes(
            "test.hold",
            [Line(merchant_account("acct_a"), "USDT", 15), Line("asset:test", "USDT", -15)],
            None,
            dialect="postgresql",
            covered=True,
        )[1]
        for _ in range(2)
    ]
    async with db.one_write() as conn:
        assert await write_together(conn, holds) is True
    assert "fetchrow" not in calls and calls.count("executemany") >= 3
    async with db.transaction() as session:
        left = (
            await session.execute(
                select(AccountBalance.available).where(AccountBalance.account_id == "acct_a")
            )
        ).scalar_one()
    assert left == 10
    # Two holds of 6 on a balance of 10: the second fails its CHECK, the first is undone.
    too_much = [
        entry_writes(
            "test.hold",
            [Line(merchant_account("acct_a"), "USDT", 6), Line("asset:test", "USDT", -6)],
            None,
            dialect="postgresql",
            covered=True,
        )[1]
        for _ in range(2)
    ]
    with pytest.raises(IntegrityError):
        async with db.one_write() as conn:
            await write_together(conn, too_much)
    assert (await row_counts(db))["journal_entries"] == 6  # 4 moves and 2 holds
    async with db.transaction() as session:
        assert (await check_books(session)).ok
        left = (
            await session.execute(
                select(AccountBalance.available).where(AccountBalance.account_id == "acct_a")
            )
        ).scalar_one()
    assert left == 10


def test_driver_arguments_are_what_construct_params_gives() -> None:
    """`_DriverStatement.args` reads each bind itself (`_slots`); its arguments are those of
    SQLAlchemy's `construct_params`, for a payout's one statement and for literal, callable
    and missing binds."""
    from dataclasses import replace

    from sqlalchemy import bindparam, column, literal, table
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.exc import InvalidRequestError

    from tonrail.db import _DriverStatement, _one_statement, _params
    from tonrail.limits.service import reservation_write
    from tonrail.security.lockouts import lockout_refusal

    dialect = postgresql.asyncpg.dialect()  # type: ignore[attr-defined]
    answer = {"id": "pay_1", "text": "ü", "metadata": {"n": 1}}
    ikey = IdempotencyKey("acct_t", "k1", "f" * 64)
    writes = [
        record_write(ikey, 201, answer),
        event_write("test.args", "acct_t", answer),
        event_write("test.other", "acct_t", {**answer}),
        reservation_write("postgresql", "2026-01-02", 5, 10),
    ]
    refusals = [switch_refusal("maintenance"), lockout_refusal("key_1", "EQx", "10.0.0.1")]
    assert all(r is not None for r in refusals)
    one = _DriverStatement.of(_one_statement(writes, refusals), dialect)  # type: ignore[arg-type]
    params = _params(refusals, "r") | _params(writes, "w")  # type: ignore[arg-type]
    assert one.slots is not None
    documents: dict[tuple[int, int], tuple[Any, Any]] = {}
    assert one.args(params, documents) == replace(one, slots=None).args(params)
    # The answer (the record's body and the first event's payload) was serialized once, its
    # equal copy (another object) on its own.
    texts = [text for _, text in documents.values()]
    assert texts.count(json.dumps(answer)) == 2
    assert len([d for d, _ in documents.values() if d is answer]) == 1

    t = table("t", column("a"), column("b"), column("c"), column("d"))
    stmt = (
        select(t.c.a)
        .where(t.c.b == bindparam("given"))
        .where(t.c.c == literal("fixed"))
        .where(t.c.d == bindparam("made", callable_=lambda: 7))
    )
    plain = _DriverStatement.of(stmt, dialect)
    assert plain.slots is not None
    assert plain.args({"given": 1}) == replace(plain, slots=None).args({"given": 1})
    assert sorted(map(str, plain.args({"given": 1}))) == ["1", "7", "fixed"]
    for statement in (plain, replace(plain, slots=None)):
        with pytest.raises(InvalidRequestError):
            statement.args({"other": 1})
