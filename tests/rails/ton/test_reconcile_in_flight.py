"""Reconciliation while payouts are in flight, on the local network (both databases).

Payouts flow (TON to a payee, some bouncing back from an address with no code, USDT) while
deposits arrive and the reconciler runs: it compares TON and USDT up to a chain lt below
everything in flight and never reports a false mismatch; a booked movement removed, or TON or
USDT the books never hear of, is reported with its exact difference while requests are still in
flight.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib

import httpx
from sqlalchemy import delete, insert, select
from ton_core import Address, Cell, begin_cell
from tonutils.contracts import JettonTransferBuilder, WalletV5R1

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
from tonrail.rails.ton.api import jetton_balance
from tonrail.rails.ton.chain_view import (
    JETTON_INTERNAL_TRANSFER_OP,
    JETTON_TRANSFER_OP,
    Msg,
    Tx,
    jetton_move,
    raw,
    ton_change,
)
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


USDT = 10**6


class UsdtTraffic(Traffic):
    """Traffic of USDT payouts (a TON one now and then) while USDT deposits arrive."""

    async def payouts(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            asset = "TON" if n % 5 == 0 else "USDT"
            r = await self.client.post(
                "/v1/payouts",
                json={"amount": "0.05", "asset": asset, "destination": self.payee},
                headers=self.auth,
            )
            assert r.status_code == 201, r.text
            self.ids.append(r.json()["id"])
            await asyncio.sleep(0.4)


async def _send_usdt(rail: Rail, payer: WalletV5R1, seqno: int, amount: int, note: str) -> int:
    """USDT from the payer to the hot wallet: with a notification (`note`: a deposit the
    watcher books) or, with `note` empty, none (nothing tonrail hears of). The next seqno."""
    await payer.transfer_message(
        JettonTransferBuilder(
            destination=rail.ctx.wallet.address,
            jetton_amount=amount,
            jetton_master_address=rail.net.genesis.usdt_master,
            forward_amount=1 if note else 0,
            forward_payload=note or None,
            bounce=True,
        )
    )
    await settled(payer, seqno)
    return seqno + 1


async def _jetton_txs(rail: Rail) -> list[Tx]:
    jetton_wallet = rail.ctx.jetton_wallet
    assert jetton_wallet is not None
    return await rail.api.transactions_before(jetton_wallet, 0, 100)


async def test_usdt_compared_in_flight_and_real_differences_reported(
    rail: Rail,
    payer: WalletV5R1,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
) -> None:
    jetton_wallet = rail.ctx.jetton_wallet
    assert jetton_wallet is not None
    for _ in range(600):  # genesis mints the hot wallet's USDT in the first blocks
        if await jetton_balance(rail.api, jetton_wallet) > 0:
            break
        await asyncio.sleep(0.05)
    await _opening_balances(rail, db)
    # The default settings: the optimizer's attach once it has seen jetton transfers (twice the
    # observed p90 spend, ~0.024 TON here) used to fall below what the jetton wallet demands
    # before it sends (~0.03 TON), and our jetton wallet refused nearly every USDT payout;
    # FEES_JETTON_ATTACH_MIN_NANOTON's default (0.05 TON) now keeps it above.
    rail.ctx.settings = rail.ctx.settings.model_copy(update={"alert_suspicious_failures": 10**6})
    normal = rail.ctx.settings
    seqno = 0
    async with UsdtTraffic(rail, client, auth) as traffic:
        # USDT deposits (unapplied receipts) land among the payouts while checks run.
        for i in range(3):
            seqno = await _send_usdt(rail, payer, seqno, (i + 2) * USDT, f"deposit {i}")
            await _checks(rail, db, until=1)
        # A window in which too little TON is attached (0.02 TON, or the optimizer's figure):
        # our jetton wallet refuses the transfers (aborted, the TON bounces back).
        rail.ctx.settings = normal.model_copy(
            update={
                "fees_jetton_attach_min_nanoton": TON // 50,
                "ton_jetton_attach_nanoton": TON // 50,
            }
        )
        await asyncio.sleep(2)
        rail.ctx.settings = normal
        checks = await _checks(rail, db, until=8)
        checked = [r for r, _ in checks if r.checked]
        in_flight = [r for r, n in checks if r.checked and n and not r.quiet]
        # USDT compared in flight, below the snapshot's last transaction ...
        assert any(
            "USDT" in r.assets and r.lt is not None and r.chain_lt is not None and r.lt < r.chain_lt
            for r in in_flight
        )
        assert sum(1 for r in in_flight if "USDT" in r.assets) >= 6
        # ... and never a difference.
        assert [r.differences for r in checked] == [{}] * len(checked)
        txs = await _jetton_txs(rail)
        moves = [jetton_move(t) for t in txs]
        assert sum(1 for m in moves if m is not None and m.kind == "debit") >= 10
        assert any(m is not None and m.kind == "credit" and m.notification for m in moves)
        refused = [
            t
            for t in txs
            if t.aborted and t.in_msg is not None and t.in_msg.opcode == JETTON_TRANSFER_OP
        ]
        assert refused, "no USDT payout was refused by our jetton wallet"
        assert all(jetton_move(t) is None for t in refused)

        # 1. A booked USDT movement removed: a confirmed USDT payout's entry.
        async with db.transaction() as session:
            entry = (
                await session.execute(
                    select(JournalEntry)
                    .join(LedgerLine, LedgerLine.entry_id == JournalEntry.id)
                    .where(
                        JournalEntry.kind == "payout.sent",
                        JournalEntry.chain_lt.is_not(None),
                        LedgerLine.asset == "USDT",
                    )
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
            removed: dict[str, int] = {}
            for ln in lines:
                if ln.account == books.HOT_WALLET:
                    removed[ln.asset] = removed.get(ln.asset, 0) + ln.amount
            await session.execute(delete(LedgerLine).where(LedgerLine.entry_id == entry.id))
            await session.execute(delete(JournalEntry).where(JournalEntry.id == entry.id))
        assert removed["USDT"] < 0
        expected = {a: v for a, v in removed.items() if v}
        result = await _in_flight_check_past(rail, db, saved_entry["chain_lt"])
        assert "USDT" in result.assets
        assert result.differences == expected
        async with db.transaction() as session:  # put back: the books agree again
            await session.execute(insert(JournalEntry), [saved_entry])
            await session.execute(insert(LedgerLine), saved_lines)
        assert (await _in_flight_check_past(rail, db, saved_entry["chain_lt"])).differences == {}

        # 2. USDT sent to our jetton wallet outside tonrail: no notification, nothing booked.
        before = {t.hash for t in await _jetton_txs(rail)}
        seqno = await _send_usdt(rail, payer, seqno, 7 * USDT, "")
        outside = None
        for _ in range(600):
            outside = next(
                (
                    t
                    for t in await _jetton_txs(rail)
                    if t.hash not in before
                    and (m := jetton_move(t)) is not None
                    and m.kind == "credit"
                    and m.notification is None
                ),
                None,
            )
            if outside is not None:
                break
            await asyncio.sleep(0.05)
        assert outside is not None
        result = await _in_flight_check_past(rail, db, outside.lt)
        assert result.differences == {"USDT": 7 * USDT}
    final = await rail.run_until_final(traffic.ids, client, auth)
    assert {p["status"] for p in final.values()} <= {"succeeded", "failed"}


def _msg(body: Cell, *, source: str, opcode: int, bounced: bool = False, h: str = "a") -> Msg:
    return Msg(
        hash=h * 64,
        source=source,
        destination=None,
        value=1,
        fwd_fee=0,
        opcode=opcode,
        bounced=bounced,
        body_hash=None,
        body_b64=base64.b64encode(body.to_boc()).decode(),
        comment=None,
    )


def _tx(in_msg: Msg, out: tuple[Msg, ...] = (), aborted: bool = False) -> Tx:
    return Tx("b" * 64, 10, 0, "0:" + "C" * 64, aborted, 0, in_msg, out)


def test_jetton_moves_parsed_from_tep74_bodies() -> None:
    """Debit, credit and the credit back of a bounced internal_transfer (whose body is
    0xffffffff then the first 256 bits of the original), from bodies built bit by bit."""
    owner, other = "0:" + "1" * 64, "0:" + "2" * 64
    transfer = (
        begin_cell()
        .store_uint(JETTON_TRANSFER_OP, 32)
        .store_uint(7, 64)
        .store_coins(5 * USDT)
        .store_address(Address(other))
        .store_address(Address(owner))
        .store_bit(0)
        .store_coins(1)
        .store_bit(0)
        .end_cell()
    )
    internal = (
        begin_cell()
        .store_uint(JETTON_INTERNAL_TRANSFER_OP, 32)
        .store_uint(7, 64)
        .store_coins(5 * USDT)
        .store_address(Address(owner))
        .store_address(Address(owner))
        .store_coins(1)
        .store_bit(0)
        .end_cell()
    )
    out = _msg(internal, source=owner, opcode=JETTON_INTERNAL_TRANSFER_OP, h="c")
    debit = jetton_move(_tx(_msg(transfer, source=owner, opcode=JETTON_TRANSFER_OP), (out,)))
    assert debit is not None and (debit.kind, debit.amount, debit.query_id) == (
        "debit",
        -5 * USDT,
        7,
    )
    assert debit.internal == out
    # A transfer our jetton wallet refused (aborted): nothing moved.
    refused = _tx(_msg(transfer, source=owner, opcode=JETTON_TRANSFER_OP), aborted=True)
    assert jetton_move(refused) is None
    credit = jetton_move(_tx(_msg(internal, source=other, opcode=JETTON_INTERNAL_TRANSFER_OP)))
    assert credit is not None and (credit.kind, credit.amount) == ("credit", 5 * USDT)
    assert credit.notification is None
    bits = internal.begin_parse().load_bits(256)
    bounced_body = begin_cell().store_uint(0xFFFFFFFF, 32).store_bits(bits).end_cell()
    back = jetton_move(_tx(_msg(bounced_body, source=other, opcode=0xFFFFFFFF, bounced=True)))
    assert back is not None and (back.kind, back.amount, back.query_id) == ("bounce", 5 * USDT, 7)
    # A bounced transfer of another kind (an excess, say) moves no jettons.
    other_body = begin_cell().store_uint(0xFFFFFFFF, 32).store_uint(0xD53276DB, 32).end_cell()
    assert jetton_move(_tx(_msg(other_body, source=other, opcode=0xFFFFFFFF, bounced=True))) is None
