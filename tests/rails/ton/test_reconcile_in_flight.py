"""Reconciliation while payouts are in flight, on the local network (both databases).

Payouts flow (TON to a payee, some bouncing back from an address with no code, USDT) while
deposits arrive and the reconciler runs: it compares TON up to a chain lt below everything in
flight and never reports a false mismatch; a booked movement removed, or TON the books never
hear of, is reported with its exact difference while requests are still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from sqlalchemy import delete, insert, select
from ton_core import Address
from tonutils.contracts import WalletV5R1

from tests.rails.ton.rail_fixture import Rail, settled
from tests.rails.ton.test_payouts import _opening_balances
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.models import JournalEntry, LedgerLine
from tonrail.localnet.genesis import TON
from tonrail.processing.deposits import watch_deposits
from tonrail.processing.reconcile import Reconciliation, reconcile
from tonrail.processing.ton_loop import assemble, send_due
from tonrail.processing.ton_track import track_open
from tonrail.rails.ton.chain_view import raw, ton_change
from tonrail.rails.ton.models import TonRequest
from tonrail.rails.ton.states import OPEN_REQUEST_STATES
from tonrail.rails.ton.toncenter import ToncenterError

NOWHERE = Address("0:" + "ab" * 32).to_str(is_user_friendly=True, is_bounceable=True)


class Traffic:
    """Payouts created at a steady pace and the worker's TON loops, until stopped."""

    def __init__(self, rail: Rail, client: httpx.AsyncClient, auth: dict[str, str]):
        self.rail, self.client, self.auth = rail, client, auth
        self.ids: list[str] = []
        self.stop = asyncio.Event()
        payee = rail.net.genesis.wallet("customer").address
        self.payee = payee.to_str(is_user_friendly=True, is_bounceable=False)

    async def payouts(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            # Every third bounces (its value comes back in a later transaction), every
            # fourth is USDT (its excess comes back later).
            asset, destination = (
                ("USDT", self.payee)
                if n % 4 == 0
                else ("TON", NOWHERE if n % 3 == 0 else self.payee)
            )
            r = await self.client.post(
                "/v1/payouts",
                json={"amount": "0.05", "asset": asset, "destination": destination},
                headers=self.auth,
            )
            assert r.status_code == 201, r.text
            self.ids.append(r.json()["id"])
            await asyncio.sleep(0.4)

    async def loop(self, step: object, pause: float) -> None:
        """One of the worker's loops, on its own as the worker runs them: the deposit
        watcher reads ahead of the tracker, which settles requests a while after they land."""
        while not self.stop.is_set():
            with contextlib.suppress(ToncenterError):
                await step()  # type: ignore[operator]
            await asyncio.sleep(pause)

    async def send(self) -> None:
        ctx = self.rail.ctx
        state, _ = await self.rail.api.account_state(ctx.wallet.address.to_str())
        await assemble(ctx, deploy=state != "active")
        await send_due(ctx)

    async def __aenter__(self) -> Traffic:
        ctx = self.rail.ctx
        self.tasks = [
            asyncio.create_task(self.payouts()),
            asyncio.create_task(self.loop(self.send, 0.05)),
            asyncio.create_task(self.loop(lambda: track_open(ctx), 0.7)),
            asyncio.create_task(self.loop(lambda: watch_deposits(ctx), 0.05)),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)


async def _in_flight(db: Database) -> int:
    async with db.transaction() as session:
        rows = await session.execute(
            select(TonRequest.id).where(TonRequest.status.in_(OPEN_REQUEST_STATES))
        )
        return len(rows.all())


async def _checks(
    rail: Rail, db: Database, until: int, within: float = 120
) -> list[tuple[Reconciliation, int]]:
    """Reconcile repeatedly until `until` checks were made while requests were in flight
    (open before and after the check); each with how many were open before it."""
    seen: list[tuple[Reconciliation, int]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while sum(1 for r, n in seen if r.checked and n and not r.quiet) < until:
        assert loop.time() < deadline, f"only {seen} in {within} s"
        before = await _in_flight(db)
        with contextlib.suppress(ToncenterError):
            seen.append((await reconcile(rail.ctx), before))
        await asyncio.sleep(0.1)
    return seen


async def _in_flight_check_past(rail: Rail, db: Database, lt: int) -> Reconciliation:
    """The first check made while requests were in flight that compared at `lt` or later."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while True:
        assert loop.time() < deadline, f"no check in flight compared at lt {lt} or later"
        result = (await _checks(rail, db, until=1))[-1][0]
        if result.lt is not None and result.lt >= lt:
            return result


async def test_no_false_mismatch_while_payouts_flow_and_real_ones_are_reported(
    rail: Rail,
    payer: WalletV5R1,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
) -> None:
    await _opening_balances(rail, db)
    # The bouncing payouts are meant: not a reason to lock the key.
    rail.ctx.settings = rail.ctx.settings.model_copy(update={"alert_suspicious_failures": 10**6})
    hot = rail.ctx.wallet.address
    async with Traffic(rail, client, auth) as traffic:
        # A deposit (no invoice: an unapplied receipt) lands among the payouts.
        seqno = 0
        await payer.transfer(hot, TON // 2, body="no invoice", bounce=False)
        await settled(payer, seqno)
        seqno += 1
        checks = await _checks(rail, db, until=6)
        in_flight = [r for r, n in checks if r.checked and n and not r.quiet]
        # Compared below the snapshot's last transaction, as requests were in flight ...
        assert any(
            r.lt is not None and r.chain_lt is not None and r.lt < r.chain_lt for r in in_flight
        )
        # ... and never a difference.
        assert [r.differences for r, _ in checks if r.checked] == [{}] * sum(
            1 for r, _ in checks if r.checked
        )

        # 1. A booked movement removed: a confirmed payout's entry (lines and all).
        async with db.transaction() as session:
            entry = (
                await session.execute(
                    select(JournalEntry)
                    .where(JournalEntry.kind == "payout.sent", JournalEntry.chain_lt.is_not(None))
                    .order_by(JournalEntry.chain_lt)
                    .limit(1)
                )
            ).scalar_one()
            saved_entry = {c.name: getattr(entry, c.name) for c in JournalEntry.__table__.columns}
            lines = (
                (await session.execute(select(LedgerLine).where(LedgerLine.entry_id == entry.id)))
                .scalars()
                .all()
            )
            saved_lines = [
                {c.name: getattr(ln, c.name) for c in LedgerLine.__table__.columns} for ln in lines
            ]
            removed = sum(
                ln.amount for ln in lines if ln.account == books.HOT_WALLET and ln.asset == "TON"
            )
            await session.execute(delete(LedgerLine).where(LedgerLine.entry_id == entry.id))
            await session.execute(delete(JournalEntry).where(JournalEntry.id == entry.id))
        assert removed < 0
        # The chain has less than the books now show: exactly what the removed entry took.
        result = await _in_flight_check_past(rail, db, saved_entry["chain_lt"])
        assert result.differences == {"TON": removed}
        async with db.transaction() as session:  # put back: the books agree again
            await session.execute(insert(JournalEntry), [saved_entry])
            await session.execute(insert(LedgerLine), saved_lines)
        assert (await _in_flight_check_past(rail, db, saved_entry["chain_lt"])).differences == {}

        # 2. TON sent to the hot wallet outside tonrail: from the treasury's address with no
        # top-up order for it, the watcher leaves it to the treasury loop, which books none.
        rail.ctx.settings = rail.ctx.settings.model_copy(
            update={"treasury_address": payer.address.to_str()}
        )
        await payer.transfer(hot, 2 * TON, body="outside", bounce=False)
        await settled(payer, seqno)
        outside = None
        for _ in range(600):
            txs = await rail.api.transactions_before(raw(hot), 0, 50)
            outside = next(
                (
                    t
                    for t in txs
                    if t.in_msg is not None
                    and t.in_msg.source == raw(payer.address)
                    and t.in_msg.value == 2 * TON
                ),
                None,
            )
            if outside is not None:
                break
            await asyncio.sleep(0.05)
        assert outside is not None
        result = await _in_flight_check_past(rail, db, outside.lt)
        assert result.differences == {"TON": ton_change(outside)}
        assert ton_change(outside) > TON
    final = await rail.run_until_final(traffic.ids, client, auth)
    assert {p["status"] for p in final.values()} <= {"succeeded", "failed"}
    assert any(p["failure_code"] == "ton_bounced" for p in final.values())
