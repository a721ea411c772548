"""Circuit breakers shared through the database, and `decide`, the loop's routing call."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.rails.conftest import new_payout
from tonrail import clock
from tonrail.db import Database
from tonrail.payments.models import Payment
from tonrail.payments.transitions import move_attempt, start_attempt
from tonrail.processing.dispatch import decide
from tonrail.processing.health import (
    load_health,
    record_rail_error,
    record_rail_probe,
    record_rail_success,
)
from tonrail.rails.base import PaymentView, Quote
from tonrail.rails.registry import enabled_rails, routing_policy
from tonrail.rails.router import NoRail, RailChoice, Wait


class TonQuote:
    """The TON rail's quote, as the fee optimizer would report it."""

    def __init__(self, available: bool = True):
        self.available = available

    async def quote(self, payment: PaymentView) -> Quote:
        return Quote("ton", 5_000_000, "TON", 10, self.available)


async def test_breaker_opens_skips_rail_then_half_open_probe_closes_it(
    db: Database, rail_app: Any, rail_settings: Any
) -> None:
    policy = routing_policy(rail_settings)
    assert policy.backup_order == ("stripe", "paypal", "bank")
    enabled = enabled_rails(rail_settings)
    assert enabled == {"ton", "stripe", "paypal", "bank"}
    rails = {"ton": TonQuote(), **rail_app.state.backup_rails}
    pid = await new_payout(
        db, rail_app, {"stripe_account": "acct_1X", "paypal_receiver": "p@example.com"}
    )
    async with db.transaction() as session:
        for _ in range(policy.breaker.failure_threshold):
            b = await record_rail_error(session, "stripe", policy.breaker, "HTTP 503")
        assert b.state == "open"
    async with db.transaction() as session:
        payment = await session.get(Payment, pid)
        assert payment is not None
        assert await decide(session, payment, rails, policy, enabled=enabled) == RailChoice(
            "ton", "primary"
        )
        d = await decide(session, payment, rails, policy, enabled=enabled, congestion_pct=90)
        assert isinstance(d, RailChoice) and d.rail == "paypal" and d.reason == "ton_congested"
        assert [(s.rail, s.reason) for s in d.skipped] == [
            ("ton", "ton_congested"),
            ("stripe", "circuit_open"),
        ]
    later = clock.now() + timedelta(seconds=policy.breaker.open_seconds + 1)
    clock.set_clock(lambda: later)
    async with db.transaction() as session:
        payment = await session.get(Payment, pid)
        assert payment is not None
        d = await decide(session, payment, rails, policy, enabled=enabled, divert=True)
        assert isinstance(d, RailChoice) and d.rail == "stripe"  # the probe may go
        assert (await record_rail_probe(session, "stripe", policy.breaker)).state == "half_open"
        d = await decide(session, payment, rails, policy, enabled=enabled, divert=True)
        assert isinstance(d, RailChoice) and d.rail == "paypal"  # one probe at a time
        await record_rail_success(session, "stripe")
        assert (await load_health(session))["stripe"].state == "closed"


async def test_decide_waits_for_a_live_ton_attempt(
    db: Database, rail_app: Any, rail_settings: Any
) -> None:
    policy = routing_policy(rail_settings)
    enabled = enabled_rails(rail_settings)
    rails = {"ton": TonQuote(), **rail_app.state.backup_rails}
    pid = await new_payout(db, rail_app, {"stripe_account": "acct_1X"})
    async with db.transaction() as session:
        payment = await session.get(Payment, pid)
        assert payment is not None
        attempt = await start_attempt(session, payment, "ton", {"reason": "primary"})
        await move_attempt(session, attempt, "submitted", provider_ref="hash")
        await move_attempt(session, attempt, "unknown")
        d = await decide(
            session, payment, rails, policy, enabled=enabled, ton_failed_after_retries=True
        )
        assert d == Wait("attempt_unknown", "ton")
        await move_attempt(session, attempt, "failed", error_code="bounced")
        d = await decide(
            session, payment, rails, policy, enabled=enabled, ton_failed_after_retries=True
        )
        assert isinstance(d, RailChoice) and (d.rail, d.reason) == (
            "stripe",
            "ton_failed_after_retries",
        )
        # Nothing can take a payout without payee details for any backup rail.
        payment.metadata_ = {}
        d = await decide(
            session, payment, rails, policy, enabled=enabled, ton_failed_after_retries=True
        )
        assert isinstance(d, NoRail)
        assert {s.reason for s in d.skipped if s.rail != "ton"} == {
            "counterparty_unsupported",
            "counterparty_iban_invalid",
        }
