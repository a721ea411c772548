"""SQL of the dashboard's Payments pages: filters, keyset pages, CSV batches, one payment's story.

Every list query is ordered by (created_at, id) descending and pages by keyset, so a page costs
the same at the first and the 2,000th page; filters are WHERE clauses the database evaluates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, get_args
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, String, and_, exists, func, literal, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.chain.address import parse_address
from tonrail.db import Database, UTCDateTime
from tonrail.errors import InvalidRequest, TonrailError
from tonrail.events.models import OutboxEvent
from tonrail.fees.service import fee_decisions_for
from tonrail.ledger.models import JournalEntry, LedgerLine
from tonrail.money import ASSET_DECIMALS, parse_minor
from tonrail.payments.models import Approval, Attempt, Payment
from tonrail.payments.schemas import FeeDecisionOut
from tonrail.payments.states import INVOICE_TRANSITIONS, PAYOUT_TRANSITIONS
from tonrail.rails.base import RailName
from tonrail.rails.ton.models import TonDeposit, TonRequest, TonTransfer
from tonrail.treasury.models import TreasuryOrder

STATUSES: tuple[str, ...] = tuple(sorted({*PAYOUT_TRANSITIONS, *INVOICE_TRANSITIONS}))
RAILS: tuple[str, ...] = tuple(get_args(RailName))
DIRECTIONS: tuple[str, ...] = ("out", "in")
ASSETS: tuple[str, ...] = tuple(ASSET_DECIMALS)
FILTER_KEYS: tuple[str, ...] = (
    "status",
    "rail",
    "asset",
    "direction",
    "date_from",
    "date_to",
    "amount_min",
    "amount_max",
    "q",
)
MAX_QUERY = 128
COUNT_CAP = 1_000
RARE_RAIL = 2_000


class FilterInvalid(InvalidRequest):
    """A filter value the page cannot use: 400 with the parameter it came from."""

    code = "filter_invalid"


@dataclass(frozen=True)
class PaymentFilters:
    """The filters of the list, as typed (`raw`, kept in URLs) and as parsed."""

    raw: dict[str, str] = field(default_factory=dict)
    status: str | None = None
    rail: str | None = None
    asset: str | None = None
    direction: str | None = None
    created_from: datetime | None = None  # inclusive
    created_until: datetime | None = None  # exclusive
    amount_min: dict[str, int] = field(default_factory=dict)  # per asset, minor units
    amount_max: dict[str, int] = field(default_factory=dict)
    q: str | None = None
    q_addresses: tuple[str, ...] = ()  # every spelling of the address in `q`, if it is one

    @property
    def active(self) -> bool:
        return bool(self.raw)

    def query(self, **extra: str) -> str:
        """The URL query string of these filters plus `extra` (a cursor), without the `?`."""
        return urlencode({**self.raw, **extra})


def _choice(params: Mapping[str, str], name: str, allowed: Sequence[str]) -> str | None:
    value = params.get(name, "").strip()
    if not value:
        return None
    if value not in allowed:
        raise FilterInvalid(
            f"{name} must be one of {', '.join(allowed)}; got {value[:40]!r}", param=name
        )
    return value


def _when(params: Mapping[str, str], name: str, end: bool) -> datetime | None:
    """A UTC date (the whole day) or date-time; `end` gives the exclusive upper bound."""
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time.min, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FilterInvalid(
            f"{name} must be a date like 2026-01-31 or a time like 2026-01-31T14:00; "
            f"got {text[:40]!r}",
            param=name,
        ) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment + timedelta(microseconds=1) if end else moment


def _amounts(params: Mapping[str, str], name: str, asset: str | None) -> dict[str, int]:
    """Major units -> minor units per asset, compared exactly.

    With an asset chosen the text must fit its decimals. Without one the bound applies to each
    asset in its own units: a lower bound rounds up and an upper bound down, which is the
    exact comparison (1.005 USD or more = 1.01 USD or more in cents).
    """
    text = params.get(name, "").strip()
    if not text:
        return {}
    lower = name == "amount_min"
    try:
        if asset is not None:
            return {asset: parse_minor(text, asset, "exact", param=name)}
        return {
            a: parse_minor(text, a, "ceiling" if lower else "down", param=name)
            for a in ASSET_DECIMALS
        }
    except TonrailError as exc:
        raise FilterInvalid(
            f"{name}: {exc.message} (amounts are in major units, e.g. 12.50)", param=name
        ) from None


def _address_forms(text: str) -> tuple[str, ...]:
    """Every way an address may have been written: raw and the four user-friendly forms."""
    if len(text) not in (48, 66, 67):  # user-friendly, raw `0:hex`, raw `-1:hex`
        return ()
    try:
        address = parse_address(text, "q")
    except TonrailError:
        return ()
    forms = {address.to_str(is_user_friendly=False)}  # type: ignore[no-untyped-call]
    for bounceable in (True, False):
        for test_only in (True, False):
            forms.add(
                address.to_str(  # type: ignore[no-untyped-call]
                    is_user_friendly=True, is_bounceable=bounceable, is_test_only=test_only
                )
            )
    forms.add(text)
    return tuple(sorted(str(f) for f in forms))


def parse_filters(params: Mapping[str, str]) -> PaymentFilters:
    """Read the list's filters from a query string; FilterInvalid (400) on any bad value."""
    raw = {k: params[k].strip() for k in FILTER_KEYS if params.get(k, "").strip()}
    asset = _choice(params, "asset", ASSETS)
    created_from = _when(params, "date_from", end=False)
    created_until = _when(params, "date_to", end=True)
    if created_from and created_until and created_from >= created_until:
        raise FilterInvalid("date_from must be before date_to", param="date_from")
    amount_min = _amounts(params, "amount_min", asset)
    amount_max = _amounts(params, "amount_max", asset)
    if amount_min and amount_max:
        low, high = Decimal(raw["amount_min"]), Decimal(raw["amount_max"])
        if low > high:
            raise FilterInvalid("amount_min is larger than amount_max", param="amount_min")
    q = raw.get("q")
    if q is not None and len(q) > MAX_QUERY:
        raise FilterInvalid(f"search text is longer than {MAX_QUERY} characters", param="q")
    return PaymentFilters(
        raw=raw,
        status=_choice(params, "status", STATUSES),
        rail=_choice(params, "rail", RAILS),
        asset=asset,
        direction=_choice(params, "direction", DIRECTIONS),
        created_from=created_from,
        created_until=created_until,
        amount_min=amount_min,
        amount_max=amount_max,
        q=q,
        q_addresses=_address_forms(q) if q else (),
    )


ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
REFERENCE_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _prefix(column: Any, prefix: str, alphabet: str) -> ColumnElement[bool] | None:
    """`column` starts with `prefix`, as an index range plus an exact check.

    The range is `prefix <= column < next(prefix)`, where next() increments the last symbol in
    `alphabet`; ids and references are written in these alphabets, whose order is the same
    in every collation (digits before letters, one case), so the range can use the index.
    """
    head = prefix.rstrip(alphabet[-1])
    if not head or head[-1] not in alphabet:
        return None
    upper = head[:-1] + alphabet[alphabet.index(head[-1]) + 1]
    result: ColumnElement[bool] = and_(
        column >= prefix,
        column < upper,
        func.substr(column, 1, len(prefix)) == prefix,
    )
    return result


async def rail_is_rare(session: AsyncSession, rail: str | None) -> bool:
    """Few attempts ever ran on `rail`: a list filtered by it starts from those attempts."""
    if rail is None:
        return False
    few = await session.scalar(
        select(func.count()).select_from(
            select(Attempt.payment_id).where(Attempt.rail == rail).limit(RARE_RAIL + 1).subquery()
        )
    )
    return int(few or 0) <= RARE_RAIL


def conditions(f: PaymentFilters, rare_rail: bool = False) -> list[ColumnElement[bool]]:
    """The WHERE clauses of `f` on `payments` (`rare_rail`: see rail_is_rare)."""
    # One clause per filter of this page; alike other pages' filters in shape only.
    where: list[ColumnElement[bool]] = []
    if f.status:
        where.append(Payment.status == f.status)
    if f.direction:
        where.append(Payment.direction == f.direction)
    if f.asset:
        where.append(Payment.asset == f.asset)
    if f.rail:
        where.append(
            Payment.id.in_(select(Attempt.payment_id).where(Attempt.rail == f.rail))
            if rare_rail
            # A common rail: walk the list's index and stop at a full page, probing each
            # payment, instead of sorting every payment the rail ever carried.
            else exists().where(Attempt.payment_id == Payment.id, Attempt.rail == f.rail)
        )
    if f.created_from:
        where.append(Payment.created_at >= f.created_from)
    if f.created_until:
        where.append(Payment.created_at < f.created_until)
    for bounds, lower in ((f.amount_min, True), (f.amount_max, False)):
        if bounds:
            where.append(
                or_(
                    *(
                        and_(
                            Payment.asset == asset,
                            Payment.amount >= minor if lower else Payment.amount <= minor,
                        )
                        for asset, minor in bounds.items()
                    )
                )
            )
    if f.q:
        # Each term can use an index: whole id, reference or address (any spelling), an
        # invoice's payer, or the beginning of an id (`pay_0mx…`) or reference (`TR-AB…`).
        q = f.q
        matches: list[ColumnElement[bool]] = [
            Payment.id == q.lower(),
            Payment.reference == q.upper(),
            Payment.counterparty == q,
        ]
        if f.q_addresses:
            matches.append(Payment.counterparty.in_(f.q_addresses))
            matches.append(
                Payment.id.in_(
                    select(TonDeposit.payment_id).where(
                        TonDeposit.sender.in_(f.q_addresses), TonDeposit.payment_id.is_not(None)
                    )
                )
            )
        for column, text, alphabet, head in (
            (Payment.id, q.lower(), ID_ALPHABET, "pay_"),
            (Payment.reference, q.upper(), REFERENCE_ALPHABET, "TR-"),
        ):
            if text.startswith(head) and len(text) > len(head):
                tail = _prefix(column, text, alphabet)
                if tail is not None:
                    matches.append(tail)
        where.append(or_(*matches))
    return where


@dataclass
class PaymentRow:
    payment: Payment
    rail: str | None  # of the latest attempt, else the route


@dataclass
class PaymentPage:
    rows: list[PaymentRow]
    newer: str | None  # cursor (a payment id) of the page before, if there is one
    older: str | None  # cursor of the page after
    matching: int  # how many payments match, counted up to COUNT_CAP + 1


# (created_at, id) compared as a row value: one index range on both SQLite and PostgreSQL.
_keyset = tuple_(Payment.created_at, Payment.id)


def _key(cursor: tuple[datetime, str]) -> Any:
    """A cursor as a row value, bound with the columns' types (UTC datetimes on SQLite)."""
    at, pid = cursor
    return tuple_(literal(at, UTCDateTime()), literal(pid, String()))


async def _cursor(session: AsyncSession, payment_id: str, param: str) -> tuple[datetime, str]:
    row = (
        await session.execute(
            select(Payment.created_at, Payment.id).where(Payment.id == payment_id[:40])
        )
    ).first()
    if row is None:
        raise FilterInvalid(f"{param}: no payment {payment_id[:40]!r} to page from", param=param)
    return row[0], row[1]


async def latest_rails(session: AsyncSession, ids: Sequence[str]) -> dict[str, str]:
    """The rail of each payment's latest attempt (payments without one are left out)."""
    latest: dict[str, tuple[int, str]] = {}
    if ids:
        rows = await session.execute(
            select(Attempt.payment_id, Attempt.number, Attempt.rail).where(
                Attempt.payment_id.in_(ids)
            )
        )
        for pid, number, rail in rows.all():
            if pid not in latest or number > latest[pid][0]:
                latest[pid] = (number, rail)
    return {pid: rail for pid, (_, rail) in latest.items()}


async def rails_of(session: AsyncSession, payments: Sequence[Payment]) -> dict[str, str | None]:
    """The rail each payment went on: its latest attempt's, else the route chosen for it."""
    latest = await latest_rails(session, [p.id for p in payments])
    return {p.id: latest.get(p.id, p.route) for p in payments}


async def page(
    session: AsyncSession,
    f: PaymentFilters,
    size: int,
    after: str | None = None,
    before: str | None = None,
) -> PaymentPage:
    """One page newest first: the first, the one after `after`, or the one before `before`."""
    where = conditions(f, await rail_is_rare(session, f.rail))
    stmt = select(Payment).where(*where)
    newest_first = True
    if after:
        stmt = stmt.where(_keyset < _key(await _cursor(session, after, "after")))
    elif before:
        stmt = stmt.where(_keyset > _key(await _cursor(session, before, "before")))
        newest_first = False
    if newest_first:
        stmt = stmt.order_by(Payment.created_at.desc(), Payment.id.desc())
    else:
        stmt = stmt.order_by(Payment.created_at.asc(), Payment.id.asc())
    found = list((await session.execute(stmt.limit(size + 1))).scalars())
    more = len(found) > size
    found = found[:size]
    if not newest_first:
        found.reverse()
    rails = await rails_of(session, found)
    if not after and not before and not more:
        matching: int | None = len(found)  # the first page holds them all: nothing to count
    else:
        matching = await session.scalar(
            select(func.count()).select_from(
                select(Payment.id).where(*where).limit(COUNT_CAP + 1).subquery()
            )
        )
    rows = [PaymentRow(p, rails[p.id]) for p in found]
    if newest_first:
        newer = rows[0].payment.id if after and rows else None
        older = rows[-1].payment.id if more and rows else None
    else:
        newer = rows[0].payment.id if more and rows else None
        older = rows[-1].payment.id if rows else None
    return PaymentPage(rows, newer, older, int(matching or 0))


EXPORT_COLUMNS = (
    Payment.id,
    Payment.created_at,
    Payment.direction,
    Payment.status,
    Payment.asset,
    Payment.amount,
    Payment.usdt_equivalent,
    Payment.counterparty,
    Payment.reference,
    Payment.priority,
    Payment.failure_code,
    Payment.description,
    Payment.metadata_.label("metadata"),
    Payment.completed_at,
    Payment.account_id,
    Payment.requested_by,
    Payment.route,
)


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One payment of a CSV export: its columns (a plain row, no ORM object) and its rail."""

    row: Any
    rail: str | None


async def export_batches(
    db: Database, f: PaymentFilters, batch: int = 2000
) -> AsyncIterator[list[ExportRow]]:
    """Every payment matching `f`, newest first, in batches each read in its own short
    transaction (a long export never holds SQLite's lock or a PostgreSQL snapshot)."""
    async with db.transaction() as session:
        where = conditions(f, await rail_is_rare(session, f.rail))
    cursor: tuple[datetime, str] | None = None
    while True:
        async with db.transaction() as session:
            stmt = select(*EXPORT_COLUMNS).where(*where)
            if cursor is not None:
                stmt = stmt.where(_keyset < _key(cursor))
            stmt = stmt.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(batch)
            found = (await session.execute(stmt)).all()
            rails = await latest_rails(session, [r.id for r in found])
        if found:
            yield [ExportRow(r, rails.get(r.id, r.route)) for r in found]
        if len(found) < batch:
            return
        cursor = (found[-1].created_at, found[-1].id)


# ------------------------------------------------------------------ one payment
@dataclass
class AttemptStory:
    attempt: Attempt
    transfer: TonTransfer | None  # TON: the transfer inside a highload request
    request: TonRequest | None


@dataclass
class JournalStory:
    entry: JournalEntry
    lines: list[LedgerLine]


@dataclass
class PaymentDetail:
    payment: Payment
    attempts: list[AttemptStory]
    journal: list[JournalStory]
    fee_decision: FeeDecisionOut | None
    events: list[OutboxEvent]
    approvals: list[Approval]
    deposits: list[TonDeposit]
    treasury_order: TreasuryOrder | None = None  # a payout paid from the treasury multisig


async def detail(session: AsyncSession, payment_id: str) -> PaymentDetail | None:
    """Everything recorded about one payment, each part in one query."""
    payment = await session.get(Payment, payment_id[:40])
    if payment is None:
        return None
    attempts = list(
        await session.scalars(
            select(Attempt).where(Attempt.payment_id == payment.id).order_by(Attempt.number)
        )
    )
    transfers = {
        t.attempt_id: t
        for t in await session.scalars(
            select(TonTransfer).where(TonTransfer.payment_id == payment.id)
        )
    }
    request_ids = {t.request_id for t in transfers.values()}
    requests = (
        {
            r.id: r
            for r in await session.scalars(select(TonRequest).where(TonRequest.id.in_(request_ids)))
        }
        if request_ids
        else {}
    )
    stories = []
    for a in attempts:
        t = transfers.get(a.id)
        stories.append(AttemptStory(a, t, requests.get(t.request_id) if t else None))
    entries = list(
        await session.scalars(
            select(JournalEntry)
            .where(JournalEntry.payment_id == payment.id)
            .order_by(JournalEntry.created_at, JournalEntry.id)
        )
    )
    lines: dict[str, list[LedgerLine]] = {e.id: [] for e in entries}
    if entries:
        for line in await session.scalars(
            select(LedgerLine).where(LedgerLine.entry_id.in_(list(lines))).order_by(LedgerLine.id)
        ):
            lines[line.entry_id].append(line)
    decision = (
        (await fee_decisions_for(session, [payment.id])).get(payment.id)
        if payment.direction == "out"
        else None
    )
    events = list(
        await session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.payment_id == payment.id)
            .order_by(OutboxEvent.seq)
        )
    )
    approvals = list(
        await session.scalars(
            select(Approval).where(Approval.payment_id == payment.id).order_by(Approval.id)
        )
    )
    deposits = list(
        await session.scalars(
            select(TonDeposit)
            .where(TonDeposit.payment_id == payment.id)
            .order_by(TonDeposit.created_at)
        )
    )
    order = (
        await session.scalar(select(TreasuryOrder).where(TreasuryOrder.payment_id == payment.id))
        if payment.route == "treasury"
        else None
    )
    return PaymentDetail(
        payment=payment,
        attempts=stories,
        journal=[JournalStory(e, lines[e.id]) for e in entries],
        fee_decision=decision,
        events=events,
        approvals=approvals,
        deposits=deposits,
        treasury_order=order,
    )
