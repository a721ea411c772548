"""Rate limits: token buckets per API key and per client address, reads and writes apart.

Each bucket holds `burst` tokens and refills at `per_second`; a request draws one token from
every bucket that applies (its client address's, and its key's once known) or from none:
a request refused by one bucket costs the others nothing. The buckets are kept as GCRA's
"theoretical arrival time" (one integer per bucket, microseconds), the same arithmetic in
process (`LocalBuckets`) and in Redis (`security/rate_limit_redis.py`, one Lua script, so
every process of a deployment shares the limits).

With REDIS_URL set and Redis unreachable, the limiter falls back to this process's buckets
(reads and ordinary writes go on, limited per process) and says so in its decision
(`degraded`): payout endpoints then refuse payouts worth more than
RATE_LIMIT_FAIL_CLOSED_USDT (`RateLimiterUnavailable`), and the fallback is reported to
monitoring (`on_store_change`), which raises the `rate_limiter_unavailable` alert.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from tonrail import clock
from tonrail.errors import TonrailError
from tonrail.settings import Settings

log = logging.getLogger(__name__)

LOCAL_MAX_BUCKETS = 100_000  # per process; beyond it, full (idle) buckets are forgotten
REPORT_EVERY_SECONDS = 5.0  # while Redis is down, tell monitoring again this often


class RateLimited(TonrailError):
    """429: a bucket of this key or address is empty; retry after `retry_after` seconds."""

    code = "rate_limited"
    status = 429


class RateLimiterUnavailable(TonrailError):
    """503: the shared limit store is unreachable and this payout is too large to risk."""

    code = "rate_limiter_unavailable"
    status = 503


@dataclass(frozen=True, slots=True)
class Rule:
    """A kind of bucket: `name` (e.g. `key_write`), refill rate and capacity."""

    name: str
    per_second: float
    burst: int
    interval_us: int = field(init=False)  # microseconds one token takes to come back

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval_us", max(1, round(1_000_000 / self.per_second)))


@dataclass(frozen=True, slots=True)
class Charge:
    """One token to draw from the bucket of `rule` for `subject` (a key id, an address)."""

    rule: Rule
    subject: str

    @property
    def bucket(self) -> str:
        return f"{self.rule.name}:{self.subject}"


@dataclass(frozen=True, slots=True)
class Drawn:
    """A bucket's answer: its arrival time after the draw, and by how much it is over
    (microseconds; > 0 means empty, retry after that long)."""

    tat_us: int
    over_us: int


@dataclass(frozen=True, slots=True)
class Decision:
    """What a request was told, from the bucket closest to empty (the one that refused)."""

    allowed: bool
    rule: str
    limit: int
    remaining: int
    reset_seconds: int  # until that bucket is full again
    retry_after_seconds: int  # 0 when allowed
    degraded: bool = False  # Redis is configured but was not reachable: per-process buckets


def draw(tat_us: int | None, now_us: int, rule: Rule) -> Drawn:
    """GCRA: the bucket's arrival time moved by one token, and how far that is over.

    A stored time further ahead than a whole burst can only come from a clock that went
    back (an NTP step, a test): the bucket counts as full rather than empty for ever."""
    interval = rule.interval_us
    tat = tat_us if tat_us is not None and tat_us <= now_us + rule.burst * interval else now_us
    after = max(tat, now_us) + interval
    return Drawn(after, after - now_us - rule.burst * interval)


def decide(charges: Sequence[Charge], drawn: Sequence[Drawn], now_us: int) -> Decision:
    """Turn each bucket's answer into the request's decision (all must allow)."""
    worst: tuple[float, Charge, Drawn] | None = None
    refused = any(d.over_us > 0 for d in drawn)
    for charge, d in zip(charges, drawn, strict=True):
        # Refused: the bucket that keeps it waiting longest; allowed: the emptiest one.
        rank = d.over_us if refused else (d.tat_us - now_us) / (charge.rule.burst * 1.0)
        if worst is None or rank > worst[0]:
            worst = (rank, charge, d)
    assert worst is not None
    _, charge, d = worst
    interval = charge.rule.interval_us
    if refused:
        return Decision(
            False,
            charge.rule.name,
            charge.rule.burst,
            0,
            math.ceil((d.tat_us - interval - now_us) / 1_000_000),
            max(1, math.ceil(d.over_us / 1_000_000)),
        )
    remaining = (charge.rule.burst * interval - (d.tat_us - now_us)) // interval
    return Decision(
        True,
        charge.rule.name,
        charge.rule.burst,
        max(0, remaining),
        math.ceil((d.tat_us - now_us) / 1_000_000),
        0,
    )


class LocalBuckets:
    """The buckets of this process (no REDIS_URL, or Redis unreachable)."""

    def __init__(self, max_buckets: int = LOCAL_MAX_BUCKETS) -> None:
        self.max_buckets = max_buckets
        self._tat: dict[str, int] = {}

    def hit(self, charges: Sequence[Charge], now_us: int, commit: bool = True) -> list[Drawn]:
        """Draw from every bucket or from none (no await: atomic in the event loop);
        `commit=False` only asks whether the draw would pass."""
        drawn = [draw(self._tat.get(c.bucket), now_us, c.rule) for c in charges]
        if commit and all(d.over_us <= 0 for d in drawn):
            if len(self._tat) + len(charges) > self.max_buckets:
                self._forget_full(now_us)
            for charge, d in zip(charges, drawn, strict=True):
                self._tat[charge.bucket] = d.tat_us
        return drawn

    def _forget_full(self, now_us: int) -> None:
        # A bucket whose arrival time has passed is full: the same as no entry at all.
        self._tat = {k: v for k, v in self._tat.items() if v > now_us}
        if len(self._tat) >= self.max_buckets:
            self._tat.clear()  # bounded memory under a flood of distinct subjects


class SharedBuckets(Protocol):
    """A store every process shares (Redis); raises on any failure to answer."""

    async def hit(
        self, charges: Sequence[Charge], now_us: int, commit: bool = True
    ) -> list[Drawn]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Rules:
    """The rules in force (from settings); a rate of 0 turns that bucket off."""

    key_read: Rule | None
    key_write: Rule | None
    ip_read: Rule | None
    ip_write: Rule | None
    login: Rule | None
    pay: Rule | None = None  # the hosted checkout page's reads, per address
    pay_lookup: Rule | None = None  # its jetton-wallet lookup, per address

    @classmethod
    def from_settings(cls, s: Settings) -> Rules:
        def rule(name: str, per_second: float, burst: int) -> Rule | None:
            return Rule(name, per_second, max(1, burst)) if per_second > 0 else None

        return cls(
            key_read=rule(
                "key_read", s.rate_limit_key_read_per_second, s.rate_limit_key_read_burst
            ),
            key_write=rule(
                "key_write", s.rate_limit_key_write_per_second, s.rate_limit_key_write_burst
            ),
            ip_read=rule("ip_read", s.rate_limit_ip_read_per_second, s.rate_limit_ip_read_burst),
            ip_write=rule(
                "ip_write", s.rate_limit_ip_write_per_second, s.rate_limit_ip_write_burst
            ),
            login=rule("login", s.rate_limit_login_per_minute / 60, s.rate_limit_login_burst),
            pay=rule("pay", s.rate_limit_pay_per_minute / 60, s.rate_limit_pay_burst),
            pay_lookup=rule(
                "pay_lookup",
                s.rate_limit_pay_lookup_per_minute / 60,
                s.rate_limit_pay_lookup_burst,
            ),
        )

    def for_key(self, key_id: str, read: bool) -> Charge | None:
        rule = self.key_read if read else self.key_write
        return Charge(rule, key_id) if rule is not None else None

    def for_ip(self, ip: str, read: bool) -> Charge | None:
        rule = self.ip_read if read else self.ip_write
        return Charge(rule, ip_subject(ip)) if rule is not None else None

    def for_login(self, ip: str) -> Charge | None:
        return Charge(self.login, ip_subject(ip)) if self.login is not None else None

    def for_pay(self, ip: str, lookup: bool) -> Charge | None:
        rule = self.pay_lookup if lookup else self.pay
        return Charge(rule, ip_subject(ip)) if rule is not None else None


@lru_cache(maxsize=65_536)  # parsing an address is most of a per-process draw's cost
def ip_subject(ip: str) -> str:
    """The bucket of an address: itself for IPv4, its /64 for IPv6 (one host's usual share)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return f"{ipaddress.IPv6Network((address, 64), strict=False).network_address}/64"
    return str(address)


class RateLimiter:
    """The buckets of the API, the dashboard's sign-in and the checkout page, shared
    through Redis if given."""

    def __init__(
        self,
        rules: Rules,
        shared: SharedBuckets | None = None,
        *,
        retry_seconds: float = 5.0,
        on_store_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.rules = rules
        self.shared = shared
        self.local = LocalBuckets()
        self.retry_seconds = retry_seconds
        self.on_store_change = on_store_change
        self._down_until = 0.0  # monotonic: while Redis is down, do not wait on it per request
        self._down = False
        self._reported_at = -math.inf

    @property
    def store_down(self) -> bool:
        """Redis is configured and its last answer was a failure: buckets are per process."""
        return self._down

    async def hit(self, charges: Sequence[Charge | None], commit: bool = True) -> Decision | None:
        """Draw one token from each bucket (None entries are buckets turned off), or with
        `commit=False` only ask whether that would pass; None when no bucket applies."""
        wanted = [c for c in charges if c is not None]
        if not wanted:
            return None
        now_us = int(clock.now().timestamp() * 1_000_000)
        if self.shared is None:
            return decide(wanted, self.local.hit(wanted, now_us, commit), now_us)
        if time.monotonic() >= self._down_until:
            try:
                drawn = await self.shared.hit(wanted, now_us, commit)
            except Exception as exc:
                self._store_failed(exc)
            else:
                if self._down:
                    self._down = False
                    log.warning("rate limiter: Redis answers again; limits are shared again")
                    self._report(True)
                return decide(wanted, drawn, now_us)
        self._still_down()
        decision = decide(wanted, self.local.hit(wanted, now_us, commit), now_us)
        return Decision(
            decision.allowed,
            decision.rule,
            decision.limit,
            decision.remaining,
            decision.reset_seconds,
            decision.retry_after_seconds,
            degraded=True,
        )

    def _store_failed(self, exc: Exception) -> None:
        self._down_until = time.monotonic() + self.retry_seconds
        if not self._down:
            self._down = True
            log.error(
                "rate limiter: Redis unreachable (%s); per-process limits, large payouts "
                "refused, retrying every %.1f s",
                type(exc).__name__,
                self.retry_seconds,
            )

    def _still_down(self) -> None:
        if time.monotonic() - self._reported_at >= REPORT_EVERY_SECONDS:
            self._report(False)

    def _report(self, ok: bool) -> None:
        self._reported_at = -math.inf if ok else time.monotonic()
        if self.on_store_change is not None:
            try:
                self.on_store_change(ok)
            except Exception:
                log.exception("rate limiter: reporting the store's state failed")

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.close()
