"""Reconciliation: the hot wallet's balances in the ledger must equal its balances on chain.

TON is compared while requests are in flight, up to an lt `B` of the hot wallet's chain:

1. A snapshot of the hot wallet: its balance and the lt `L` of its last transaction.
2. `B` is the highest lt <= L up to which every transaction of the hot wallet is booked:
   at most the deposit watcher's cursor (deposits are booked as it reads them), below the
   external of every request still open (its lt, or, while the tracker has not seen it, the
   last transaction older than the request's created_at: the wallet refuses a request from
   the future), below the transactions open treasury orders may bring (proposals, top-ups),
   and never inside the transactions of a booked movement (a payout whose bounce or excess
   came back later: `chain_first_lt <= B < chain_lt` of its journal entry).
3. The chain's balance at `B` is the balance less what each transaction after `B` changed
   (`ton_change`, read back from `L`); the books' is the hot wallet's balance without the
   entries booking transactions after `B` (`balance_through`). Reserved payouts are not in
   the hot wallet's account until they are booked as sent, so they never count.

USDT (when enabled) is compared at the same `B`: our jetton wallet's balance (`get_wallet_data`,
read between two equal last lts, after the books' cut) less what its transactions that come
after `B` on the hot wallet's chain changed (`_usdt_through`: debits by the hot transaction
that sent the `transfer`, credits by the one that took the notification, a bounced transfer
by its debit), against the books without the entries after `B`. A round that cannot place
them (a read-back limit) compares TON only and says why in `reason`.

A difference is logged as an error and written as an outbox event
(`ton.reconciliation.mismatch`) once per distinct difference; every check also writes the
differences (0 when none) as the `books_difference` signal of each asset it compared, on which
the critical alert `books_mismatch` opens and resolves (monitoring/rules.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.events.models import OutboxEvent
from tonrail.events.service import emit
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance_through, straddling_first_lt
from tonrail.monitoring.signals import BOOKS_DIFFERENCE, write_signal
from tonrail.processing.context import TonRailContext
from tonrail.processing.rotation_pause import signing_paused
from tonrail.rails.ton.api import jetton_balance
from tonrail.rails.ton.chain_view import JETTON_NOTIFY_OP, Tx, jetton_move, same_address, ton_change
from tonrail.rails.ton.models import TonRequest, TonWalletCursor
from tonrail.rails.ton.states import OPEN_REQUEST_STATES
from tonrail.treasury.models import OrderPurpose, OrderStatus, TreasuryOrder

log = structlog.get_logger(__name__)

PAGE = 100  # transactions read back per call
MAX_READ_BACK = 2_000  # more than this between `L` and `B`: not checked this round


@dataclass(frozen=True, slots=True)
class Reconciliation:
    checked: bool  # False when no comparison could be made (see `reason`)
    differences: dict[str, int]  # asset -> chain minus ledger, minor units
    lt: int | None = None  # the hot wallet's lt TON and USDT were compared at (`B`)
    chain_lt: int | None = None  # the snapshot's last lt (`L`)
    assets: tuple[str, ...] = ()  # the assets compared
    reason: str | None = None  # why not checked (checked: why USDT was not compared)
    quiet: bool = False  # compared at a quiet point: every asset, nothing in flight
    chain: dict[str, int] = field(default_factory=dict)
    ledger: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Bounds:
    cursor: int | None
    below: int | None  # B must be below this lt (an open request's external)
    not_before: int | None  # B must be below the first transaction at or after this time
    quiet: bool  # no request open at all


async def _snapshot(ctx: TonRailContext, address: str) -> tuple[int, int] | None:
    """(last lt, balance) of one state: the lt read on both sides of the balance."""
    for _ in range(3):
        lt = await ctx.api.last_lt(address)
        _, ton = await ctx.api.account_state(address)
        if await ctx.api.last_lt(address) == lt:
            return lt, ton
    return None


async def _bounds(ctx: TonRailContext, session: AsyncSession) -> _Bounds:
    cursor = await session.get(TonWalletCursor, ctx.wallet_raw)
    below: list[int] = []
    not_before: list[int] = []
    rows = await session.execute(
        select(TonRequest.ext_lt, TonRequest.chain_created_at).where(
            TonRequest.status.in_(OPEN_REQUEST_STATES)
        )
    )
    quiet = True
    for ext_lt, chain_created_at in rows.all():
        quiet = False
        if ext_lt is not None:
            below.append(int(ext_lt))
        else:
            not_before.append(int(chain_created_at))
    orders = await session.execute(
        select(
            TreasuryOrder.status,
            TreasuryOrder.purpose,
            TreasuryOrder.valid_until,
            TreasuryOrder.created_at,
        ).where(
            TreasuryOrder.status.in_(
                (OrderStatus.SIGNED, OrderStatus.PROPOSED, OrderStatus.EXECUTED)
            )
        )
    )
    for status, purpose, valid_until, ordered_at in orders.all():
        if status == OrderStatus.SIGNED:  # its proposal may be on chain, not yet booked
            not_before.append(int(valid_until) - ctx.wallet.timeout)
        elif purpose == OrderPurpose.TOPUP:  # the top-up may arrive once approvers executed it
            not_before.append(int(ordered_at.timestamp()))
    return _Bounds(
        cursor=int(cursor.last_lt) if cursor is not None else None,
        below=min(below) if below else None,
        not_before=min(not_before) if not_before else None,
        quiet=quiet,
    )


class _History:
    """An account's transactions (the hot wallet's unless told) at or below `top`, read
    back on demand."""

    def __init__(self, ctx: TonRailContext, top: int, account: str | None = None):
        self.ctx = ctx
        self.account = account or ctx.wallet_raw
        self.txs: list[Tx] = []  # newest first
        self.before = top + 1
        self.exhausted = False

    async def more(self) -> bool:
        """Read the next older page; False when there is none or the limit is reached."""
        if self.exhausted or len(self.txs) >= MAX_READ_BACK:
            return False
        page = await self.ctx.api.transactions_before(self.account, self.before, PAGE)
        page = [t for t in page if t.lt < self.before]
        if not page:
            self.exhausted = True
            return False
        self.txs += sorted(page, key=lambda t: t.lt, reverse=True)
        self.before = self.txs[-1].lt
        return True

    async def reach(self, lt: int) -> bool:
        """Read back until a transaction at or below `lt` (or the first one) is read."""
        while not self.exhausted and (not self.txs or self.txs[-1].lt > lt):
            if not await self.more():
                return self.exhausted
        return True

    async def last_before(self, unix_time: int) -> int | None:
        """The lt of the newest transaction older than `unix_time` (0: there is none)."""
        while True:
            for tx in self.txs:
                if tx.now < unix_time:
                    return tx.lt
            if not await self.more():
                return 0 if self.exhausted else None


async def _ton_through(
    ctx: TonRailContext, snapshot: tuple[int, int], bounds: _Bounds
) -> tuple[int, int, int] | str:
    """(B, the chain's TON at B, the books' TON at B), or why they cannot be compared."""
    top, ton = snapshot
    if bounds.cursor is None:
        return "the deposit watcher has read nothing yet"
    lt = min(top, bounds.cursor)
    if bounds.below is not None:
        lt = min(lt, bounds.below - 1)
    history = _History(ctx, top)
    if bounds.not_before is not None:
        older = await history.last_before(bounds.not_before)
        if older is None:
            return f"more than {MAX_READ_BACK} transactions since the oldest request in flight"
        lt = min(lt, older)
    async with ctx.db.transaction() as session:
        while (first := await straddling_first_lt(session, books.HOT_WALLET, lt)) is not None:
            lt = first - 1
        if lt <= 0:
            return "no transaction of the hot wallet is booked completely yet"
        ledger = await balance_through(session, books.HOT_WALLET, "TON", lt)
    if not await history.reach(lt):
        return f"more than {MAX_READ_BACK} transactions since lt {lt}"
    chain = ton - sum(ton_change(tx) for tx in history.txs if tx.lt > lt)
    return lt, chain, ledger


async def _jetton_snapshot(ctx: TonRailContext, jetton_wallet: str) -> tuple[int, int] | None:
    """(last lt, jetton balance) of our jetton wallet in one state, as `_snapshot` reads."""
    for _ in range(3):
        lt = await ctx.api.last_lt(jetton_wallet)
        usdt = await jetton_balance(ctx.api, jetton_wallet)
        if await ctx.api.last_lt(jetton_wallet) == lt:
            return lt, usdt
    return None


async def _usdt_through(ctx: TonRailContext, lt: int) -> int | str:
    """Our jetton wallet's USDT at the hot wallet's lt `lt` (`B`), or why it cannot be read.

    The books tag USDT entries with hot-wallet lts (a payout: its external .. its excess back;
    a deposit: the transaction that took the transfer_notification). So each transaction of
    the jetton wallet is placed on the hot wallet's chain, and counts at `B` when:
    - a debit (`transfer` from the hot wallet): the hot transaction that sent it is <= B;
    - a credit back (a bounced `internal_transfer`): its debit counts (same query_id and
      recipient jetton wallet; a debit older than what was read back counts);
    - a credit (`internal_transfer`) with a transfer_notification: the hot transaction that
      took the notification is <= B (not yet taken: it does not count);
    - a credit without a notification (nothing tonrail books: USDT sent from outside): the
      hot wallet's last transaction before it is <= B (at a quiet point, B is the hot
      wallet's last lt: it counts at once).
    The jetton snapshot is read after the books' cut (every movement booked at or below B
    is on chain by then), the hot wallet's lt after the jetton snapshot (every hot
    transaction that sent one of the snapshot's debits is read back); the chain's USDT at B
    is the snapshot's balance less what the transactions that do not count changed."""
    jetton_wallet = ctx.jetton_wallet
    assert jetton_wallet is not None
    snapshot = await _jetton_snapshot(ctx, jetton_wallet)
    if snapshot is None:
        return "our jetton wallet's state kept changing"
    jetton_top, usdt = snapshot
    hot = _History(ctx, await ctx.api.last_lt(ctx.wallet.address.to_str()))
    if not await hot.reach(lt):
        return f"more than {MAX_READ_BACK} transactions since lt {lt}"
    later = [t for t in hot.txs if t.lt > lt]
    sent_later = {m.hash for t in later for m in t.out_msgs}
    taken_later = {t.in_msg.hash for t in later if t.in_msg is not None}
    # The notifications the hot wallet took after B: their credits may be older than B.
    wanted = {
        t.in_msg.hash
        for t in later
        if t.in_msg is not None
        and t.in_msg.opcode == JETTON_NOTIFY_OP
        and same_address(t.in_msg.source, jetton_wallet)
    }
    jetton = _History(ctx, jetton_top, account=jetton_wallet)
    if jetton_top == 0:
        jetton.exhausted = True
    while not jetton.exhausted:
        sent = {m.hash for t in jetton.txs for m in t.out_msgs}
        if jetton.txs and jetton.txs[-1].lt <= lt and wanted <= sent:
            break
        if not await jetton.more() and not jetton.exhausted:
            return f"more than {MAX_READ_BACK} transactions of our jetton wallet since lt {lt}"
    after = 0  # what the jetton wallet's transactions that do not count at B changed
    debit_after: dict[tuple[int, str], bool] = {}  # (query_id, recipient) -> its debit's
    unsure: list[tuple[Tx, int, str]] = []  # credits older than B: was the notice taken?
    for tx in reversed(jetton.txs):  # oldest first: a bounce follows its debit
        move = jetton_move(tx)
        if move is None or tx.in_msg is None:
            continue
        if move.kind == "debit":
            counts = tx.in_msg.hash not in sent_later
            recipient = (move.internal.destination if move.internal else None) or ""
            debit_after[(move.query_id, recipient.upper())] = not counts
        elif move.kind == "bounce":
            counts = not debit_after.get((move.query_id, (tx.in_msg.source or "").upper()), False)
        elif move.notification is None:
            # Placed right after the hot wallet's last transaction before it.
            counts = not any(t.lt < tx.lt for t in later)
        elif tx.lt > lt or move.notification.hash in taken_later:
            counts = False
        else:
            unsure.append((tx, move.amount, move.notification.hash))
            continue
        if not counts:
            after += move.amount
    if unsure:
        # Taken at or below B, or not yet taken at all: the hot wallet's transactions since
        # the oldest of these credits tell (a notification is taken after its credit).
        if not await hot.reach(min(tx.lt for tx, _, _ in unsure)):
            return f"more than {MAX_READ_BACK} transactions since a USDT deposit"
        taken = {t.in_msg.hash for t in hot.txs if t.in_msg is not None}
        after += sum(amount for _, amount, notice in unsure if notice not in taken)
    return usdt - after


async def reconcile(ctx: TonRailContext) -> Reconciliation:
    """Compare ledger and chain up to a hot-wallet lt: TON, and USDT when enabled."""
    address = ctx.wallet.address.to_str()
    snapshot = await _snapshot(ctx, address)
    if snapshot is None:
        return Reconciliation(False, {}, reason="the hot wallet's state kept changing")
    async with ctx.db.transaction() as session:
        # A rotation moves this wallet's funds and books: compared again after the switch.
        if await signing_paused(session, ctx.wallet_raw) is not None:
            return Reconciliation(False, {}, reason="a hot wallet rotation is moving the wallet")
        bounds = await _bounds(ctx, session)
    through = await _ton_through(ctx, snapshot, bounds)
    if isinstance(through, str):
        return Reconciliation(False, {}, chain_lt=snapshot[0], reason=through)
    lt, chain_ton, ledger_ton = through
    chain = {"TON": chain_ton}
    ledger = {"TON": ledger_ton}
    quiet = bounds.quiet and bounds.cursor == snapshot[0]
    usdt_reason = None
    if ctx.jetton_wallet is not None:
        # After the books' cut (_ton_through): see _usdt_through.
        usdt = await _usdt_through(ctx, lt)
        if isinstance(usdt, str):
            usdt_reason = usdt
            log.info("USDT not compared this round", reason=usdt)
        else:
            chain["USDT"] = usdt
    async with ctx.db.transaction() as session:
        if "USDT" in chain:
            ledger["USDT"] = await balance_through(session, books.HOT_WALLET, "USDT", lt)
        differences = {a: chain[a] - ledger[a] for a in chain if chain[a] != ledger[a]}
        # The alert rule `books_mismatch` reads these: open while one is not 0, resolved
        # by the first check that finds the books equal to the chain again.
        for asset in chain:
            await write_signal(session, BOOKS_DIFFERENCE, differences.get(asset, 0), asset=asset)
        if differences:
            last = (
                await session.execute(
                    select(OutboxEvent.payload)
                    .where(OutboxEvent.type == "ton.reconciliation.mismatch")
                    .order_by(OutboxEvent.seq.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            payload = {
                "wallet": address,
                "differences": differences,
                "chain": chain,
                "ledger": ledger,
                "lt": lt,
                "chain_lt": snapshot[0],
            }
            before = (last or {}).get("differences") or {}
            # Once per distinct difference of the assets compared this time (an asset not
            # compared this round, see `reason`: its last difference stands).
            if last is None or any(before.get(a, 0) != differences.get(a, 0) for a in chain):
                emit(session, "ton.reconciliation.mismatch", "system", payload)
            log.error("hot wallet books differ from the chain", **payload)
    return Reconciliation(
        True,
        differences,
        lt=lt,
        chain_lt=snapshot[0],
        assets=tuple(chain),
        quiet=quiet and (ctx.jetton_wallet is None or "USDT" in chain),
        chain=chain,
        ledger=ledger,
        reason=usdt_reason,
    )


async def reconcile_loop(ctx: TonRailContext) -> int:
    """The worker loop: a periodic check, so it never asks to run again at once. The
    treasury (with TREASURY_ADDRESS) is checked on the same schedule: loops.py runs
    processing/treasury_reconcile.py right after this."""
    await reconcile(ctx)
    return 0
