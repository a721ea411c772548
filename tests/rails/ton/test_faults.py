"""The TON rail under a misbehaving network: dropped messages, 5xx/429, congestion, low
funds, the pause switch and expiry. Each case still pays each payout exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from tests.rails.ton.rail_fixture import Rail
from tonrail import clock
from tonrail.db import Database
from tonrail.ledger.service import check_books
from tonrail.processing.ton_loop import assemble, payout_round, send_due
from tonrail.processing.ton_track import processed_flag, track_open
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.models import TonRequest, TonTransfer
from tonrail.security.switches import set_switch


async def faults(rail: Rail, **changes: object) -> None:
    async with httpx.AsyncClient() as c:
        if changes:
            r = await c.post(f"{rail.net.url}/localnet/faults", json=changes)
        else:
            r = await c.delete(f"{rail.net.url}/localnet/faults")
        assert r.status_code == 200, r.text


def payee(rail: Rail) -> str:
    return rail.net.genesis.wallet("customer").address.to_str(
        is_user_friendly=True, is_bounceable=False
    )


async def payout(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    rail: Rail,
    amount: str = "1",
    asset: str = "TON",
) -> str:
    r = await client.post(
        "/v1/payouts",
        json={"amount": amount, "asset": asset, "destination": payee(rail)},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def times_paid(rail: Rail, payout_id: str) -> int:
    customer = raw(rail.net.genesis.wallet("customer").address)
    txs = await rail.api.account_transactions(customer, 0, 200)
    return sum(1 for t in txs if t.in_msg is not None and t.in_msg.comment == payout_id)


async def skip_backoff(db: Database, pid: str) -> None:
    """The retry of a payout waits out its backoff: end it now, for the test."""
    from tonrail.payments.models import Payment

    async with db.transaction() as session:
        row = await session.get(Payment, pid)
        assert row is not None
        row.locked_until = None


async def status(client: httpx.AsyncClient, auth: dict[str, str], pid: str) -> dict:
    return dict((await client.get(f"/v1/payouts/{pid}", headers=auth)).json())


async def test_dropped_messages_are_resent_and_paid_once(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    await faults(rail, drop_external_rate=1.0)
    pid = await payout(client, auth, rail)
    for _ in range(15):  # sent and re-sent, never landing
        await assemble(rail.ctx, deploy=True)
        await send_due(rail.ctx)
        await track_open(rail.ctx)
        await asyncio.sleep(0.1)
    assert (await status(client, auth, pid))["status"] == "processing"
    async with db.transaction() as session:
        [request] = (await session.execute(select(TonRequest))).scalars().all()
        assert request.send_count >= 2
    await faults(rail)
    final = await rail.run_until_final([pid], client, auth)
    assert final[pid]["status"] == "succeeded"
    assert await times_paid(rail, pid) == 1


async def test_a_copy_refused_as_executed_ends_the_resending(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    """A re-sent copy the wallet refuses as already executed (exit code 36) marks the request
    `processed` and is not sent again; the tracker still books it from the chain, once."""
    pid = await payout(client, auth, rail)
    await assemble(rail.ctx, deploy=True)
    assert await send_due(rail.ctx) == 1
    async with db.transaction() as session:
        [request] = (await session.execute(select(TonRequest))).scalars().all()
        query_id = request.query_id
    for _ in range(100):  # the wallet executes it within a block or two
        if await processed_flag(rail.ctx, query_id):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the request never landed")

    async def resend_due_now() -> None:
        async with db.transaction() as session:
            row = await session.get(TonRequest, request.id)
            assert row is not None
            row.last_sent_at = datetime.now(UTC) - timedelta(hours=1)

    await resend_due_now()
    assert await send_due(rail.ctx) == 1  # the copy goes out, and is refused
    async with db.transaction() as session:
        row = await session.get(TonRequest, request.id)
        assert row is not None
        assert (row.status, row.send_count, row.ext_tx_hash) == ("processed", 2, None)
    await resend_due_now()
    assert await send_due(rail.ctx) == 0  # never again
    final = await rail.run_until_final([pid], client, auth)
    assert final[pid]["status"] == "succeeded"
    assert await times_paid(rail, pid) == 1
    async with db.transaction() as session:
        row = await session.get(TonRequest, request.id)
        assert row is not None
        assert row.status == "final" and row.send_count == 2
        assert row.ext_tx_hash is not None and row.common_fee is not None  # booked from chain
        assert (await check_books(session)).ok


async def test_toncenter_errors_are_retried(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await faults(rail, http_5xx_rate=0.3, http_429_rate=0.2, seed=7)
    ids = [await payout(client, auth, rail, f"0.{i + 1}") for i in range(3)]
    final = await rail.run_until_final(ids, client, auth)
    assert {p["status"] for p in final.values()} == {"succeeded"}
    await faults(rail)
    for pid in ids:
        assert await times_paid(rail, pid) == 1


async def test_congestion_delays_but_pays(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await faults(rail, max_tx_per_block=1, inclusion_delay_ms=200)
    ids = [await payout(client, auth, rail, "0.5") for _ in range(4)]
    final = await rail.run_until_final(ids, client, auth)
    assert {p["status"] for p in final.values()} == {"succeeded"}


async def test_payout_above_the_balance_waits_with_a_reason(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    pid = await payout(client, auth, rail, "150000")  # the hot wallet holds 100,000 TON
    await assemble(rail.ctx, deploy=True)
    held = await status(client, auth, pid)
    assert held["status"] == "queued" and held["hold_reason"] == "insufficient_hot_wallet_balance"
    rail.net.chain.faucet(rail.ctx.wallet.address, 60_000 * 10**9)
    final = await rail.run_until_final([pid], client, auth)
    assert final[pid]["status"] == "succeeded" and final[pid]["hold_reason"] is None


async def test_pause_stops_signing_until_resumed(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    async with db.transaction() as session:
        await set_switch(session, "payments_paused", True, "admin:test", "incident")
    pid = await payout(client, auth, rail)
    for _ in range(5):
        await payout_round(rail.ctx)
    async with db.transaction() as session:
        assert (await session.execute(select(TonRequest))).first() is None
    assert (await status(client, auth, pid))["status"] == "queued"
    async with db.transaction() as session:
        await set_switch(session, "payments_paused", False, "admin:test")
    final = await rail.run_until_final([pid], client, auth)
    assert final[pid]["status"] == "succeeded"


async def test_unprocessed_request_expires_and_is_resigned_once(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    rail.ctx.settings = rail.ctx.settings.model_copy(update={"ton_max_attempts": 2})
    await faults(rail, drop_external_rate=1.0)
    pid = await payout(client, auth, rail)
    await assemble(rail.ctx, deploy=True)
    await send_due(rail.ctx)
    # Two hours later on both clocks: the request is past its validity and never landed.
    later = datetime.now(UTC) + timedelta(hours=2)
    clock.set_clock(lambda: later + (datetime.now(UTC) - later + timedelta(hours=2)))
    await faults(rail, time_offset_s=7200)
    await track_open(rail.ctx)
    p = await status(client, auth, pid)
    assert p["status"] == "queued"
    assert [a["status"] for a in p["attempts"]] == ["expired"]
    async with db.transaction() as session:
        [expired] = (await session.execute(select(TonRequest))).scalars().all()
        assert expired.status == "expired"
    await faults(rail, time_offset_s=7200, drop_external_rate=0.0)
    await paid_once_on_retry(rail, client, auth, db, pid)


async def paid_once_on_retry(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database, pid: str
) -> None:
    """The payout's expired request is followed by one new request that pays it, once."""
    await skip_backoff(db, pid)
    final = await rail.run_until_final([pid], client, auth)
    assert final[pid]["status"] == "succeeded"
    assert [a["status"] for a in final[pid]["attempts"]] == ["expired", "confirmed"]
    assert await times_paid(rail, pid) == 1
    async with db.transaction() as session:
        requests = (await session.execute(select(TonRequest))).scalars().all()
        assert sorted(r.status for r in requests) == ["expired", "final"]
        assert len({r.query_id for r in requests}) == 2  # the retry used a new query_id
        assert (await check_books(session)).ok


async def test_the_optimizer_batches_within_each_payouts_window(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    """With a 6 s window for normal payouts and waiting free (value of time 0), two payouts
    (so more are expected) wait for company and go out together when the first one's window
    ends; the fee decision is stored with its outcome. (6 s, not less: on a loaded machine
    making the two payouts took over 3 s once, and the first one's window had ended.)"""
    from tonrail.fees.models import FeeDecisionRecord
    from tonrail.payments.models import Payment

    rail.ctx.settings = rail.ctx.settings.model_copy(
        update={"fees_window_normal_ms": 6_000, "fees_value_of_time_nanoton": 0}
    )
    ids = [await payout(client, auth, rail, "0.3"), await payout(client, auth, rail, "0.4")]
    assert await assemble(rail.ctx, deploy=True) is None  # inside the window: wait
    async with db.transaction() as session:
        rows = [await session.get(Payment, i) for i in ids]
        assert all(p is not None and p.status == "queued" for p in rows)
        assert all(p is not None and p.locked_until is not None for p in rows)  # until due
        assert (await session.execute(select(TonRequest))).first() is None
    await asyncio.sleep(6.2)
    final = await rail.run_until_final(ids, client, auth)
    assert {p["status"] for p in final.values()} == {"succeeded"}
    shown = final[ids[0]]["fee_decision"]  # the API shows what the optimizer decided
    assert shown is not None and shown["batch_window_ms"] == 6_000
    async with db.transaction() as session:
        [request] = (await session.execute(select(TonRequest))).scalars().all()
        decisions = (await session.execute(select(FeeDecisionRecord))).scalars().all()
    assert request.status == "final"  # one request carried both
    assert {d.outcome for d in decisions} == {"confirmed"}
    assert all(d.fee_paid and d.fee_paid > 0 for d in decisions)


async def test_a_request_takes_along_every_payout_waiting_for_company(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    """Normal payouts wait (leased) for company; an urgent one arriving later goes at once,
    and the waiting ones go with it instead of alone when their own window ends."""
    rail.ctx.settings = rail.ctx.settings.model_copy(
        update={"fees_window_normal_ms": 30_000, "fees_value_of_time_nanoton": 0}
    )
    waiting = [await payout(client, auth, rail, "0.3"), await payout(client, auth, rail, "0.4")]
    assert await assemble(rail.ctx, deploy=True) is None  # leased for their 30 s window
    r = await client.post(
        "/v1/payouts",
        json={"amount": "0.2", "asset": "TON", "destination": payee(rail), "priority": "urgent"},
        headers=auth,
    )
    urgent = r.json()["id"]
    request_id = await assemble(rail.ctx, deploy=True)  # the urgent one is due now
    assert request_id is not None
    async with db.transaction() as session:
        carried = (
            (
                await session.execute(
                    select(TonTransfer.payment_id).where(TonTransfer.request_id == request_id)
                )
            )
            .scalars()
            .all()
        )
    assert sorted(carried) == sorted([*waiting, urgent])
    final = await rail.run_until_final([*waiting, urgent], client, auth)
    assert {p["status"] for p in final.values()} == {"succeeded"}


async def test_without_the_optimizer_payouts_go_at_once_with_the_configured_attach(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    """`fee_optimizer=False` (the fee benchmark's baselines): no window, no decision."""
    from dataclasses import replace

    from tonrail.fees.models import FeeDecisionRecord

    slow = rail.ctx.settings.model_copy(update={"fees_window_normal_ms": 30_000})
    plain = replace(rail.ctx, settings=slow, fee_optimizer=False)
    ids = [await payout(client, auth, rail, "0.3"), await payout(client, auth, rail, "2", "USDT")]
    request_id = await assemble(plain, deploy=True)
    assert request_id is not None  # at once, despite the 30 s window
    async with db.transaction() as session:
        values = dict(
            (
                await session.execute(
                    select(TonTransfer.asset, TonTransfer.message_value).where(
                        TonTransfer.request_id == request_id
                    )
                )
            ).all()
        )
        assert (await session.execute(select(FeeDecisionRecord))).first() is None
    assert values == {"TON": 300_000_000, "USDT": slow.ton_jetton_attach_nanoton}
    final = await rail.run_until_final(ids, client, auth)
    assert {p["status"] for p in final.values()} == {"succeeded"}
