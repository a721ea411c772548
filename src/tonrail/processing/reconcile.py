"""Reconciliation: the hot wallet's balances in the ledger must equal its balances on chain.

Compared only at a quiet point — no request still being executed or tracked, and the deposit
watcher caught up with the wallet's last transaction — because until then the chain is
legitimately ahead of the books. A difference is logged as an error and written as an
outbox event (`ton.reconciliation.mismatch`) once per distinct difference; every check also
writes the differences (0 when none) as the `books_difference` signal, on which the critical
alert `books_mismatch` opens and resolves (monitoring/rules.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import select

from tonrail.events.models import OutboxEvent
from tonrail.events.service import emit
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance
from tonrail.monitoring.signals import BOOKS_DIFFERENCE, write_signal
from tonrail.processing.context import TonRailContext
from tonrail.rails.ton.api import jetton_balance
from tonrail.rails.ton.models import TonRequest, TonWalletCursor
from tonrail.rails.ton.states import OPEN_REQUEST_STATES

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    checked: bool  # False when the books were not at a quiet point
    differences: dict[str, int]  # asset -> chain minus ledger, minor units


async def reconcile(ctx: TonRailContext) -> Reconciliation:
    """Compare ledger and chain for TON (and USDT when enabled)."""
    address = ctx.wallet.address.to_str()
    async with ctx.db.transaction() as session:
        busy = (
            await session.execute(
                select(TonRequest.id).where(TonRequest.status.in_(OPEN_REQUEST_STATES)).limit(1)
            )
        ).first()
        cursor = await session.get(TonWalletCursor, ctx.wallet_raw)
    if busy is not None:
        return Reconciliation(False, {})
    chain_lt = await ctx.api.last_lt(address)
    if cursor is None or cursor.last_lt != chain_lt:
        return Reconciliation(False, {})
    _, chain_ton = await ctx.api.account_state(address)
    chain = {"TON": chain_ton}
    if ctx.jetton_wallet is not None:
        chain["USDT"] = await jetton_balance(ctx.api, ctx.jetton_wallet)
    async with ctx.db.transaction() as session:
        ledger = {a: await balance(session, books.HOT_WALLET, a) for a in chain}
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
            }
            if last is None or last.get("differences") != differences:
                emit(session, "ton.reconciliation.mismatch", "system", payload)
            log.error("hot wallet books differ from the chain", **payload)
    return Reconciliation(True, differences)


async def reconcile_loop(ctx: TonRailContext) -> int:
    """The worker loop: a periodic check, so it never asks to run again at once. The
    treasury (with TREASURY_ADDRESS) is checked on the same schedule: loops.py runs
    processing/treasury_reconcile.py right after this."""
    await reconcile(ctx)
    return 0
