"""The Lua script (security/rate_limit_redis.py) against the in-process arithmetic: on a real
Redis, any sequence of draws, asks and clock moves gets the answers `LocalBuckets` gives."""

from __future__ import annotations

import random

from tests.conftest import REDIS_URL
from tonrail.security.rate_limit_redis import EXPIRY_GRACE_MS, RedisBuckets
from tonrail.security.rate_limits import Charge, LocalBuckets, Rule

RULES = [Rule("key_write", 2.0, 3), Rule("ip_write", 0.5, 5), Rule("login", 1 / 6, 1)]


async def test_the_script_answers_as_the_local_buckets_do(redis_prefix: str) -> None:
    rng = random.Random(16)
    shared, local = RedisBuckets(REDIS_URL, redis_prefix), LocalBuckets()
    now = 1_764_590_400_000_000  # 2025-12-01, in microseconds: 16 digits, as in production
    try:
        for _ in range(400):
            now += rng.choice([0, 0, 0, 100_000, 499_999, 500_000, 3_000_000, -7_200_000_000])
            charges = [
                Charge(rule, rng.choice(["a", "b"]))
                for rule in rng.sample(RULES, rng.randint(1, 3))
            ]
            commit = rng.random() < 0.8
            assert await shared.hit(charges, now, commit) == local.hit(charges, now, commit)
    finally:
        await shared.close()


async def test_buckets_expire_a_minute_after_they_are_full_again(redis_prefix: str) -> None:
    shared = RedisBuckets(REDIS_URL, redis_prefix)
    try:
        charge = Charge(Rule("key_read", 10.0, 20), "key_a")
        now = 1_764_590_400_000_000
        for _ in range(5):
            await shared.hit([charge], now)
        ttl_ms = await shared.client.pttl(shared.key(charge))
        # 5 tokens at 100 ms: full again after 0.5 s, gone a minute later.
        assert EXPIRY_GRACE_MS < ttl_ms <= EXPIRY_GRACE_MS + 500
        assert shared.key(charge) == "{" + redis_prefix + "}:key_read:key_a"
    finally:
        await shared.close()
