"""Two workers tracking the same hot wallet's requests: they share the work and never fail
each other's rounds (found by `make bench` with 2 workers: one worker leased every open
request, parked most of them behind its 8 tracking slots until their leases ran out, the
other then took them, and both settled the same request: the loser's compare-and-set on
the attempts raised `concurrent_update`, which failed its whole tracking round)."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from tests.rails.ton.rail_fixture import Rail
from tests.rails.ton.test_faults import payout, status, times_paid
from tonrail.db import Database
from tonrail.ledger.models import JournalEntry
from tonrail.ledger.service import check_books
from tonrail.processing.context import TonRailContext
from tonrail.processing.ton_loop import _assemble_and_send, assemble, send_due
from tonrail.processing.ton_track import TRACK_CONCURRENCY, _claim_open, track_request
from tonrail.rails.ton.models import TonRequest


def second_worker(ctx: TonRailContext, worker_id: str) -> TonRailContext:
    """Another worker process on the same database, chain and wallet: its own leases,
    feeds, memory of traces and SQLite turn."""
    fresh = TonRailContext(
        db=ctx.db,
        settings=ctx.settings,
        payments=ctx.payments,
        api=ctx.api,
        wallet=ctx.wallet,
        sign=ctx.sign,
        jetton_wallet=ctx.jetton_wallet,
        worker_id=worker_id,
    )
    return fresh


async def sent_requests(
    rail: Rail, n: int, client: httpx.AsyncClient, auth: dict[str, str]
) -> list[str]:
    """`n` payouts, each in its own highload request, signed and sent."""
    rail.ctx.settings = rail.ctx.settings.model_copy(update={"ton_batch_max": 1})
    ids = [await payout(client, auth, rail, amount="0.01") for _ in range(n)]
    deploy = True
    while True:
        signed = await assemble(rail.ctx, deploy=deploy)
        deploy = False
        if not signed:
            break
    await send_due(rail.ctx)
    return ids


async def test_a_worker_leases_only_the_requests_it_can_follow_at_once(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    extra = 4
    await sent_requests(rail, TRACK_CONCURRENCY + extra, client, auth)
    async with db.transaction() as session:
        open_requests = (await session.execute(select(func.count(TonRequest.id)))).scalar_one()
    assert open_requests == TRACK_CONCURRENCY + extra
    a = second_worker(rail.ctx, "w-a")
    b = second_worker(rail.ctx, "w-b")
    taken_by_a = await _claim_open(a, exclude=set(), first=True, room=TRACK_CONCURRENCY)
    taken_by_b = await _claim_open(b, exclude=set(), first=True, room=TRACK_CONCURRENCY)
    assert len(taken_by_a) == TRACK_CONCURRENCY
    assert len(taken_by_b) == extra  # the rest is left to the other worker
    assert not set(taken_by_a) & set(taken_by_b)
    # A worker whose slots are all busy leases nothing more.
    assert await _claim_open(a, exclude=set(taken_by_a), first=False, room=0) == []


async def test_two_workers_settling_one_request_at_once_book_it_once(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    [pid] = await sent_requests(rail, 1, client, auth)
    async with db.transaction() as session:
        [request_id] = (await session.execute(select(TonRequest.id))).scalars().all()
    a = second_worker(rail.ctx, "w-a")
    b = second_worker(rail.ctx, "w-b")
    # Both look at once, each time (as after a lease ran out mid-read): once the chain has
    # the whole trace, both reach the books together.
    for _ in range(600):
        done = await asyncio.gather(track_request(a, request_id), track_request(b, request_id))
        if any(done):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the request never settled")
    assert (await status(client, auth, pid))["status"] == "succeeded"
    assert await times_paid(rail, pid) == 1
    async with db.transaction() as session:
        entries = (
            await session.execute(
                select(func.count(JournalEntry.id)).where(JournalEntry.payment_id == pid)
            )
        ).scalar_one()
        assert (await check_books(session)).ok
    # The payout's creation, then its confirmation: one each, not two confirmations.
    assert entries == 2


async def test_no_more_requests_are_signed_while_the_cap_of_open_ones_is_reached(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    rail.ctx.settings = rail.ctx.settings.model_copy(
        update={"ton_batch_max": 1, "ton_max_open_requests": 2}
    )
    ids = [await payout(client, auth, rail, amount="0.01") for _ in range(4)]
    other = second_worker(rail.ctx, "w-b")
    await _assemble_and_send(rail.ctx)
    await _assemble_and_send(other)  # the cap counts every worker's requests
    async with db.transaction() as session:
        signed = (await session.execute(select(func.count(TonRequest.id)))).scalar_one()
    assert signed == 2
    final = await rail.run_until_final(ids, client, auth)
    assert {p["status"] for p in final.values()} == {"succeeded"}
    for pid in ids:
        assert await times_paid(rail, pid) == 1
