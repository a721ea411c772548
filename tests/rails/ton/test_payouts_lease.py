"""Two workers, one `ton_payouts` loop at a time (kit/loop_lease.py): the standby claims
nothing while the holder runs, takes over when the holder stops, and every payout is paid
once (found by `make bench` with 2 workers: both assembling at once queued on the wallet's
query counter, listed the same transactions twice and took CPU from the API, 0.94x of one)."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from tests.rails.ton.rail_fixture import Rail
from tests.rails.ton.test_faults import payout, times_paid
from tests.rails.ton.test_two_trackers import second_worker
from tonrail.db import Database
from tonrail.kit.loop_lease import STANDBY_CHECK_S
from tonrail.ledger.service import check_books
from tonrail.payments.models import Payment
from tonrail.processing.loops import WorkerContext, ton_payouts
from tonrail.rails.ton.models import TonRequest
from tonrail.worker import release_leases


def worker(rail: Rail, worker_id: str) -> WorkerContext:
    ton = second_worker(rail.ctx, worker_id)
    return WorkerContext(rail.ctx.db, rail.ctx.settings, rail.ctx.payments, worker_id, ton)


async def held_by(db: Database, worker_id: str) -> int:
    """Payouts and requests leased to `worker_id`."""
    async with db.transaction() as session:
        payouts = (
            await session.execute(
                select(func.count(Payment.id)).where(Payment.locked_by == worker_id)
            )
        ).scalar_one()
        requests = (
            await session.execute(
                select(func.count(TonRequest.id)).where(TonRequest.locked_by == worker_id)
            )
        ).scalar_one()
    return int(payouts) + int(requests)


async def until_final(
    w: WorkerContext, ids: list[str], client: httpx.AsyncClient, auth: dict[str, str]
) -> dict[str, dict]:
    """Run `w`'s payout loop, as the worker does, until every payout is final."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while loop.time() < deadline:
        await ton_payouts(w)
        got = {i: (await client.get(f"/v1/payouts/{i}", headers=auth)).json() for i in ids}
        if all(p["status"] in ("succeeded", "failed") for p in got.values()):
            return got
        await asyncio.sleep(0.05)
    raise AssertionError("payouts not final")


async def test_one_worker_runs_the_payout_loop_and_a_standby_takes_over_when_it_stops(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    a, b = worker(rail, "w-a"), worker(rail, "w-b")
    first = [await payout(client, auth, rail, amount="0.01") for _ in range(3)]
    final = await until_final(a, first, client, auth)
    assert {p["status"] for p in final.values()} == {"succeeded"}

    second = [await payout(client, auth, rail, amount="0.02") for _ in range(3)]
    # While a holds the loop, b's rounds do nothing: no claim, no request, no read.
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(2):
        assert await ton_payouts(b) == 0
    # A standby's round lasts until its next check: a heartbeat a second, not five.
    assert loop.time() - started >= STANDBY_CHECK_S
    assert await held_by(db, "w-b") == 0
    async with db.transaction() as session:
        queued = (
            await session.execute(
                select(func.count(Payment.id)).where(
                    Payment.id.in_(second), Payment.status == "queued"
                )
            )
        ).scalar_one()
    assert queued == 3

    # a stops (SIGTERM: its leases are handed back); b takes the loop at its next check.
    await release_leases(db, "w-a")
    b.leases.retry_at.clear()  # the check is due (at most STANDBY_CHECK_S later)
    final = await until_final(b, second, client, auth)
    assert {p["status"] for p in final.values()} == {"succeeded"}
    # Were a back (its half lease of trust over), it would stand by.
    a.leases.held_until.clear()
    assert await ton_payouts(a) == 0
    for pid in first + second:
        assert await times_paid(rail, pid) == 1
    async with db.transaction() as session:
        assert (await check_books(session)).ok
