"""The router's decisions, as properties over generated situations, and the circuit breaker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tonrail.rails.base import PaymentView, Quote, RailName
from tonrail.rails.router import (
    Breaker,
    BreakerPolicy,
    NoRail,
    PastAttempt,
    RailChoice,
    RouteContext,
    RoutingPolicy,
    Wait,
    breaker_allows,
    breaker_on_error,
    breaker_on_probe,
    breaker_on_success,
    choose_rail,
)

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
RAILS: list[RailName] = ["ton", "stripe", "paypal", "bank"]
POLICY = RoutingPolicy()


def payment(priority: str = "normal") -> PaymentView:
    return PaymentView(
        id="pay_1",
        account_id="acct",
        direction="out",
        amount=10**9,
        asset="TON",
        counterparty="EQ...",
        priority=priority,
        target_confirmation_seconds=60,
        reference=None,
    )


def quote(rail: RailName, available: bool = True, reason: str | None = None) -> Quote:
    return Quote(rail, 30, "USD", 60, available, reason)


def ctx(**kw: object) -> RouteContext:
    base: dict[str, object] = {
        "now": NOW,
        "quotes": {r: quote(r) for r in RAILS},
        "enabled": frozenset(RAILS),
    }
    base.update(kw)
    return RouteContext(**base)  # type: ignore[arg-type]


def test_ton_first_when_healthy() -> None:
    assert choose_rail(payment(), ctx(), POLICY) == RailChoice("ton", "primary")


def test_congestion_threshold_depends_on_priority() -> None:
    urgent = choose_rail(payment("urgent"), ctx(congestion_pct=60), POLICY)
    low = choose_rail(payment("low"), ctx(congestion_pct=60), POLICY)
    assert isinstance(urgent, RailChoice) and urgent.rail == "stripe"
    assert urgent.reason == "ton_congested"
    assert low == RailChoice("ton", "primary")


def test_skips_disabled_over_max_and_open_breakers_in_priority_order() -> None:
    c = ctx(
        divert=True,
        enabled=frozenset({"ton", "paypal", "bank"}),
        quotes={
            "ton": quote("ton"),
            "stripe": quote("stripe"),
            "paypal": quote("paypal", False, "amount_over_max"),
            "bank": quote("bank"),
        },
    )
    d = choose_rail(payment(), c, POLICY)
    assert isinstance(d, RailChoice) and d.rail == "bank" and d.reason == "fee_diverted"
    assert [(s.rail, s.reason) for s in d.skipped] == [
        ("ton", "fee_diverted"),
        ("stripe", "disabled"),
        ("paypal", "amount_over_max"),
    ]
    d2 = choose_rail(
        payment(), ctx(divert=True, health={"stripe": Breaker("open", 5, NOW)}), POLICY
    )
    assert isinstance(d2, RailChoice) and d2.rail == "paypal"


def test_never_falls_back_while_ton_attempt_is_in_flight() -> None:
    for status in ("created", "submitted", "unknown"):
        d = choose_rail(
            payment(),
            ctx(ton_failed_after_retries=True, attempts=[PastAttempt("ton", status)]),
            POLICY,
        )
        assert d == Wait(f"attempt_{status}", "ton")


def test_failed_ton_then_backup_then_nothing() -> None:
    attempts = [PastAttempt("ton", "failed")]
    d = choose_rail(payment(), ctx(ton_failed_after_retries=True, attempts=attempts), POLICY)
    assert isinstance(d, RailChoice) and d.rail == "stripe"
    assert d.reason == "ton_failed_after_retries"
    attempts += [PastAttempt("stripe", "failed"), PastAttempt("paypal", "failed")]
    d = choose_rail(payment(), ctx(ton_failed_after_retries=True, attempts=attempts), POLICY)
    assert isinstance(d, RailChoice) and d.rail == "bank"
    attempts.append(PastAttempt("bank", "failed"))
    d = choose_rail(payment(), ctx(ton_failed_after_retries=True, attempts=attempts), POLICY)
    assert isinstance(d, NoRail) and {s.rail for s in d.skipped} == set(RAILS)


statuses = st.sampled_from(["created", "submitted", "unknown", "confirmed", "failed", "expired"])
breakers = st.one_of(
    st.just(Breaker()),
    st.builds(
        Breaker,
        st.sampled_from(["open", "half_open"]),
        st.integers(0, 10),
        st.just(NOW - timedelta(seconds=30)),
    ),
)


@given(
    attempts=st.lists(st.tuples(st.sampled_from(RAILS), statuses), max_size=4),
    congestion=st.one_of(st.none(), st.integers(0, 100)),
    divert=st.booleans(),
    failed=st.booleans(),
    enabled=st.sets(st.sampled_from(RAILS)),
    available=st.dictionaries(st.sampled_from(RAILS), st.booleans()),
    health=st.dictionaries(st.sampled_from(RAILS), breakers),
    priority=st.sampled_from(["urgent", "normal", "low"]),
)
def test_router_properties(
    attempts: list[tuple[RailName, str]],
    congestion: int | None,
    divert: bool,
    failed: bool,
    enabled: set[RailName],
    available: dict[RailName, bool],
    health: dict[RailName, Breaker],
    priority: str,
) -> None:
    c = ctx(
        attempts=[PastAttempt(r, s) for r, s in attempts],
        congestion_pct=congestion,
        divert=divert,
        ton_failed_after_retries=failed,
        enabled=frozenset(enabled),
        quotes={r: quote(r, a) for r, a in available.items()},
        health=health,
    )
    d = choose_rail(payment(priority), c, POLICY)
    live = [a for a in c.attempts if a.status in ("created", "submitted", "unknown")]
    if live:
        assert isinstance(d, Wait)  # never a second attempt while one may move money
        return
    if isinstance(d, RailChoice):
        assert d.rail in enabled and available.get(d.rail) is True
        assert breaker_allows(health.get(d.rail, Breaker()), NOW, POLICY.breaker)
        assert not any(a.status == "confirmed" for a in c.attempts)
        if d.rail != "ton":
            assert d.reason != "primary"
            # every backup rail before it in priority order was skipped, with a reason
            before = POLICY.backup_order[: POLICY.backup_order.index(d.rail)]
            assert {s.rail for s in d.skipped} >= set(before)
            if failed or divert:
                assert d.reason in ("ton_failed_after_retries", "fee_diverted")
        else:
            assert not failed
            if divert:  # diverted, but no backup rail could take it: TON after all
                assert d.reason == "fee_diverted_no_backup"
    else:
        assert isinstance(d, NoRail)
        # A soft reason never leaves a payment without a rail while TON could take it.
        ton_ok = (
            "ton" in enabled
            and available.get("ton") is True
            and breaker_allows(health.get("ton", Breaker()), NOW, POLICY.breaker)
        )
        ton_failed_before = any(r == "ton" and s == "failed" for r, s in attempts)
        assert (
            failed or ton_failed_before or not ton_ok or any(s == "confirmed" for _, s in attempts)
        )


@given(st.lists(st.sampled_from(["error", "success", "probe", "tick"]), max_size=30))
def test_breaker_state_machine(events: list[str]) -> None:
    policy = BreakerPolicy(failure_threshold=3, open_seconds=60)
    b, now = Breaker(), NOW
    for ev in events:
        before = b
        if ev == "error":
            b = breaker_on_error(b, now, policy)
            if before.state == "half_open":
                assert b.state == "open" and b.opened_at == now
        elif ev == "success":
            b = breaker_on_success(b)
            assert b == Breaker()
        elif ev == "probe":
            b = breaker_on_probe(b, now, policy)
        else:
            now += timedelta(seconds=61)
        assert (b.state == "open") == (b.opened_at is not None and b.state == "open")
        if b.state == "closed":
            assert b.failures < policy.failure_threshold
        if b.state == "half_open":
            assert not breaker_allows(b, now, policy)  # one probe at a time


def test_breaker_opens_then_half_opens_after_cool_down() -> None:
    policy = BreakerPolicy(failure_threshold=2, open_seconds=60)
    b = breaker_on_error(breaker_on_error(Breaker(), NOW, policy), NOW, policy)
    assert b.state == "open" and not breaker_allows(b, NOW + timedelta(seconds=59), policy)
    later = NOW + timedelta(seconds=60)
    assert breaker_allows(b, later, policy)
    probe = breaker_on_probe(b, later, policy)
    assert probe.state == "half_open"
    assert breaker_on_error(probe, later, policy).state == "open"
    assert breaker_on_success(probe).state == "closed"
