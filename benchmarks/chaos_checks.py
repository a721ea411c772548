"""The chaos run's verdict (benchmarks/chaos.py): the chain, not our tables, says what was paid.

- every payout the load asked for exists once (no duplicate from a retried request), is final,
  and is on chain exactly as often as its status says: a succeeded payout once with its exact
  amount, any other final status never (each payout goes to a fresh address of its own, so
  the destination's transactions from the hot wallet, or its jetton balance, count it);
- every invoice whose payment landed on chain is succeeded with exactly one credited deposit
  of its amount; one whose payment never landed is credited nothing;
- `check_books` balances and the hot wallet's books equal its balances on chain;
- every outbox event is published, and every final payment has the event of its status;
- after the workers stopped, no lease is held by a worker stopped with SIGTERM (released);
  a SIGKILLed worker's leases can only expire (WORKER_LEASE_SECONDS).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from benchmarks.chaos_load import Load


@dataclass
class Chain:
    """What the checks read through the local network's toncenter API."""

    v2: str
    hot: str  # friendly address of the hot wallet
    usdt_master: str
    minted_usdt: int  # USDT minted into the hot wallet's jetton wallet at genesis (no notice)

    async def get(self, session: aiohttp.ClientSession, method: str, **params: Any) -> Any:
        for _ in range(50):
            try:
                async with session.get(f"{self.v2}/{method}", params=params) as resp:
                    if resp.status == 200:
                        return (await resp.json())["result"]
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"toncenter {method} kept failing")

    async def ton_balance(self, session: aiohttp.ClientSession, address: str) -> int:
        return int(await self.get(session, "getAddressBalance", address=address))

    async def received_from_hot(self, session: aiohttp.ClientSession, address: str) -> list[int]:
        """Values of the messages `address` received from the hot wallet."""
        from ton_core import Address

        hot = Address(self.hot).to_str(is_user_friendly=False)
        txs = await self.get(session, "getTransactions", address=address, limit=100)
        out = []
        for tx in txs:
            msg = tx.get("in_msg") or {}
            source = msg.get("source") or ""
            if source and Address(source).to_str(is_user_friendly=False) == hot:
                out.append(int(msg.get("value") or 0))
        return out

    async def usdt_balance(self, api: Any, owner: str) -> int:
        from tonrail.rails.ton.api import jetton_balance, jetton_wallet_of

        wallet = await jetton_wallet_of(api, self.usdt_master, owner)
        return await jetton_balance(api, wallet)


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def fail(self, text: str) -> None:
        self.failures.append(text)


def _pid_of(worker_id: str | None) -> int | None:
    parts = (worker_id or "").split(":")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def quiet(db: Any, load: Load, chain: Chain) -> str | None:
    """None once the system is at rest (what the checks need), else what is still moving."""
    from sqlalchemy import func, select

    from tonrail.events.models import OutboxEvent
    from tonrail.payments.models import Payment
    from tonrail.payments.states import TERMINAL_PAYMENT_STATES
    from tonrail.states import PaymentStatus

    async with db.transaction() as session:
        open_payouts = (
            await session.execute(
                select(func.count())
                .select_from(Payment)
                .where(Payment.direction == "out", Payment.status.not_in(TERMINAL_PAYMENT_STATES))
            )
        ).scalar_one()
        unpublished = (
            await session.execute(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.published_at.is_(None))
            )
        ).scalar_one()
        landed = [i.id for i in load.invoices if i.landed]
        paid = 0
        if landed:
            paid = (
                await session.execute(
                    select(func.count())
                    .select_from(Payment)
                    .where(Payment.id.in_(landed), Payment.status == PaymentStatus.SUCCEEDED)
                )
            ).scalar_one()
    if open_payouts:
        return f"{open_payouts} payouts not final"
    if paid < len(landed):
        return f"{len(landed) - paid} paid invoices not credited yet"
    if unpublished:
        return f"{unpublished} outbox events unpublished"
    books, on_chain = await hot_books(db, chain)
    if books != on_chain:
        return f"hot wallet books {books} != chain {on_chain}"
    return None


async def hot_books(db: Any, chain: Chain) -> tuple[tuple[int, int], tuple[int, int]]:
    """((books TON, books USDT), (chain TON, chain USDT - genesis mint)) of the hot wallet."""
    from tonrail.ledger import rules
    from tonrail.ledger.service import balance
    from tonrail.rails.ton.api import ToncenterTonApi
    from tonrail.rails.ton.toncenter import ToncenterClient

    async with db.transaction() as session:
        books = (
            await balance(session, rules.HOT_WALLET, "TON"),
            await balance(session, rules.HOT_WALLET, "USDT"),
        )
    api = ToncenterTonApi(ToncenterClient([chain.v2], [chain.v2.replace("/v2", "/v3")]))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            ton = await chain.ton_balance(session, chain.hot)
        usdt = await chain.usdt_balance(api, chain.hot) - chain.minted_usdt
    finally:
        await api.aclose()
    return books, (ton, usdt)


async def verify(db: Any, load: Load, chain: Chain, graceful: set[int]) -> Verdict:
    """Everything the module docstring lists; call after every worker stopped. `graceful`:
    pids of the workers stopped with SIGTERM, which must have released every lease (a
    SIGKILLed worker's leases expire after WORKER_LEASE_SECONDS: counted, not failed)."""
    from sqlalchemy import select

    from tonrail.events.models import OutboxEvent
    from tonrail.ledger.service import check_books
    from tonrail.models import metadata
    from tonrail.payments.models import Payment
    from tonrail.payments.states import TERMINAL_PAYMENT_STATES
    from tonrail.rails.ton.api import ToncenterTonApi
    from tonrail.rails.ton.models import TonDeposit
    from tonrail.rails.ton.states import DepositStatus
    from tonrail.rails.ton.toncenter import ToncenterClient
    from tonrail.states import PaymentStatus

    v = Verdict()
    asked = {p.id: p for p in load.payouts}
    for refused in load.refused:
        v.fail(f"the API refused a valid request: {refused}")
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(
                    Payment.id,
                    Payment.direction,
                    Payment.status,
                    Payment.created_at,
                    Payment.updated_at,
                )
            )
        ).all()
        deposits = (
            await session.execute(
                select(TonDeposit.payment_id, TonDeposit.amount).where(
                    TonDeposit.status == DepositStatus.CREDITED
                )
            )
        ).all()
        events = (
            await session.execute(
                select(OutboxEvent.payment_id, OutboxEvent.type, OutboxEvent.published_at)
            )
        ).all()
        books = await check_books(session)
        now = datetime.now(UTC)
        held, expiring = [], 0
        for table in metadata.sorted_tables:
            if "locked_by" in table.c and "locked_until" in table.c:
                owners = (
                    await session.execute(
                        select(table.c.locked_by).where(table.c.locked_until > now)
                    )
                ).all()
                # Worker ids are host:pid:suffix (worker.default_worker_id).
                mine = [o for (o,) in owners if _pid_of(o) in graceful]
                expiring += len(owners) - len(mine)
                if mine:
                    held.append(f"{table.name}: {len(mine)} by {sorted(set(mine))}")
    status = {str(r.id): r for r in rows}
    out = [r for r in rows if r.direction == "out"]
    for r in out:
        if str(r.id) not in asked:
            v.fail(f"payout {r.id} exists but the load never got it: a duplicate of a retry")
    confirm: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        api = ToncenterTonApi(ToncenterClient([chain.v2], [chain.v2.replace("/v2", "/v3")]))
        try:
            for p in load.payouts:
                row = status.get(p.id)
                if row is None:
                    v.fail(f"payout {p.id} was answered but is not in the database")
                    continue
                if row.status not in TERMINAL_PAYMENT_STATES:
                    v.fail(f"payout {p.id} stuck in {row.status}")
                    continue
                paid = row.status == PaymentStatus.SUCCEEDED
                if p.asset == "TON":
                    got = await chain.received_from_hot(http, p.destination)
                    want = [p.amount] if paid else []
                    if got != want:
                        v.fail(f"TON payout {p.id} ({row.status}): chain shows {got}, want {want}")
                else:
                    got_usdt = await chain.usdt_balance(api, p.destination)
                    want_usdt = p.amount if paid else 0
                    if got_usdt != want_usdt:
                        v.fail(
                            f"USDT payout {p.id} ({row.status}): destination holds {got_usdt}, "
                            f"want {want_usdt}"
                        )
                if paid and not p.approvals:
                    confirm.append((row.updated_at - row.created_at).total_seconds())
        finally:
            await api.aclose()
    credited: dict[str, list[int]] = {}
    for payment_id, amount in deposits:
        credited.setdefault(str(payment_id), []).append(int(amount))
    for inv in load.invoices:
        row = status.get(inv.id)
        got = credited.get(inv.id, [])
        if inv.landed:
            if row is None or row.status != PaymentStatus.SUCCEEDED or got != [inv.amount]:
                v.fail(
                    f"invoice {inv.id} paid on chain: status {row.status if row else None}, "
                    f"credited {got}, want [{inv.amount}]"
                )
        elif got:
            v.fail(f"invoice {inv.id} whose payment never landed is credited {got}")
    if not books.ok:
        v.fail(f"check_books not balanced: {str(books)[:300]}")
    ledger, on_chain = await hot_books(db, chain)
    if ledger != on_chain:
        v.fail(f"hot wallet (TON, USDT): books {ledger} != chain {on_chain}")
    unpublished = sum(1 for e in events if e.published_at is None)
    if unpublished:
        v.fail(f"{unpublished} outbox events never published")
    have = {(str(e.payment_id), str(e.type)) for e in events}
    for r in rows:
        if r.status in TERMINAL_PAYMENT_STATES:
            kind = "payout" if r.direction == "out" else "invoice"
            if (str(r.id), f"{kind}.{r.status}") not in have:
                v.fail(f"{kind} {r.id} is {r.status} but its {kind}.{r.status} event is missing")
    if held:
        v.fail(f"leases not released by workers stopped with SIGTERM: {', '.join(held)}")
    by_status: dict[str, int] = {}
    for r in out:
        by_status[str(r.status)] = by_status.get(str(r.status), 0) + 1
    v.figures.update(
        payouts=len(load.payouts),
        payouts_ton=sum(1 for p in load.payouts if p.asset == "TON"),
        payouts_usdt=sum(1 for p in load.payouts if p.asset == "USDT"),
        approved_payouts=sum(1 for p in load.payouts if p.approvals),
        payout_statuses=by_status,
        invoices=len(load.invoices),
        invoices_paid=sum(1 for i in load.invoices if i.landed),
        invoices_lost_on_chain=sum(1 for i in load.invoices if i.lost),
        api_retries=load.retries,
        outbox_events=len(events),
        leases_of_killed_workers_not_yet_expired=expiring,
        confirm_max_s=round(max(confirm, default=0.0), 1),
        confirm_p99_s=round(_pct(confirm, 0.99), 1),
        books=f"TON {ledger[0]} / USDT {ledger[1]} = chain {on_chain[0]} / {on_chain[1]}",
    )
    return v
