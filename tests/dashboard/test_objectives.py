"""The service objectives on the Overview (monitoring/slo.py, dashboard/queries/objectives.py),
on SQLite and PostgreSQL: success rate, confirmation time, API p99 and uptime, each against
its target, from data made the way the service makes it."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.dashboard.test_overview import NOW, Seeder, ago, attr, clock_at, seed
from tonrail.db import Database
from tonrail.monitoring import signals
from tonrail.monitoring.models import MonitoringMinute
from tonrail.settings import Settings


def objective(html: str, key: str) -> str:
    match = re.search(
        rf'<div class="tile[^"]*" id="objective-{key}"(.*?)\n      </div>', html, re.S
    )
    assert match, f"no objective {key}"
    return match.group(0)


@pytest.fixture(autouse=True)
def _empty_buffer() -> None:
    signals.take_buffer()  # the buffer is per process: other tests' signals are not ours


async def _latencies(db: Database, *spread: tuple[int, float]) -> None:
    for count, ms in spread:
        for _ in range(count):
            signals.observe_api_request(ms)
    await signals.persist_signals(db)


async def test_the_four_objectives_over_the_last_hour(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    signed_in: Any,
) -> None:
    await seed(Seeder(client, auth, db, settings), db)
    signals.take_buffer()  # the seeding's own /v1 requests: real, untimed latencies
    with clock_at(ago(minutes=5)):
        await _latencies(db, (990, 20), (9, 150), (1, 800))
    # /readyz answered ok every minute from 11:10 to 11:59 but one (11:30: database down),
    # twice in some minutes; the minute in progress and the one before are not judged yet.
    for minute in range(50):
        at = NOW.replace(hour=11, minute=10, second=5) + timedelta(minutes=minute)
        with clock_at(at):
            signals.record_readiness(minute != 20)
            if minute % 7 == 0:
                signals.record_readiness(minute != 20)
    with clock_at(NOW - timedelta(seconds=5)):
        signals.record_readiness(True)  # 12:00: not judged yet
    await signals.persist_signals(db)

    await signed_in("viewer")
    html = (await client.get("/dashboard/overview?range=1h")).text
    success = objective(html, "success_rate")  # 4 succeeded, 1 failed: 80 %
    assert attr(success, "data-value") == "80.0" and attr(success, "data-met") == "no"
    assert "1 failed of 5 finished; error budget burn rate 20.00" in success
    assert "target ≥ 99.0 %" in success and "missed" in success
    confirmation = objective(html, "confirmation")  # p1, p2, p3 took 10, 20, 30 s
    assert attr(confirmation, "data-value") == "100.0" and attr(confirmation, "data-met") == "yes"
    assert "3 of 3 succeeded payouts" in confirmation
    latency = objective(html, "api_latency")  # the 990th of 1000 is in the 25 ms bucket
    assert attr(latency, "data-value") == "25.0" and attr(latency, "data-met") == "yes"
    assert "≤ 25 ms" in latency and "1000 /v1 requests" in latency
    uptime = objective(html, "uptime")  # 49 of 50 minutes
    assert attr(uptime, "data-value") == "98.0" and attr(uptime, "data-met") == "no"
    assert "/readyz ok in 49 of 50 minutes" in uptime

    with clock_at(ago(minutes=2)):
        await _latencies(db, (20, 400))  # now the 1010th of 1020 is in the 500 ms bucket
    html = (await client.get("/dashboard/overview/live?range=1h")).text
    latency = objective(html, "api_latency")
    assert attr(latency, "data-value") == "500.0" and attr(latency, "data-met") == "no"
    with clock_at(ago(minutes=1)):
        await _latencies(db, (100, 9000))
    html = (await client.get("/dashboard/overview/live?range=1h")).text
    assert "&gt; 5,000 ms" in objective(html, "api_latency")


async def test_nothing_measured_is_said_so(client: httpx.AsyncClient, signed_in: Any) -> None:
    await signed_in("viewer")
    html = (await client.get("/dashboard/overview?range=24h")).text
    for key in ("success_rate", "confirmation", "api_latency", "uptime"):
        found = objective(html, key)
        assert attr(found, "data-value") == "" and attr(found, "data-met") == ""
        assert "no data" in found and "not measured" in found
    assert "no /readyz probe in the range" in html


async def test_the_api_times_v1_requests_and_counts_readyz_answers(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database, signed_in: Any
) -> None:
    await signed_in("viewer")
    for _ in range(3):
        assert (await client.get("/v1/payouts", headers=auth)).status_code == 200
    assert (await client.get("/v1/payouts")).status_code == 401  # refused: timed too
    await client.get("/dashboard/overview")  # not an API request
    assert (await client.get("/readyz")).status_code == 200
    await signals.persist_signals(db)
    async with db.transaction() as session:
        rows = dict(
            (
                await session.execute(
                    select(MonitoringMinute.name, func.sum(MonitoringMinute.value)).group_by(
                        MonitoringMinute.name
                    )
                )
            ).all()
        )
    assert rows == {"api_latency": 4, "readyz": 1}
    # Written again: counts add up, per minute.
    signals.observe_api_request(3)
    await signals.persist_signals(db)
    async with db.transaction() as session:
        total = (
            await session.execute(
                select(func.sum(MonitoringMinute.value)).where(
                    MonitoringMinute.name == "api_latency"
                )
            )
        ).scalar_one()
    assert total == 5


async def test_old_minutes_are_pruned(db: Database) -> None:
    with clock_at(NOW - timedelta(days=9)):
        signals.observe_api_request(3)
    signals.observe_api_request(3)
    await signals.persist_signals(db)
    assert await signals.prune_minutes(db, keep_days=8) == 1
    async with db.transaction() as session:
        minutes = list((await session.execute(select(MonitoringMinute.minute))).scalars())
    assert minutes == [NOW.replace(second=0, microsecond=0)]
