"""Rate limiter benchmark: what the limiter adds to one API request, per process and Redis.

What is measured: `GET /v1/noop` (the framework's floor, no work of ours) with a cached API
key, called straight through the real app's ASGI interface (`create_app`, every middleware,
no sockets, no HTTP client) so the figures are the server's own cost. Three apps side by
side on one SQLite file: the limiter off (RATE_LIMIT_ENABLED=false), per process (no
REDIS_URL) and shared through the local Redis (127.0.0.1:6379, a scratch key prefix). With
the limiter on, each request draws from its address's and its key's buckets (limits set so
high that none refuses), and its response carries the RateLimit headers. Each round runs
BENCH_RATE_LIMITS_REQUESTS requests one after another per app, the apps in turn; a round's
cost is an app's time per request minus the limiter-off app's in that round, and the table
gives the median over BENCH_RATE_LIMITS_ROUNDS rounds: wall time (what a request waits,
the Redis round trip included) and CPU time of this process (what it costs the server;
waiting for Redis costs none). Other processes share this machine's 2 cores: each round
waits for a quiet moment first, and a round they disturbed shows in its "other load".

    python -m benchmarks.bench_rate_limits
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench_api import QUIET_LIMIT, QUIET_WAIT_SECONDS, _machine_busy_ticks, wait_quiet

REQUESTS = int(os.environ.get("BENCH_RATE_LIMITS_REQUESTS", "3000"))
ROUNDS = int(os.environ.get("BENCH_RATE_LIMITS_ROUNDS", "7"))
REDIS_URL = os.environ.get("BENCH_RATE_LIMITS_REDIS_URL", "redis://127.0.0.1:6379/0")
GOAL_MS = 0.2
WARMUP = 300
UNLIMITED = {
    f"rate_limit_{who}_{kind}_{what}": value
    for who in ("key", "ip")
    for kind in ("read", "write")
    for what, value in (("per_second", 1e9), ("burst", 10**9))
}
MODES = ("off", "per process", "Redis")


@dataclass
class Sample:
    wall_us: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)


def _scope(secret: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/noop",
        "raw_path": b"/v1/noop",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {secret}".encode())],
        "client": ("203.0.113.9", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def _request(app: Any, secret: str) -> tuple[int, dict[bytes, bytes]]:
    """One request through the app's ASGI interface; returns (status, headers)."""
    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = dict(message["headers"])

    await app(_scope(secret), receive, send)
    return answer["status"], answer["headers"]


async def _per_request(app: Any, secret: str, n: int) -> tuple[float, float]:
    """Wall and CPU microseconds per request over `n` sequential requests."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await _request(app, secret)
    return (
        (time.perf_counter() - wall) / n * 1e6,
        (time.process_time() - cpu) / n * 1e6,
    )


async def _measure(tmp: Path) -> tuple[dict[str, Sample], list[float], dict[str, str]]:
    from redis.asyncio import Redis

    from tonrail.app import create_app
    from tonrail.db import Database
    from tonrail.migrate import upgrade_async
    from tonrail.security.api_keys import authenticate, create_key
    from tonrail.settings import Settings

    url = f"sqlite+aiosqlite:///{tmp / 'bench.sqlite3'}"
    await upgrade_async(url)
    db = Database(url)
    async with db.transaction() as session:
        _, secret = await create_key(session, "acct_bench", "bench")
        principal = await authenticate(session, secret)
    prefix = f"tonrail-bench:{uuid.uuid4().hex}"
    base = Settings(_env_file=None, database_url=url, data_dir=tmp, **UNLIMITED)  # type: ignore[call-arg]
    apps = {
        "off": create_app(base.model_copy(update={"rate_limit_enabled": False}), db),
        "per process": create_app(base, db),
        "Redis": create_app(
            base.model_copy(update={"redis_url": REDIS_URL, "rate_limit_redis_prefix": prefix}),
            db,
        ),
    }
    checks: dict[str, str] = {}
    for mode, app in apps.items():
        access = app.state.access  # the key cached, as after its first request
        access.remember(secret, principal, access.version)
        for _ in range(WARMUP):
            status, headers = await _request(app, secret)
        assert status == 200, (mode, status)
        checks[mode] = headers.get(b"ratelimit-limit", b"-").decode()
    if apps["Redis"].state.rate_limiter.store_down:
        raise RuntimeError(f"Redis at {REDIS_URL} did not answer")
    samples = {mode: Sample() for mode in MODES}
    loads: list[float] = []
    try:
        for _ in range(ROUNDS):
            wait_quiet(QUIET_LIMIT, QUIET_WAIT_SECONDS)
            busy = _machine_busy_ticks()
            started = time.process_time()
            wall_started = time.monotonic()
            for mode in MODES:
                wall, cpu = await _per_request(apps[mode], secret, REQUESTS)
                samples[mode].wall_us.append(wall)
                samples[mode].cpu_us.append(cpu)
            elapsed = time.monotonic() - wall_started
            ours = time.process_time() - started
            ticks = os.sysconf("SC_CLK_TCK")
            other = (_machine_busy_ticks() - busy) / ticks - ours
            loads.append(max(0.0, 100 * other / elapsed))
        if apps["Redis"].state.rate_limiter.store_down:
            raise RuntimeError("Redis failed during the measurement: figures would be per process")
    finally:
        for app in apps.values():
            if app.state.rate_limiter is not None:
                await app.state.rate_limiter.close()
        client = Redis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match="{" + prefix + "}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await db.dispose()
    return samples, loads, checks


def _cost(samples: dict[str, Sample], mode: str, kind: str) -> list[float]:
    base = getattr(samples["off"], kind)
    return [m - b for m, b in zip(getattr(samples[mode], kind), base, strict=True)]


def main() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        samples, loads, checks = asyncio.run(_measure(Path(tmp)))
    rows = [
        "| limiter | request µs, wall (median) | added µs, wall: median / max | "
        "request µs, CPU (median) | added µs, CPU: median / max | RateLimit-Limit sent |",
        "|---|--:|--:|--:|--:|---|",
    ]
    verdicts = []
    for mode in MODES:
        s = samples[mode]
        wall, cpu = statistics.median(s.wall_us), statistics.median(s.cpu_us)
        if mode == "off":
            rows.append(f"| off | {wall:.0f} | - | {cpu:.0f} | - | {checks[mode]} |")
            continue
        added_wall, added_cpu = _cost(samples, mode, "wall_us"), _cost(samples, mode, "cpu_us")
        rows.append(
            f"| {mode} | {wall:.0f} | **{statistics.median(added_wall):.0f}** / "
            f"{max(added_wall):.0f} | {cpu:.0f} | **{statistics.median(added_cpu):.0f}** / "
            f"{max(added_cpu):.0f} | {checks[mode]} |"
        )
        worst = max(statistics.median(added_wall), statistics.median(added_cpu)) / 1000
        verdicts.append(f"{mode} {'meets' if worst < GOAL_MS else 'misses'} it ({worst:.3f} ms)")
    return "\n".join(
        [
            "## Rate limiter cost per request",
            "",
            f"`GET /v1/noop` with a cached API key through the app's ASGI interface, "
            f"{REQUESTS} sequential requests per app per round, {ROUNDS} rounds; the limiter "
            "draws from the address's and the key's buckets in one step (one Lua call for "
            "Redis) and adds the RateLimit headers. Added = the app's time per request minus "
            "the limiter-off app's, same round. Other processes used "
            f"{statistics.median(loads):.0f} % of a core during the median round "
            f"(max {max(loads):.0f} %).",
            "",
            *rows,
            "",
            f"Goal: under {GOAL_MS} ms added per request (the larger of wall and CPU medians): "
            + "; ".join(verdicts)
            + ".",
        ]
    )


if __name__ == "__main__":
    print(main())
