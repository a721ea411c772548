"""The Overview page over HTTP, on SQLite and PostgreSQL: every figure checked exactly.

The data is made the way the service makes it: payouts and invoices through the public API,
moved through their states by PaymentService.transition and their attempts by the attempt
services, each at a chosen time of the service clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest

from tonrail import clock
from tonrail.dashboard.pages.overview import figure
from tonrail.dashboard.queries.overview import shown_ms
from tonrail.dashboard.queries.ranges import RANGES, Window, segments
from tonrail.db import Database
from tonrail.fees.models import FeeSample
from tonrail.ids import new_id
from tonrail.ledger import rules as books
from tonrail.ledger.service import post
from tonrail.monitoring.models import Alert, MonitoringSignal
from tonrail.payments.models import Payment
from tonrail.payments.service import PaymentService
from tonrail.payments.transitions import move_attempt, move_payment, start_attempt
from tonrail.settings import Settings

NOW = datetime(2026, 3, 2, 12, 0, 10, tzinfo=UTC)
DESTINATION = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"
XSS = "<script>window.__xss=1</script><img src=x onerror=alert(1)>"


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


@contextmanager
def clock_at(moment: datetime) -> Iterator[None]:
    """Run a step at `moment`, then go back to NOW (the time the page is looked at)."""
    clock.set_clock(lambda: moment)
    try:
        yield
    finally:
        clock.set_clock(lambda: NOW)


@pytest.fixture(autouse=True)
def _fixed_now() -> None:
    clock.set_clock(lambda: NOW)


class Seeder:
    """Makes payments in known states at known times, as the API and the workers would."""

    def __init__(
        self, client: httpx.AsyncClient, auth: dict[str, str], db: Database, settings: Settings
    ):
        self.client, self.auth, self.db = client, auth, db
        self.service = PaymentService(db, settings)

    async def payout(self, amount: str, asset: str, at: datetime, **extra: Any) -> str:
        body = {"amount": amount, "asset": asset, "destination": DESTINATION, **extra}
        with clock_at(at):
            r = await self.client.post(
                "/v1/payouts", json=body, headers={**self.auth, "Idempotency-Key": new_id("seed")}
            )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def invoice(self, amount: str, asset: str, at: datetime) -> str:
        with clock_at(at):
            r = await self.client.post(
                "/v1/invoices", json={"amount": amount, "asset": asset}, headers=self.auth
            )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def move(self, payment_id: str, *targets: str, at: datetime) -> None:
        with clock_at(at):
            async with self.db.transaction() as session:
                payment = await session.get(Payment, payment_id)
                assert payment is not None
                for target in targets:
                    await move_payment(
                        session,
                        payment,
                        target,
                        actor="test",
                        failure_code="test_failure" if target == "failed" else None,
                        failure_message="failed in a test" if target == "failed" else None,
                    )

    async def attempt(
        self, payment_id: str, rail: str, outcome: str, at: datetime, fee: tuple[int, str] | None
    ) -> None:
        with clock_at(at):
            async with self.db.transaction() as session:
                payment = await session.get(Payment, payment_id)
                assert payment is not None
                a = await start_attempt(session, payment, rail, {})
                await move_attempt(session, a, "submitted")
                values: dict[str, Any] = {}
                if fee is not None:
                    values = {"fee_amount": fee[0], "fee_asset": fee[1]}
                if outcome == "failed":
                    values["error_code"] = "test_failure"
                await move_attempt(session, a, outcome, **values)

    async def paid_payout(
        self,
        amount: str,
        asset: str,
        created: datetime,
        took: float,
        fee: tuple[int, str] | None = None,
        outcome: str = "succeeded",
    ) -> str:
        pid = await self.payout(amount, asset, created)
        done = created + timedelta(seconds=took)
        await self.move(pid, "processing", at=created + timedelta(seconds=1))
        await self.attempt(
            pid, "ton", "confirmed" if outcome == "succeeded" else "failed", done, fee
        )
        await self.move(pid, outcome, at=done)
        return pid


async def seed(s: Seeder, db: Database) -> dict[str, str]:
    """The data set of these tests (NOW = 12:00:10; the 1 h range starts at 11:00:10)."""
    ids: dict[str, str] = {}
    # Finished in the last hour: 3 payouts and 1 invoice succeeded, 1 payout failed.
    ids["p1"] = await s.paid_payout("2", "TON", ago(minutes=50), 10, (5_000_000, "TON"))
    ids["p2"] = await s.paid_payout("5", "USDT", ago(minutes=30), 20, (40_000_000, "TON"))
    ids["p3"] = await s.paid_payout("1", "USDT", ago(minutes=20), 30)
    ids["p4"] = await s.paid_payout("3", "USDT", ago(minutes=10), 5, (3_000_000, "TON"), "failed")
    ids["p5"] = await s.invoice("7", "USDT", ago(minutes=5))
    # An invoice paid by card: a provider fee in USD cents.
    await s.attempt(ids["p5"], "stripe", "confirmed", ago(minutes=4), (30, "USD"))
    await s.move(ids["p5"], "succeeded", at=ago(minutes=4))
    # Before the hour: in the 24 h range only.
    ids["p6"] = await s.paid_payout("4", "TON", ago(hours=2, seconds=10), 60, (7_000_000, "TON"))
    # Failed at 11:00:05, before the range's start (11:00:10) but inside its first bucket.
    ids["p13"] = await s.paid_payout(
        "1", "USDT", datetime(2026, 3, 2, 10, 59, tzinfo=UTC), 65, None, "failed"
    )
    # Three days ago: the 7 d range only.
    ids["p12"] = await s.paid_payout("1", "TON", ago(days=3), 40)
    # Open now: one stuck (10 min, target 60 s), one young, one within its long target.
    ids["p7"] = await s.payout("1", "USDT", ago(minutes=10), target_confirmation_seconds=60)
    ids["p8"] = await s.payout("1", "USDT", ago(minutes=4), target_confirmation_seconds=600)
    await s.move(ids["p8"], "processing", at=ago(minutes=3))
    ids["p9"] = await s.payout("1", "USDT", ago(minutes=1))
    ids["p10"] = await s.payout("1500000", "USDT", ago(minutes=2))  # above the approval threshold
    ids["p11"] = await s.invoice("9", "USDT", ago(minutes=3))

    async with db.transaction() as session:
        # Books: 150 TON in the hot wallet; the chain was last measured at 100 TON.
        await post(
            session,
            "test.opening_balance",
            [
                books.Line(books.HOT_WALLET, "TON", 150 * 10**9),
                books.Line("equity:owner", "TON", -150 * 10**9),
            ],
        )
        session.add(
            MonitoringSignal(
                name="hot_wallet_balance",
                labels="asset=TON",
                kind="gauge",
                value=100 * 10**9,
                updated_at=ago(seconds=40),
            )
        )
        session.add(
            MonitoringSignal(name="gas_price", labels="", kind="gauge", value=400, updated_at=NOW)
        )
        for minutes, bp in ((30, 2_000), (30.25, 4_000), (20, 1_000)):
            session.add(_sample(ago(minutes=minutes), bp))
        session.add(_sample(ago(minutes=1), 3_500, latency_ms=800, queue_size=12))
        session.add(_sample(ago(hours=3), 9_000))
        for rule, severity, status in (
            ("payments_stuck", "warning", "open"),
            ("toncenter_unreachable", "critical", "open"),
            ("fee_high", "error", "acknowledged"),
            ("success_rate", "critical", "resolved"),
        ):
            session.add(
                Alert(
                    id=new_id("alr"),
                    dedup_key=f"{rule}:all",
                    rule=rule,
                    severity=severity,
                    status=status,
                    summary=f"{rule} {XSS}",
                    details={},
                    opened_at=ago(minutes=15),
                    last_seen_at=ago(minutes=1),
                )
            )
    return ids


def _sample(at: datetime, bp: int, **extra: Any) -> FeeSample:
    return FeeSample(
        id=new_id("fs"),
        sampled_at=at,
        latency_ms=extra.get("latency_ms"),
        latency_count=0,
        queue_size=extra.get("queue_size"),
        api_calls=0,
        api_errors=0,
        api_rate_limited=0,
        congestion_raw_bp=bp,
        congestion_bp=bp,
        batch_size=0,
        unavailable={},
    )


@pytest.fixture
async def seeded(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database, settings: Settings
) -> dict[str, str]:
    return await seed(Seeder(client, auth, db, settings), db)


def tile(html: str, name: str) -> str:
    match = re.search(rf'<div class="tile[^"]*" id="tile-{name}"(.*?)\n    </div>', html, re.S)
    assert match, f"no tile {name}"
    return match.group(0)


def attr(fragment: str, name: str) -> str:
    match = re.search(rf'{name}="([^"]*)"', fragment)
    assert match, f"no {name} in {fragment[:200]}"
    return match.group(1)


def chart(html: str, chart_id: str) -> dict[str, Any]:
    match = re.search(rf'<div hidden class="chart-data" id="{chart_id}">(.*?)</div>', html, re.S)
    assert match, f"no chart {chart_id}"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def series(cfg: dict[str, Any], label: str) -> list[Any]:
    for dataset in cfg["data"]["datasets"]:
        if dataset["label"] == label:
            values: list[Any] = dataset["data"]
            return values
    raise AssertionError(f"no dataset {label}: {[d['label'] for d in cfg['data']['datasets']]}")


async def test_the_last_hour_in_figures(
    client: httpx.AsyncClient, signed_in: Any, seeded: dict[str, str]
) -> None:
    await signed_in("viewer")
    r = await client.get("/dashboard/overview?range=1h")
    assert r.status_code == 200, r.text
    html = r.text

    rate = tile(html, "success-rate")
    assert attr(rate, "data-value") == "80.00"  # 4 succeeded (3 payouts, 1 invoice), 1 failed
    assert "80.0 %" in rate and ">4</span> succeeded" in rate and ">1</span> failed" in rate

    volume = tile(html, "volume")
    # 2 TON at 5.00 = 10 USDT, 5 + 1 USDT of payouts, 7 USDT of an invoice
    assert attr(volume, "data-value") == str(23 * 10**6)
    assert ">23.00 USDT<" in volume and 'title="23.000000 USDT"' in volume
    assert ">2.0000 TON<" in volume and ">13.00 USDT<" in volume

    assert attr(tile(html, "created"), "data-value") == "10"
    pending = tile(html, "pending")
    assert attr(pending, "data-value") == "3"  # p7, p9 queued; p8 processing
    assert '"awaiting-approval">1<' in pending and '"open-invoices">1<' in pending
    assert attr(tile(html, "stuck"), "data-value") == "1"  # p7 only

    confirmation = tile(html, "confirmation")  # payouts p1, p2, p3: 10 s, 20 s, 30 s
    assert attr(confirmation, "data-count") == "3"
    assert attr(confirmation, "data-p50") == "20000"
    assert attr(confirmation, "data-p95") == "30000"
    assert "20.0 s" in confirmation and "p95 30.0 s" in confirmation

    fees = tile(html, "fees")  # p1 + p2 + p4 on TON, p5 by card
    assert re.search(
        r'data-asset="TON" data-value="48000000" title="0.048000000 TON">0.0480 TON<', fees
    )
    assert re.search(r'data-asset="USD" data-value="30"', fees)
    assert "4 attempts with a fee" in fees

    congestion = tile(html, "congestion")
    assert attr(congestion, "data-value") == "35.0"
    assert "latency 800 ms" in congestion and "queue 12" in congestion and "gas 400" in congestion

    alerts = tile(html, "alerts")
    assert attr(alerts, "data-value") == "2" and "1 acknowledged" in alerts

    # Details: hot wallet books against the chain, stuck payment, alerts in order, volume table.
    ton = re.search(r'<tr data-asset="TON">.*?</tr>', html, re.S)
    assert ton is not None
    assert "100.000000000 TON" in ton.group(0) and "150.000000000 TON" in ton.group(0)
    assert "-50.000000000 TON" in ton.group(0)
    assert f'data-payment="{seeded["p7"]}"' in html
    for other in ("p8", "p9"):
        assert f'data-payment="{seeded[other]}"' not in html
    order = re.findall(r'<span class="muted mono">(\w+)</span>', html)
    assert order == ["toncenter_unreachable", "payments_stuck", "fee_high"]
    assert 'data-direction="in" data-asset="USDT"' in html


async def test_charts_bucket_what_happened(
    client: httpx.AsyncClient, signed_in: Any, seeded: dict[str, str]
) -> None:
    await signed_in("operator")
    html = (await client.get("/dashboard/overview?range=1h")).text
    window = Window.ending(RANGES["1h"], NOW)
    assert window.start == datetime(2026, 3, 2, 11, 0, tzinfo=UTC) and window.buckets == 61

    status = chart(html, "chart-status")
    assert len(status["data"]["labels"]) == 61 and status["data"]["labels"][0] == "11:00"
    succeeded = series(status, "succeeded")
    assert succeeded[10] == 1 and succeeded[30] == 1 and succeeded[40] == 1  # p1, p2, p3 created
    assert succeeded[55] == 1 and sum(succeeded) == 4  # the invoice p5
    assert series(status, "failed")[50] == 1 and sum(series(status, "failed")) == 1
    assert series(status, "queued")[50] == 1 and series(status, "queued")[59] == 1
    assert series(status, "processing")[56] == 1
    assert series(status, "requires_approval")[58] == 1
    assert series(status, "awaiting_payment")[57] == 1

    volume = chart(html, "chart-volume")
    assert series(volume, "payouts TON")[10] == 10.0  # 2 TON at 5.00, completed 11:10:20
    assert series(volume, "payouts USDT")[30] == 5.0 and series(volume, "payouts USDT")[40] == 1.0
    assert series(volume, "invoices USDT")[56] == 7.0

    fees = chart(html, "chart-fees")
    ton_fees = series(fees, "fees TON")
    assert ton_fees[10] == 0.005 and ton_fees[30] == 0.04 and ton_fees[50] == 0.003
    assert series(fees, "fees USD")[56] == 0.3
    assert "yUSD" in fees["options"]["scales"]  # its own axis: TON and USD never share one

    congestion = chart(html, "chart-congestion")
    avg, peak = series(congestion, "average %"), series(congestion, "peak %")
    # 11:29:55 (40 %) and 11:30:10 (20 %) fall in different buckets; 11:40:10 10 %; 11:59:10 35 %
    assert avg[29] == 40.0 and avg[30] == 20.0 and avg[40] == 10.0 and avg[59] == 35.0
    assert peak[30] == 20.0 and avg[0] is None and avg[60] is None


async def test_the_first_bucket_reaches_before_the_range_but_the_figures_do_not(
    client: httpx.AsyncClient, signed_in: Any, seeded: dict[str, str]
) -> None:
    await signed_in("viewer")
    html = (await client.get("/dashboard/overview?range=1h")).text
    # p13 failed at 11:00:05: drawn in the first bucket, not counted in the last hour's rate
    assert series(chart(html, "chart-status"), "failed")[0] == 0  # created 10:59, before start
    assert ">1</span> failed" in tile(html, "success-rate")


async def test_longer_ranges_take_in_more(
    client: httpx.AsyncClient, signed_in: Any, seeded: dict[str, str]
) -> None:
    await signed_in("viewer")
    day = (await client.get("/dashboard/overview?range=24h")).text
    # p6 (2 h ago) and p13 join: 5 succeeded, 2 failed
    assert attr(tile(day, "success-rate"), "data-value") == "71.43"
    assert attr(tile(day, "volume"), "data-value") == str(43 * 10**6)  # + 4 TON = 20 USDT
    assert attr(tile(day, "confirmation"), "data-count") == "4"
    assert attr(tile(day, "confirmation"), "data-p95") == "60000"
    assert re.search(r'data-asset="TON" data-value="55000000"', tile(day, "fees"))
    assert len(chart(day, "chart-status")["data"]["labels"]) == 49
    congestion = chart(day, "chart-congestion")
    assert max(v for v in series(congestion, "peak %") if v is not None) == 90.0

    week = (await client.get("/dashboard/overview?range=7d")).text
    assert attr(tile(week, "success-rate"), "data-value") == "75.00"  # + p12: 6 of 8
    assert attr(tile(week, "confirmation"), "data-count") == "5"
    assert len(chart(week, "chart-status")["data"]["labels"]) == 43
    assert 'class="active">7 days' in week or 'data-range="7d" class="active"' in week


async def test_the_live_fragment_carries_the_figures_and_the_details_out_of_band(
    client: httpx.AsyncClient, signed_in: Any, seeded: dict[str, str]
) -> None:
    await signed_in("viewer")
    r = await client.get("/dashboard/overview/live?range=1h", headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert r.text.lstrip().startswith("{#") is False
    assert '<div id="overview-live" hx-get="/dashboard/overview/live?range=1h"' in r.text
    assert 'hx-trigger="every 2s"' in r.text and 'hx-swap="outerHTML"' in r.text
    assert (
        '<div id="overview-details" class="grid-2 overview-details" hx-swap-oob="true">' in r.text
    )
    assert attr(tile(r.text, "pending"), "data-value") == "3"
    assert "<html" not in r.text  # a fragment, not a page
    assert "<script" not in r.text  # htmx drops scripts of a swap: chart data is in elements
    page = (await client.get("/dashboard/overview?range=1h")).text
    assert "hx-swap-oob" not in page  # the first render places the details itself


async def test_an_empty_system_renders(client: httpx.AsyncClient, signed_in: Any) -> None:
    await signed_in("viewer")
    for value in ("1h", "24h", "7d", ""):
        r = await client.get(f"/dashboard/overview?range={value}")
        assert r.status_code == 200, r.text
        assert attr(tile(r.text, "success-rate"), "data-value") == ""
        assert attr(tile(r.text, "volume"), "data-value") == "0"
        assert "not sampled yet" in r.text and "No open alerts." in r.text
        assert "Nothing is stuck." in r.text
    default = (await client.get("/dashboard/overview")).text
    assert 'data-range="24h" class="active"' in default


@pytest.mark.parametrize("bad", ["2d", "1H", "24", "all", "<script>", "1h;drop"])
async def test_a_bad_range_is_a_400_with_a_code(
    client: httpx.AsyncClient, signed_in: Any, bad: str
) -> None:
    await signed_in("viewer")
    page = await client.get("/dashboard/overview", params={"range": bad})
    assert page.status_code == 400
    assert 'data-code="range_invalid"' in page.text
    assert "range must be one of 1h, 24h, 7d" in page.text
    assert "<script>" not in page.text  # the value is echoed escaped
    live = await client.get(
        "/dashboard/overview/live", params={"range": bad}, headers={"HX-Request": "true"}
    )
    assert live.status_code == 400 and 'data-code="range_invalid"' in live.text
    assert "<html" not in live.text


async def test_hostile_alert_text_is_inert(
    client: httpx.AsyncClient, signed_in: Any, seeded: dict[str, str]
) -> None:
    await signed_in("viewer")
    html = (await client.get("/dashboard/overview?range=1h")).text
    assert "<script>window.__xss" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html


async def test_strangers_are_sent_to_sign_in(client: httpx.AsyncClient, admins: Any) -> None:
    page = await client.get("/dashboard/overview?range=1h")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/dashboard/login?next=/dashboard/overview")
    live = await client.get("/dashboard/overview/live", headers={"HX-Request": "true"})
    assert live.status_code == 401 and "HX-Redirect" in live.headers


async def test_range_figures_are_shared_for_a_few_seconds_and_the_present_is_live(
    client: httpx.AsyncClient,
    signed_in: Any,
    seeded: dict[str, str],
    auth: dict[str, str],
    db: Database,
    settings: Settings,
) -> None:
    await signed_in("viewer")
    before = (await client.get("/dashboard/overview?range=7d")).text
    assert attr(tile(before, "created"), "data-value") == "13"
    assert attr(tile(before, "pending"), "data-value") == "3"
    s = Seeder(client, auth, db, settings)
    await s.payout("1", "USDT", NOW)
    # Same moment: the 7 d figures come from the cache, pending is read again.
    again = (await client.get("/dashboard/overview?range=7d")).text
    assert attr(tile(again, "created"), "data-value") == "13"
    assert attr(tile(again, "pending"), "data-value") == "4"
    # Other ranges have their own figures.
    assert (
        attr(tile((await client.get("/dashboard/overview?range=1h")).text, "created"), "data-value")
        == "11"
    )
    # Once the range's cache time has passed, the figures are read again.
    later = NOW + timedelta(seconds=RANGES["7d"].cache_seconds)
    clock.set_clock(lambda: later)
    fresh = (await client.get("/dashboard/overview?range=7d")).text
    assert attr(tile(fresh, "created"), "data-value") == "14"
    assert attr(tile(fresh, "pending"), "data-value") == "4"


async def test_confirmation_time_is_cut_to_what_the_page_shows(
    client: httpx.AsyncClient,
    signed_in: Any,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
) -> None:
    s = Seeder(client, auth, db, settings)
    for took in (12.345, 0.987, 150.5):
        await s.paid_payout("1", "TON", ago(minutes=10), took)
    await signed_in("viewer")
    confirmation = tile((await client.get("/dashboard/overview?range=1h")).text, "confirmation")
    assert attr(confirmation, "data-count") == "3"
    assert attr(confirmation, "data-p50") == "12300"  # 12.345 s at 100 ms
    assert attr(confirmation, "data-p95") == "150000"  # 150.5 s at 1 s
    assert "12.3 s" in confirmation and "p95 2.5 min" in confirmation


def test_shown_durations_keep_their_order() -> None:
    assert [shown_ms(v) for v in (0, 987, 9_999, 10_000, 12_345, 99_999, 100_000, 150_500)] == [
        0,
        980,
        9_990,
        10_000,
        12_300,
        99_900,
        100_000,
        150_000,
    ]
    values = sorted(range(0, 400_000, 37))
    assert [shown_ms(v) for v in values] == sorted(shown_ms(v) for v in values)


def test_segments_cover_each_bucket_once_and_split_the_first_at_since() -> None:
    window = Window.ending(RANGES["1h"], NOW)  # 12:00:10: since 11:00:10 inside bucket 0
    parts = segments(window)
    assert parts[0] == (0, 0, datetime(2026, 3, 2, 11, 0, tzinfo=UTC), window.since)
    assert parts[1] == (0, 1, window.since, datetime(2026, 3, 2, 11, 1, tzinfo=UTC))
    assert parts[-1][0] == 60 and parts[-1][3] == datetime(2026, 3, 2, 12, 1, tzinfo=UTC)
    assert all(a[3] == b[2] for a, b in pairwise(parts))  # no gap, no overlap
    aligned = Window.ending(RANGES["24h"], datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    first = segments(aligned)[0]
    assert first[:2] == (0, 1) and first[2] == aligned.since  # on a boundary: no split
    assert aligned.buckets == 49


async def test_stuck_payments_are_counted_in_full_and_the_oldest_listed(
    client: httpx.AsyncClient,
    signed_in: Any,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
) -> None:
    s = Seeder(client, auth, db, settings)
    stuck = [await s.payout("1", "TON", ago(minutes=10 + i)) for i in range(7)]
    await s.move(stuck[0], "processing", at=ago(minutes=9))  # processing is pending too
    await s.payout("1", "TON", ago(minutes=20), target_confirmation_seconds=1800)  # within target
    await s.payout("1", "TON", ago(seconds=170))  # younger than ALERT_STUCK_SECONDS
    await signed_in("viewer")
    html = (await client.get("/dashboard/overview?range=1h")).text
    assert attr(tile(html, "stuck"), "data-value") == "7"
    assert attr(tile(html, "pending"), "data-value") == "9"
    listed = re.findall(r'<tr data-payment="(pay_\w+)">', html)
    assert listed == list(reversed(stuck))[:5]  # oldest first
    assert "and 2 more (oldest first)." in html
    assert "pending for" in html and "16.0 min" in html


async def test_payouts_waiting_for_people_are_not_counted_as_stuck(
    client: httpx.AsyncClient,
    signed_in: Any,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
) -> None:
    """The tile counts what the alert counts (`is_stuck`): not a bank payout within its
    business days (one past them is), nor a treasury payout whose order waits for its
    signers; a treasury payout whose proposal is not on chain after the stuck age is stuck."""
    from sqlalchemy import update

    from tests.dashboard.test_operations import _route_to_treasury
    from tonrail.treasury.models import OrderStatus

    s = Seeder(client, auth, db, settings)
    ordinary = await s.payout("1", "TON", ago(minutes=30))
    late_bank = await s.payout("1", "TON", ago(days=9))  # past any 3 business days
    bank, signers, proposing = [await s.payout("1", "TON", ago(minutes=20)) for _ in range(3)]
    async with db.transaction() as session:
        for payout in (bank, late_bank):
            await session.execute(update(Payment).where(Payment.id == payout).values(route="bank"))
    later = int(datetime.now(UTC).timestamp()) + 3600
    await _route_to_treasury(db, signers, OrderStatus.PROPOSED, later)
    await _route_to_treasury(db, proposing, OrderStatus.SIGNED, later)
    await signed_in("viewer")
    html = (await client.get("/dashboard/overview?range=1h")).text
    assert attr(tile(html, "stuck"), "data-value") == "3"
    listed = re.findall(r'<tr data-payment="(pay_\w+)">', html)
    assert listed == [late_bank, ordinary, proposing]  # oldest first


def test_tile_amounts_are_grouped_and_cut_for_display() -> None:
    assert figure(6_289_365_888_598, "USDT") == "6,289,365.89 USDT"
    assert figure(72_510_989_249, "TON") == "72.5110 TON"
    assert figure(5, "TON") == "0.0000 TON"
    assert figure(30, "USD") == "0.30 USD"
    assert figure(125, "XYZ") == "125 XYZ"
