"""Database engine and sessions: SQLite (WAL, busy timeout) by default, PostgreSQL by URL."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    cast,
    event,
    func,
    insert,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql import ColumnElement, Executable, FromClause, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.schema import ColumnDefault
from sqlalchemy.types import TypeDecorator

from tonrail.json_text import serialize_json

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL, INTEGER on SQLite (there it is 64-bit and the rowid alias).
BigInt = BigInteger().with_variant(Integer(), "sqlite")
JsonDoc = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime reached the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


E = TypeVar("E", bound=StrEnum)


class StatusText(TypeDecorator[E]):
    """A status `StrEnum` stored as its plain text value (VARCHAR, no database enum type):
    rows read back as members of the enum. Values are bound as they are, so a filter on a
    string that is no status simply matches nothing."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int):
        super().__init__(length)
        self.enum = enum

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# PostgreSQL connections are replaced after this long (a server or proxy may drop idle ones).
RECYCLE_S = 300
WRITER_RECYCLE_S = float(RECYCLE_S)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(
    url: str, *, busy_timeout_ms: int = 15_000, pool_size: int = 10, autocommit: bool = False
) -> AsyncEngine:
    """Create the async engine; on SQLite every transaction is BEGIN IMMEDIATE.

    Taking SQLite's write lock at BEGIN means a transaction that reads and then writes can
    never fail half-way with SQLITE_BUSY on lock upgrade; writers queue on the busy timeout.
    """
    kwargs: dict[str, Any] = {"json_serializer": serialize_json}
    if is_sqlite(url):
        kwargs["connect_args"] = {"timeout": busy_timeout_ms / 1000}
    else:
        # No pre-ping (a round trip per checkout); recycle instead, and a dropped connection
        # fails one transaction, which the caller sees and retries.
        kwargs.update(pool_size=pool_size, max_overflow=pool_size * 2, pool_recycle=RECYCLE_S)
        if autocommit:
            # One statement per checkout, held for about a millisecond: requests wait for a
            # pooled connection rather than open (and close) extra ones in a burst.
            kwargs.update(isolation_level="AUTOCOMMIT", max_overflow=0)
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        _install_sqlite_pragmas(engine, busy_timeout_ms)
    return engine


def _install_sqlite_pragmas(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, decide when a transaction starts.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """The engine and its session factory; one per process."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 15_000, pool_size: int = 10):
        self.url = url
        self.engine = create_engine(url, busy_timeout_ms=busy_timeout_ms, pool_size=pool_size)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # PostgreSQL: a pool of autocommit connections for `one_write`, so no checkout has to
        # switch a connection's isolation level and back.
        self._autocommit = (
            create_engine(url, pool_size=pool_size, autocommit=True)
            if self.engine.dialect.name == "postgresql"
            else None
        )
        # SQLite: writers of this process queue here, in order, instead of polling SQLite's
        # write lock through the busy timeout (whose growing sleeps make the slowest writes
        # seconds slower than the rest under load).
        self._sqlite_writer = asyncio.Lock()
        # PostgreSQL: `one_write` connections kept checked out between writes (with when
        # they were opened), so a write skips the pool's checkout and return; at most
        # pool_size writes at once (the autocommit pool's size, no overflow), so a write
        # that finds none idle opens one without waiting for the pool, and one that waits,
        # waits here for the next write to end and leave its connection.
        self._writers: list[tuple[AsyncConnection, float]] = []
        self._writer_slots = asyncio.Semaphore(pool_size)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def autocommit_engine(self) -> AsyncEngine | None:
        """PostgreSQL: the engine behind `one_write` (its connections autocommit)."""
        return self._autocommit

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def one_write(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a use case whose writes are one `write_at_once`.

        On PostgreSQL it autocommits: that one statement needs no BEGIN and COMMIT round
        trips, and its row locks end with it (not a network round trip later, at COMMIT);
        it is atomic by itself, any failed part fails all of it. On SQLite it is a
        BEGIN IMMEDIATE transaction, committed on success, as `transaction()`; the
        process's `one_write`s take turns for it.
        """
        if self._autocommit is None:
            async with self._sqlite_writer, self.engine.begin() as conn:
                yield conn
            return
        # A connection another write left: the pool's checkout and return (events, reset,
        # bookkeeping: a tenth of a payout's CPU) happen once per connection, not per write.
        async with self._writer_slots:
            if self._writers:
                conn, opened = self._writers.pop()
            else:
                conn, opened = await self._autocommit.connect(), time.monotonic()
            try:
                yield conn
            finally:
                # Kept for the next write only if it is sound (a failed or cancelled
                # statement invalidates it: `_DriverStatement`) and younger than the pool's
                # recycle age; else back to the pool, which closes what is unsound.
                keep = (
                    not conn.invalidated
                    and not conn.closed
                    and not conn.in_transaction()
                    and time.monotonic() - opened < WRITER_RECYCLE_S
                )
                if keep:
                    self._writers.append((conn, opened))
                else:
                    await conn.close()

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._autocommit is not None:
            writers, self._writers = self._writers, []
            for conn, _ in writers:
                await conn.close()
            await self._autocommit.dispose()


@dataclass(frozen=True, slots=True)
class Write:
    """One statement of an atomic write (`write_at_once`).

    `template(prefix, source)` builds the statement with bind parameters named `prefix` +
    the keys of `values`, taking its row from `source` when one is given (the write then
    happens only if `source` yields a row); it is built once per `key` (equal keys, equal
    SQL) and reused, so a request pays for neither building nor compiling SQL. An Update
    must change exactly one row (its caller makes sure the row exists), as an insert writes one.
    `contended`: the statement changes a row other writes change too (an account balance, a
    day's volume): `write_together` takes such rows in a sorted order.
    `adds`: the statement adds these values to a counter row (an upsert), and nothing else
    it does depends on the row's value but a limit on the total (the day's and a key's
    volume, whose additions are never negative) or none (a balance that may go below zero),
    so writes of one key that are equal in every other value do what one such write of
    their sum does; `write_together` writes them so, one row changed once, not per payout.
    `table`: the write inserts one row of `values` (every column named) into this table
    (`insert_row`): `write_together` inserts a group's rows of one kind as one INSERT.
    """

    key: Hashable
    template: Callable[[str, FromClause | None], Insert | Update]
    values: Mapping[str, Any]
    contended: bool = False
    adds: tuple[str, ...] = ()
    table: Table | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """SQL that, while true, refuses an atomic write (`write_at_once(refuse_if=...)`).

    Built like a Write's template: `template(prefix)` once per `key`, bind parameters named
    `prefix` + the keys of `values`.
    """

    key: Hashable
    template: Callable[[str], ColumnElement[bool]]
    values: Mapping[str, Any]


def insert_row(table: Table, row: Mapping[str, Any]) -> Write:
    """A Write that inserts one row (`row` maps column names to values); columns left out
    get their Python-side defaults here, as an ORM or Core insert would give them."""
    row = {**_python_defaults(table, row), **row}
    columns = tuple(row)
    template = partial(_insert_template, table, columns)
    return Write(("insert", table.name, columns), template, row, table=table)


def _python_defaults(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    for name, default in _defaults_of(table):
        if name in row:
            continue
        if default.is_callable:
            defaults[name] = default.arg(None)
        elif default.is_scalar:
            defaults[name] = default.arg  # SQL expression defaults stay in the SQL
    return defaults


_DEFAULTS: dict[Table, tuple[tuple[str, ColumnDefault], ...]] = {}


def _defaults_of(table: Table) -> tuple[tuple[str, ColumnDefault], ...]:
    """The columns of `table` with a Python-side default (looked up once per table: every
    row a write path inserts asks)."""
    found = _DEFAULTS.get(table)
    if found is None:
        found = _DEFAULTS[table] = tuple(
            (column.name, column.default)
            for column in table.columns
            if isinstance(column.default, ColumnDefault)
        )
    return found


def _insert_template(
    table: Table, columns: tuple[str, ...], prefix: str, source: FromClause | None
) -> Insert:
    binds = [bindparam(prefix + name, type_=table.c[name].type) for name in columns]
    if source is None:
        return insert(table).values(dict(zip(columns, binds, strict=True)))
    return insert(table).from_select(list(columns), select(*binds).select_from(source))


def _rows_template(
    table: Table, columns: tuple[str, ...], prefix: str, source: FromClause | None
) -> Insert:
    """An INSERT of any number of rows of `table`: one array bind per column (`prefix` + the
    column's name), the rows read from them side by side (`unnest`), none when `source`
    (the refusal CTE) yields no row. PostgreSQL."""
    arrays = [
        cast(bindparam(prefix + name, type_=ARRAY(table.c[name].type)), ARRAY(table.c[name].type))
        for name in columns
    ]
    rows = func.unnest(*arrays).table_valued(*columns).render_derived(with_types=False)
    chosen = select(*(rows.c[name] for name in columns)).select_from(rows)
    if source is not None:
        chosen = chosen.select_from(source)
    return insert(table).from_select(list(columns), chosen)


def as_one_statement(statements: Sequence[Insert | Update]) -> Select[Any]:
    """PostgreSQL: several INSERT/UPDATE statements as one, each a data-modifying CTE.

    The SELECT reads each CTE's row count in the given order, which makes PostgreSQL run
    them in that order (unread CTEs would run after the main statement, last one first);
    the order matters for locks: the row every request contends for goes last.
    """
    ctes = [
        stmt.returning(literal_column("1")).cte(f"write_{n}") for n, stmt in enumerate(statements)
    ]
    return select(*(select(func.count()).select_from(cte).scalar_subquery() for cte in ctes))


def _refused(refuse_if: Sequence[Refusal]) -> ColumnElement[bool]:
    return or_(*(r.template(f"r{n}_") for n, r in enumerate(refuse_if)))


def _one_statement(writes: Sequence[Write], refuse_if: Sequence[Refusal]) -> Select[Any]:
    source = None
    if refuse_if:
        source = select(literal_column("1").label("go")).where(~_refused(refuse_if)).cte("go")
    return as_one_statement([w.template(f"w{n}_", source) for n, w in enumerate(writes)])


def _params(items: Sequence[Write | Refusal], letter: str) -> dict[str, Any]:
    return {f"{letter}{n}_{k}": v for n, item in enumerate(items) for k, v in item.values.items()}


_TEMPLATES: dict[Hashable, Executable] = {}
_DRIVER_STATEMENTS: dict[Hashable, _DriverStatement] = {}


def _template(key: Hashable, build: Callable[[], Executable]) -> Executable:
    statement = _TEMPLATES.get(key)
    if statement is None:
        if len(_TEMPLATES) >= 1024:
            _TEMPLATES.clear()  # keys come from code, not data; this only bounds a leak
        statement = _TEMPLATES[key] = build()
    return statement


@dataclass(frozen=True, slots=True)
class _DriverStatement:
    """A statement compiled once for asyncpg, executed on the pooled connection's driver.

    SQLAlchemy's per-execution work (cache lookup, execution context, parameter and result
    processing through its adapter) costs as much CPU as the rest of a payout's database
    work; one hot statement skips it and applies the same bind processors itself.
    """

    compiled: SQLCompiler
    processors: Mapping[str, Callable[[Any], Any]]
    # Per position: (bind key, bind name, the bind itself, its processor, and for a JSON
    # document the id of its type's implementation), when every bind has a name of its own;
    # None: ask `construct_params` (`_slots`).
    slots: tuple[_Slot, ...] | None

    @classmethod
    def of(cls, statement: Executable, dialect: Dialect) -> _DriverStatement:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        assert isinstance(compiled, SQLCompiler)
        if compiled.insert_prefetch or compiled.update_prefetch:
            # SQLAlchemy computes these per execution, which this path skips.
            raise ValueError("a write run on the driver must give every Python-side default")
        processors = {
            name: processor
            for name, bind in compiled.binds.items()
            if (processor := _bind_processor(bind.type, dialect))
        }
        return cls(compiled, processors, _slots(compiled, processors, dialect))

    def args(self, params: Mapping[str, Any], documents: _Documents | None = None) -> list[Any]:
        """The driver's positional arguments for `params`, bind processors applied.

        A JSON document serialized once for this write (`documents`, or this statement)
        is not serialized again: a payout stores its answer twice, as its idempotency
        record's body and as its event's payload."""
        if self.slots is None:
            values = self.compiled.construct_params(params) or {}
            return [
                self.processors[name](values[name]) if name in self.processors else values[name]
                for name in self.compiled.positiontup or ()
            ]
        out = []
        documents = {} if documents is None else documents
        for key, name, bind, processor, document in self.slots:
            # What `construct_params` gives each bind, without its dict of every bind.
            if key in params:
                value = params[key]
            elif name in params:
                value = params[name]
            elif bind.required:
                raise InvalidRequestError(f"A value is required for bind parameter {key!r}")
            else:
                value = bind.effective_value if bind.callable else bind.value
            if processor is None:
                out.append(value)
            elif document is not None and isinstance(value, dict | list):
                seen = documents.get((id(value), document))
                if seen is None:
                    # The value is held with its text, so its id names it for this write.
                    seen = documents[(id(value), document)] = (value, processor(value))
                out.append(seen[1])
            else:
                out.append(processor(value))
        return out

    async def executemany(
        self,
        driver: Any,
        rows: Sequence[Mapping[str, Any]],
        documents: _Documents,
        *,
        contended: bool,
    ) -> None:
        """Run the statement once per row in one round trip, inside the driver's transaction.
        An UPDATE must change exactly one row each time, so it runs row by row and checks.

        `contended` rows (`Write.contended`: account balances, the day's and a key's volume)
        are taken sorted by their values (e.g. by account, then asset, as `balance_changes`
        sorts them), so two group writes never lock two rows in opposite orders."""
        if contended:
            rows = _in_lock_order(rows)
        if self.compiled.isupdate:
            for row in rows:
                status = await driver.execute(self.compiled.string, *self.args(row, documents))
                if status != "UPDATE 1":
                    raise RuntimeError(f"an update of a group write changed {status!r}")
            return
        await driver.executemany(self.compiled.string, [self.args(row, documents) for row in rows])

    async def fetchrow(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Sequence[Any]:
        args = self.args(params)
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        try:
            row: Sequence[Any] = await driver.fetchrow(self.compiled.string, *args)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(self.compiled.string, args, exc) from exc
        except asyncpg.PostgresError:
            raise  # the server refused the statement; the connection is fine
        except BaseException:
            # Broken, or abandoned mid-statement (cancelled): never hand it out again.
            await conn.invalidate()
            raise
        return row


def _bind_processor(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """What a bind of `type_` applies to its value. A one-dimensional ARRAY (a column's
    values, `_rows_template`) gets its items processed in one comprehension, or not at all
    when its items need nothing: SQLAlchemy's own walks every item through its dimension
    handling, which cost more than the rest of a group's arguments."""
    if isinstance(type_, ARRAY) and type_.dimensions in (None, 1):
        item = type_.item_type.dialect_impl(dialect).bind_processor(dialect)
        if item is None:
            return None
        return lambda values: None if values is None else [item(value) for value in values]
    processor: Callable[[Any], Any] | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor


_Slot = tuple[str, str, BindParameter[Any], Callable[[Any], Any] | None, int | None]
# (id of a document, id of its JSON type's implementation) -> (the document, its bind value)
_Documents = dict[tuple[int, int], tuple[Any, Any]]


def _document(bind: BindParameter[Any], dialect: Dialect) -> int | None:
    """The id of a JSON bind's type implementation (equal ids, equal processing), else None."""
    impl = bind.type.dialect_impl(dialect)
    return id(impl) if isinstance(impl, JSON) else None


def _slots(
    compiled: SQLCompiler, processors: Mapping[str, Callable[[Any], Any]], dialect: Dialect
) -> tuple[_Slot, ...] | None:
    """`_DriverStatement.slots`: None unless each position's value comes from one bind as
    plainly as `construct_params` reads it (no escaped or shared names, nothing collected
    or expanded at execution), for which its general path stays."""
    names = compiled.bind_names
    if (
        compiled.escaped_bind_names
        or (compiled._collect_params and compiled._collected_params)
        or compiled._render_postcompile
        or compiled.positiontup is None
        or len(set(names.values())) != len(names)
    ):
        return None
    by_name = {name: bind for bind, name in names.items()}
    if set(by_name) != set(compiled.positiontup) or any(b.expanding for b in by_name.values()):
        return None
    return tuple(
        (
            by_name[name].key,
            name,
            by_name[name],
            processors.get(name),
            _document(by_name[name], dialect),
        )
        for name in compiled.positiontup
    )


def _driver_template(
    key: Hashable, build: Callable[[], Executable], dialect: Dialect
) -> _DriverStatement:
    statement = _DRIVER_STATEMENTS.get(key)
    if statement is None:
        if len(_DRIVER_STATEMENTS) >= 1024:
            _DRIVER_STATEMENTS.clear()
        statement = _DRIVER_STATEMENTS[key] = _DriverStatement.of(build(), dialect)
    return statement


async def write_at_once(
    conn: AsyncConnection, writes: Sequence[Write], refuse_if: Sequence[Refusal] = ()
) -> bool:
    """Run `writes` in order as one atomic write on a `Database.one_write` connection, unless
    one of `refuse_if` holds; returns False (and writes nothing) when one did.

    PostgreSQL: one statement and one round trip, the refusals checked inside it
    (`as_one_statement`, every write reading its row from a CTE that is empty when refused);
    a failed part raises sqlalchemy's IntegrityError as usual.
    SQLite (no data-modifying CTEs): one SELECT for the refusals, then the statements in
    order, inside the connection's transaction.
    """
    if not writes:
        raise ValueError("an atomic write needs at least one write")
    refusal_keys = tuple(r.key for r in refuse_if)
    params = _params(refuse_if, "r")
    if conn.dialect.name == "postgresql":
        key = ("one", refusal_keys, tuple(w.key for w in writes))
        statement = _driver_template(key, lambda: _one_statement(writes, refuse_if), conn.dialect)
        counts = await statement.fetchrow(conn, params | _params(writes, "w"))
        if any(counts) and not all(counts):
            raise RuntimeError(f"a write of one statement wrote partly: {tuple(counts)}")
        return bool(counts[0])
    if refuse_if and await _refuses(conn, refuse_if):
        return False
    for write in writes:
        insert_ = _template(write.key, partial(write.template, "", None))
        await conn.execute(insert_, dict(write.values))
    return True


async def _refuses(conn: AsyncConnection, refuse_if: Sequence[Refusal]) -> bool:
    """Whether one of `refuse_if` holds now (one SELECT)."""
    key = ("refuse_if", tuple(r.key for r in refuse_if))
    check = _template(key, lambda: select(_refused(refuse_if)))
    return bool((await conn.execute(check, _params(refuse_if, "r"))).scalar())


async def write_together(
    conn: AsyncConnection,
    atomic_writes: Sequence[Sequence[Write]],
    refuse_if: Sequence[Refusal] = (),
) -> bool:
    """Several atomic writes (each what one `write_at_once` would write) as ONE transaction on
    a `Database.one_write` connection, with one multi-row statement per kind of write (an
    executemany, as the payout batch writes); returns False (and writes nothing) when one of
    `refuse_if` holds. All or nothing: any failure raises and nothing is written.

    Kinds of write run in an order that keeps every atomic write's own order (the idempotency
    records first, the day's volume last), so rows are locked in the order `write_at_once`
    locks them. BEGIN, the refusals' SELECT, the statements, COMMIT, all on the driver (as
    `write_at_once`'s one statement: `_DriverStatement`); a unique or CHECK violation raises
    sqlalchemy's IntegrityError as usual. PostgreSQL only, as the group commit it serves
    (payments/coalesce.py; SQLite serializes every writer anyway).
    """
    if not atomic_writes:
        raise ValueError("a write together needs at least one atomic write")
    if conn.dialect.name != "postgresql":
        raise ValueError("a write together runs on PostgreSQL only")
    refusals = list({(r.key, tuple(r.values.items())): r for r in refuse_if}.values())
    merged = [
        (key, _summed(rows) if rows[0].adds else rows) for key, rows in _merged(atomic_writes)
    ]
    if all(_one_row_or_many(rows) for _, rows in merged):
        return await _together_at_once(conn, merged, refusals)
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    try:
        async with driver.transaction():
            if refusals:
                check_key = ("refuse_if", tuple(r.key for r in refusals))
                check = _driver_template(
                    check_key, lambda: select(_refused(refusals)), conn.dialect
                )
                if await driver.fetchval(
                    check.compiled.string, *check.args(_params(refusals, "r"))
                ):
                    return False  # nothing was written: the empty transaction commits
            documents: _Documents = {}
            for key, rows in merged:
                build = partial(rows[0].template, "", None)
                statement = _driver_template(("many", key), build, conn.dialect)
                values = [row.values for row in rows]
                await statement.executemany(driver, values, documents, contended=rows[0].contended)
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError("write_together", None, exc) from exc
    except asyncpg.PostgresError:
        raise  # the server refused a statement and the transaction rolled back
    except BaseException:
        # Broken, or abandoned mid-transaction (cancelled): never hand it out again.
        await conn.invalidate()
        raise
    return True


def _one_row_or_many(rows: Sequence[Write]) -> bool:
    """Whether a kind of write can be part of a group's single statement: rows that
    `insert_row` made (one INSERT of them all, every row or an error), or counter rows
    (`Write.adds`, summed: each an upsert that changes its own row once, or fails; a row
    changed twice by one statement fails it). Anything else (an UPDATE may change no row)
    takes `write_together`'s statement per kind, inside a transaction, where each is
    checked."""
    return rows[0].table is not None or bool(rows[0].adds)


async def _together_at_once(
    conn: AsyncConnection,
    kinds: Sequence[tuple[Hashable, Sequence[Write]]],
    refusals: Sequence[Refusal],
) -> bool:
    """`write_together` as ONE statement (`as_one_statement`): each `insert_row` kind one
    INSERT of all its rows (`_rows_template`, arrays of values), each counter row (summed)
    its own upsert, every part empty when a refusal holds. On an autocommit connection it
    is atomic by itself and its row locks (the day's volume, the balances) end with it,
    with no round trip between the last write and the COMMIT, nor any before the first."""
    shape = tuple((key, "rows" if rows[0].table is not None else len(rows)) for key, rows in kinds)
    statement = _driver_template(
        ("together", tuple(r.key for r in refusals), shape),
        lambda: _together_statement(kinds, refusals),
        conn.dialect,
    )
    params = _params(refusals, "r")
    expected = []
    for n, (_, rows) in enumerate(kinds):
        if rows[0].table is not None:
            for name in rows[0].values:
                params[f"w{n}_{name}"] = [row.values[name] for row in rows]
            expected.append(len(rows))
            continue
        # Counter rows in a sorted order, as `_DriverStatement.executemany` takes them.
        for j, values in enumerate(_in_lock_order([row.values for row in rows])):
            params.update({f"w{n}_{j}_{name}": value for name, value in values.items()})
            expected.append(1)
    counts = list(await statement.fetchrow(conn, params))
    if not any(counts):
        return False  # refused: nothing was written
    if counts != expected:
        raise RuntimeError(f"a group's one statement wrote {counts}, not {expected}")
    return True


def _in_lock_order(rows: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
    """Contended rows of one statement (same names), sorted by their values in name order,
    so two writes never lock two rows in opposite orders."""
    if len(rows) < 2:
        return rows
    names = sorted(rows[0])
    return sorted(rows, key=lambda row: [repr(row[name]) for name in names])


def _together_statement(
    kinds: Sequence[tuple[Hashable, Sequence[Write]]], refusals: Sequence[Refusal]
) -> Select[Any]:
    source = None
    if refusals:
        source = select(literal_column("1").label("go")).where(~_refused(refusals)).cte("go")
    parts: list[Insert | Update] = []
    for n, (_, rows) in enumerate(kinds):
        first = rows[0]
        if first.table is not None:
            parts.append(_rows_template(first.table, tuple(first.values), f"w{n}_", source))
        else:
            parts.extend(first.template(f"w{n}_{j}_", source) for j in range(len(rows)))
    return as_one_statement(parts)


def _summed(rows: Sequence[Write]) -> list[Write]:
    """`Write.adds` rows of one key: those equal but for the added values, as one row of
    their sum. All or nothing, a group's additions pass a limit together exactly when they
    pass it one after another, as none is negative where a limit applies (`Write.adds`)."""
    adds = rows[0].adds
    sums: dict[tuple[tuple[str, Any], ...], tuple[Write, dict[str, Any] | None]] = {}
    for row in rows:
        values = row.values
        same = tuple((k, v) for k, v in values.items() if k not in adds)
        seen = sums.get(same)
        if seen is None:
            sums[same] = (row, None)
            continue
        first, total = seen
        if total is None:
            total = dict(first.values)
            sums[same] = (first, total)
        for name in adds:
            total[name] += values[name]
    return [
        first if total is None else replace(first, values=total) for first, total in sums.values()
    ]


def _merged(atomic_writes: Sequence[Sequence[Write]]) -> list[tuple[Hashable, list[Write]]]:
    """The writes grouped by key (equal keys, equal SQL), the groups ordered so that each
    atomic write's keys keep their order, and among keys free to go, by the keys themselves
    (so two groups never take unrelated kinds of row in opposite orders); a cycle (one write
    needing A before B, another B before A) raises ValueError."""
    rows: dict[Hashable, list[Write]] = {}
    after: dict[Hashable, set[Hashable]] = {}
    waiting: dict[Hashable, int] = {}
    for writes in atomic_writes:
        previous: Hashable | None = None
        for write in writes:
            key = write.key
            if key not in rows:
                rows[key], after[key], waiting[key] = [], set(), 0
            rows[key].append(write)
            if previous is not None and previous != key and key not in after[previous]:
                after[previous].add(key)
                waiting[key] += 1
            previous = key
    keys = sorted(rows, key=repr)
    first = {key: n for n, key in enumerate(keys)}  # keys[first[key]] == key
    ready = [first[k] for k in keys if not waiting[k]]
    heapq.heapify(ready)
    order: list[tuple[Hashable, list[Write]]] = []
    while ready:
        key = keys[heapq.heappop(ready)]
        order.append((key, rows[key]))
        for later in after[key]:
            waiting[later] -= 1
            if not waiting[later]:
                heapq.heappush(ready, first[later])
    if len(order) != len(rows):
        raise ValueError("the atomic writes order their kinds of write differently")
    return order
