"""The rate-limit buckets in Redis: one Lua script draws from every bucket of a request
atomically, so all API processes of a deployment share each key's and address's limits.

Why a script and not the `limits` library: `limits` offers fixed, moving and sliding windows
but no token bucket, and two buckets (the key's and the address's) are to be drawn from
together or not at all, in one round trip. The script is GCRA, the arithmetic of
`rate_limits.draw`, on one integer per bucket (its theoretical arrival time in
microseconds), which expires when the bucket is full again. Every key shares one hash tag
(`{prefix}`), so the script also runs on a Redis cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tonrail.security.rate_limits import Charge, Drawn

# KEYS[i]: bucket i. ARGV[1]: now (µs); ARGV[2]: 1 to draw, 0 to only ask; ARGV[2i+1],
# ARGV[2i+2]: interval (µs) and burst of bucket i; the last ARGV: EXPIRY_GRACE_MS.
# Returns, per bucket, its arrival time after the draw and how far over it is (> 0:
# refused). Only when no bucket is over (and ARGV[2] is 1) are the new arrival times
# stored. A time more than a burst ahead means the clock went back: the bucket counts as
# full, as in `rate_limits.draw`. string.format('%d'): Lua would print a 16-digit number as
# 1.7e+15, losing precision.
DRAW = """
local now = tonumber(ARGV[1])
local out = {}
local allowed = ARGV[2] == '1'
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i + 1])
  local burst = tonumber(ARGV[2 * i + 2])
  local tat = tonumber(redis.call('GET', KEYS[i]) or 0)
  if tat < now or tat > now + burst * interval then tat = now end
  local after = tat + interval
  local over = after - now - burst * interval
  if over > 0 then allowed = false end
  out[2 * i - 1] = after
  out[2 * i] = over
end
if allowed then
  for i = 1, #KEYS do
    local ttl = math.ceil((out[2 * i - 1] - now) / 1000) + tonumber(ARGV[#ARGV])
    redis.call('SET', KEYS[i], string.format('%d', out[2 * i - 1]), 'PX', ttl)
  end
end
return out
"""


# A bucket's key lives this long past the moment it is full again. Expiry only frees memory
# (a bucket whose time has passed is full anyway), and Redis expires on its own clock, which
# may run ahead of an API process's: a key must not vanish while that process still counts.
EXPIRY_GRACE_MS = 60_000


class RedisBuckets:
    """`SharedBuckets` on Redis. Any failure (refused, timed out, an error reply) raises,
    and the limiter falls back to per-process buckets; nothing is retried here."""

    def __init__(
        self,
        url: str,
        prefix: str = "tonrail:rl",
        timeout_seconds: float = 1.0,
        pool_size: int = 50,
    ):
        self.prefix = "{" + prefix + "}:"
        # A blocking pool: a burst of concurrent requests waits (up to the timeout) for one
        # of `pool_size` connections instead of failing, as redis-py's default pool does
        # past its size, which would push a busy process onto per-process limits.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self.client: Redis = Redis(connection_pool=pool)
        self._draw = self.client.register_script(DRAW)

    def key(self, charge: Charge) -> str:
        return self.prefix + charge.bucket

    async def hit(self, charges: Sequence[Charge], now_us: int, commit: bool = True) -> list[Drawn]:
        args: list[int] = [now_us, 1 if commit else 0]
        for charge in charges:
            args += [charge.rule.interval_us, charge.rule.burst]
        args.append(EXPIRY_GRACE_MS)
        reply = await self._draw(keys=[self.key(c) for c in charges], args=args)
        return [Drawn(int(reply[i]), int(reply[i + 1])) for i in range(0, len(reply), 2)]

    async def close(self) -> None:
        await self.client.aclose()
        await self.client.connection_pool.disconnect()
