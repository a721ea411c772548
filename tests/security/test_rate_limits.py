"""Token buckets (security/rate_limits.py): the GCRA arithmetic, all-or-nothing draws, the
per-process store's bound, address subjects, and the fallback when the shared store fails."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tonrail import clock
from tonrail.security.rate_limits import (
    Charge,
    Drawn,
    LocalBuckets,
    RateLimiter,
    Rule,
    Rules,
    decide,
    draw,
    ip_subject,
)
from tonrail.settings import Settings

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RULE = Rule("key_write", per_second=2.0, burst=3)  # a token back every 0.5 s, 3 at once


def at(seconds: float) -> int:
    return int((START + timedelta(seconds=seconds)).timestamp() * 1_000_000)


def run(buckets: LocalBuckets, charges: Sequence[Charge], now_us: int) -> bool:
    return decide(charges, buckets.hit(charges, now_us), now_us).allowed


def test_a_full_bucket_gives_its_burst_then_one_token_per_interval() -> None:
    buckets = LocalBuckets()
    one = [Charge(RULE, "key_a")]
    assert [run(buckets, one, at(0)) for _ in range(5)] == [True, True, True, False, False]
    assert not run(buckets, one, at(0.49))
    assert run(buckets, one, at(0.5))
    assert not run(buckets, one, at(0.5))
    # Idle long enough, the bucket is full again, and no fuller than its burst.
    assert [run(buckets, one, at(100)) for _ in range(4)] == [True, True, True, False]


def test_the_decision_reports_remaining_reset_and_retry_after() -> None:
    buckets = LocalBuckets()
    one = [Charge(RULE, "key_a")]
    first = decide(one, buckets.hit(one, at(0)), at(0))
    assert (first.allowed, first.limit, first.remaining, first.reset_seconds) == (True, 3, 2, 1)
    decide(one, buckets.hit(one, at(0)), at(0))
    decide(one, buckets.hit(one, at(0)), at(0))
    refused = decide(one, buckets.hit(one, at(0)), at(0))
    assert (refused.allowed, refused.remaining, refused.retry_after_seconds) == (False, 0, 1)
    assert refused.reset_seconds == 2  # 3 tokens at 0.5 s each: full after 1.5 s, rounded up
    assert refused.rule == "key_write"


@given(
    st.integers(min_value=1, max_value=50),
    st.floats(min_value=0.1, max_value=1000),
    st.lists(st.integers(min_value=0, max_value=3_000_000), min_size=1, max_size=60),
)
def test_no_window_ever_passes_more_than_burst_plus_refill(
    burst: int, per_second: float, gaps_us: list[int]
) -> None:
    """Whatever the arrival pattern, the requests allowed in [t0, t1] never exceed
    burst + (t1 - t0) / interval: the bucket's promise."""
    rule = Rule("r", per_second, burst)
    buckets = LocalBuckets()
    now = at(0)
    allowed: list[int] = []
    for gap in gaps_us:
        now += gap
        if run(buckets, [Charge(rule, "s")], now):
            allowed.append(now)
    for i, start in enumerate(allowed):
        for j in range(i, len(allowed)):
            assert j - i + 1 <= burst + (allowed[j] - start) // rule.interval_us


def test_a_clock_that_went_back_does_not_lock_a_bucket_for_ever() -> None:
    buckets = LocalBuckets()
    one = [Charge(RULE, "key_a")]
    for _ in range(3):
        run(buckets, one, at(3600))
    assert not run(buckets, one, at(3600))
    # An hour back (NTP step, a test's clock): the bucket counts as full, not as empty.
    assert [run(buckets, one, at(0)) for _ in range(4)] == [True, True, True, False]


def test_a_refused_draw_costs_the_other_buckets_nothing() -> None:
    buckets = LocalBuckets()
    address = Rule("ip_write", per_second=1.0, burst=10)
    key = Rule("key_write", per_second=1.0, burst=2)
    both = [Charge(address, "203.0.113.9"), Charge(key, "key_noisy")]
    results = [run(buckets, both, at(0)) for _ in range(50)]
    assert results.count(True) == 2
    # The address lost two tokens, not fifty: eight left for the other keys behind it.
    other = [Charge(address, "203.0.113.9"), Charge(key, "key_quiet")]
    assert [run(buckets, other, at(0)) for _ in range(2)] == [True, True]
    third = [Charge(address, "203.0.113.9"), Charge(key, "key_third")]
    assert [run(buckets, third, at(0)) for _ in range(3)] == [True, True, False]
    fourth = [Charge(address, "203.0.113.9"), Charge(key, "key_fourth")]
    assert [run(buckets, fourth, at(0)) for _ in range(3)] == [True, True, False]
    # Eight of ten used by four keys, whatever the noisy one tried: two left.
    alone = [Charge(address, "203.0.113.9")]
    assert [run(buckets, alone, at(0)) for _ in range(3)] == [True, True, False]


def test_asking_without_drawing_changes_nothing() -> None:
    buckets = LocalBuckets()
    one = [Charge(RULE, "key_a")]
    for _ in range(10):
        assert decide(one, buckets.hit(one, at(0), commit=False), at(0)).allowed
    assert [run(buckets, one, at(0)) for _ in range(4)] == [True, True, True, False]
    assert not decide(one, buckets.hit(one, at(0), commit=False), at(0)).allowed


def test_the_emptiest_bucket_is_reported() -> None:
    wide, narrow = Rule("ip_read", 10.0, 100), Rule("key_read", 10.0, 4)
    charges = [Charge(wide, "a"), Charge(narrow, "k")]
    drawn = [draw(None, at(0), wide), draw(None, at(0), narrow)]
    decision = decide(charges, drawn, at(0))
    assert (decision.rule, decision.limit, decision.remaining) == ("key_read", 4, 3)


def test_the_store_stays_bounded_and_forgets_only_full_buckets() -> None:
    buckets = LocalBuckets(max_buckets=10)
    slow = Rule("r", per_second=0.001, burst=5)
    fast = Rule("f", per_second=1000.0, burst=5)
    run(buckets, [Charge(slow, "kept")], at(0))
    for n in range(30):
        run(buckets, [Charge(fast, f"s{n}")], at(n))
    # The slow bucket was not full yet, so it was kept: still one token short.
    assert [run(buckets, [Charge(slow, "kept")], at(30)) for _ in range(5)] == [
        True,
        True,
        True,
        True,
        False,
    ]
    assert len(buckets._tat) <= 10


def test_addresses_share_a_bucket_per_ipv6_64() -> None:
    assert ip_subject("203.0.113.9") == "203.0.113.9"
    assert ip_subject("2001:db8:1:2:aaaa::1") == ip_subject("2001:db8:1:2:bbbb::2")
    assert ip_subject("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert ip_subject("2001:db8:1:3::1") != ip_subject("2001:db8:1:2::1")
    assert ip_subject("::ffff:203.0.113.9") == "203.0.113.9"


def test_rules_come_from_settings_and_a_zero_rate_turns_a_bucket_off() -> None:
    s = Settings(
        _env_file=None,  # type: ignore[call-arg]
        rate_limit_key_read_per_second=0,
        rate_limit_login_per_minute=6,
        rate_limit_login_burst=2,
    )
    rules = Rules.from_settings(s)
    assert rules.for_key("key_a", read=True) is None
    write = rules.for_key("key_a", read=False)
    assert write is not None and write.rule.per_second == s.rate_limit_key_write_per_second
    login = rules.for_login("2001:db8::1")
    assert login is not None and login.subject == "2001:db8::/64"
    assert login.rule.interval_us == 10_000_000


class BrokenStore:
    """A shared store that fails the way a closed Redis port does."""

    def __init__(self) -> None:
        self.calls = 0

    async def hit(self, charges: Sequence[Charge], now_us: int, commit: bool = True) -> list[Drawn]:
        self.calls += 1
        raise ConnectionRefusedError("closed port")

    async def close(self) -> None:
        return None


async def test_a_failing_store_falls_back_to_per_process_buckets_and_reports() -> None:
    clock.set_clock(lambda: START)
    reports: list[bool] = []
    store = BrokenStore()
    rules = Rules(RULE, RULE, None, None, None)
    limiter = RateLimiter(rules, store, retry_seconds=3600, on_store_change=reports.append)
    results = [await limiter.hit([rules.for_key("key_a", read=False)]) for _ in range(4)]
    assert [d is not None and d.allowed for d in results] == [True, True, True, False]
    assert all(d is not None and d.degraded for d in results)
    assert limiter.store_down
    assert store.calls == 1  # not asked again within RATE_LIMIT_REDIS_RETRY_SECONDS
    assert reports == [False]  # reported once, not per request


async def test_no_bucket_no_decision() -> None:
    limiter = RateLimiter(Rules(None, None, None, None, None))
    assert await limiter.hit([None, None]) is None
