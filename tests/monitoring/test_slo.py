"""The service objectives' arithmetic and the error-budget burn alert (monitoring/slo.py,
rules.py: slo_burn), and the windows the snapshot counts for it on both databases."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from tests.monitoring.helpers import payout
from tonrail import clock
from tonrail.db import Database
from tonrail.monitoring.rules import Thresholds, slo_burn
from tonrail.monitoring.slo import (
    Targets,
    bucket_quantile,
    burn_rate,
    latency_objective,
    success_objective,
    uptime_objective,
)
from tonrail.monitoring.snapshot import Snapshot, finished_windows
from tonrail.payments.models import Payment

T = Targets(99.0, 60, 95.0, 200, 99.9)
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_burn_rate_is_the_failure_share_over_the_allowance() -> None:
    assert burn_rate(1, 100, 99.0) == pytest.approx(1.0)  # spends the budget exactly
    assert burn_rate(144, 1000, 99.0) == pytest.approx(14.4)
    assert burn_rate(0, 10, 99.0) == 0
    assert burn_rate(0, 0, 99.0) is None


def test_the_quantile_is_the_bound_of_the_bucket_that_holds_it() -> None:
    assert bucket_quantile({}, 0.99) is None
    assert bucket_quantile({"10": 99, "500": 1}, 0.99) == 10  # rank 99 of 100
    assert bucket_quantile({"10": 98, "500": 2}, 0.99) == 500
    assert bucket_quantile({"+Inf": 2, "5": 98}, 0.99) == math.inf  # labels in any order
    assert bucket_quantile({"5": 1}, 0.99) == 5


def test_objectives_say_met_missed_or_not_measured() -> None:
    assert success_objective(99, 1, T).met is True
    assert success_objective(98, 2, T).met is False
    assert success_objective(0, 0, T).met is None
    assert latency_objective({"200": 100}, T).met is True  # at the target is met
    assert latency_objective({"200": 98, "300": 2}, T).met is False
    assert latency_objective({"+Inf": 5}, T).met is False
    assert uptime_objective(999, 1000, T).met is True
    assert uptime_objective(0, 0, T).value is None


def _snap(windows: dict[int, tuple[int, int]]) -> Snapshot:
    snap = Snapshot(at=NOW, window_seconds=300)
    snap.finished_windows = windows
    return snap


def test_a_fast_burn_over_both_windows_pages() -> None:
    t = Thresholds(slo_success_pct=99.0)
    # 20 % failing for the last hour and the last 5 minutes: burn 20 >= 14.4.
    (found,) = slo_burn(_snap({3600: (80, 20), 300: (8, 2), 21_600: (80, 20), 1800: (8, 2)}), t)
    assert found.severity == "critical" and found.dedup_key == "slo_burn:success_rate"
    assert found.details["long_burn"] == 20.0 and found.details["short_window_seconds"] == 300
    # It stopped burning in the last 5 minutes: the short window clears the page ...
    # ... while 6 h and 30 min still burn 7x and 8x: a warning.
    calm = {3600: (80, 20), 300: (10, 0), 21_600: (930, 70), 1800: (92, 8)}
    (found,) = slo_burn(_snap(calm), t)
    assert found.severity == "warning" and found.details["long_window_seconds"] == 21_600
    assert found.details["long_burn"] == 7.0 and found.details["short_burn"] == 8.0
    # And when the last 30 minutes burn only 5x, nothing.
    assert slo_burn(_snap({**calm, 1800: (95, 5)}), t) == []


def test_slow_or_small_burns_do_not_page() -> None:
    t = Thresholds(slo_success_pct=99.0, success_rate_min_sample=20)
    assert (
        slo_burn(_snap({3600: (990, 10), 300: (99, 1), 21_600: (990, 10), 1800: (99, 1)}), t) == []
    )
    # Two failures of ten: a burn of 20, but too few payments for a verdict.
    assert slo_burn(_snap({3600: (8, 2), 300: (8, 2), 21_600: (8, 2), 1800: (8, 2)}), t) == []


async def test_the_snapshot_counts_each_burn_window(db: Database) -> None:
    clock.set_clock(lambda: NOW)
    finished = [
        ("succeeded", 60),  # 1 min ago: in every window
        ("failed", 240),  # 4 min: 5 min and up
        ("failed", 600),  # 10 min: 30 min and up
        ("succeeded", 3000),  # 50 min: 1 h and 6 h
        ("failed", 7200),  # 2 h: 6 h only
        ("succeeded", 30_000),  # 8 h 20 min: none
    ]
    for status, seconds_ago in finished:
        pid = await payout(db)
        async with db.transaction() as session:
            p = await session.get(Payment, pid)
            assert p is not None
            p.status = status
            p.completed_at = NOW - timedelta(seconds=seconds_ago)
    await payout(db)  # queued: not finished
    async with db.transaction() as session:
        windows = await finished_windows(session, NOW)
    assert windows == {300: (1, 1), 1800: (1, 2), 3600: (2, 2), 21_600: (2, 3)}
