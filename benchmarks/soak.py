"""Soak run: the deployment at a steady, moderate load for a long time; leaks show as growth.

Separate processes on PostgreSQL (benchmarks/cluster.py): the local TON network, 2 x
`tonrail serve`, 2 x `tonrail worker`. The load, steady for the whole run: every second one
TON payout (every fifth in USDT), two list reads and one read of a payout by id; beside it
the chaos run's invoice payer (benchmarks/chaos_load.py: invoices created and paid on chain
by a customer's wallet, one after the other). Every 10 s the run samples each
tonrail process's resident memory (VmRSS) and open file descriptors from /proc.

Judged after a warm-up (`--warmup-minutes`, default 5):
- memory: each process's RSS at the end within 10 % of its RSS at the end of the warm-up
  (the median of the last three samples each, so one garbage-collection peak does not decide);
- file descriptors: each process's count at the end at most 5 above its count then;
- latency: the p99 of the load's requests in the last `--window-minutes` (5) within 20 % of
  the p99 in the first window after the warm-up;
- and the work got done: every payout paid, every invoice credited, at rest at the end.

    python -m benchmarks.soak --minutes 30          # make soak (docs/BENCHMARKS.md)
    python -m benchmarks.soak --minutes 4 --warmup-minutes 1 --window-minutes 1   # a smoke

Exit status 0 only if every judgement passed; the table is printed as Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from benchmarks.chaos_checks import quiet
from benchmarks.chaos_load import Asked, Load, call, fresh_destination, pay_invoices
from benchmarks.cluster import Stack, stack

APIS = 2
WORKERS = 2
SAMPLE_SECONDS = 10.0
RSS_GROWTH_MAX = 0.10
FD_SLACK = 5
P99_DRIFT_MAX = 0.20


@dataclass
class Samples:
    """Per process: (seconds since start, RSS bytes, open fds); per request: (at, ms)."""

    procs: dict[str, list[tuple[float, int, int]]] = field(default_factory=dict)
    latencies: list[tuple[float, float]] = field(default_factory=list)
    errors: int = 0


def _proc_figures(pid: int) -> tuple[int, int] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024, fds
    return None


async def sample(up: Stack, samples: Samples, started: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for name, role in up.cluster.roles.items():
            if role.proc is None or role.proc.poll() is not None:
                continue
            found = _proc_figures(role.proc.pid)
            if found is not None:
                rss, fds = found
                samples.procs.setdefault(name, []).append((time.monotonic() - started, rss, fds))
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
        except TimeoutError:
            pass


async def steady(load: Load, samples: Samples, started: float, stop: asyncio.Event) -> None:
    """One payout, two list reads and one read by id per second, timed from here."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        n = 0
        while not stop.is_set():
            tick = time.monotonic()
            n += 1
            asset = "USDT" if n % 5 == 0 else "TON"
            body = {
                "amount": "0.01",
                "asset": asset,
                "destination": fresh_destination(load.rng),
            }
            calls: list[tuple[str, dict[str, str] | None, str | None]] = [
                ("/v1/payouts", body, f"soak-{n}"),
                ("/v1/payouts?limit=10", None, None),
                ("/v1/invoices?limit=10", None, None),
            ]
            if load.payouts:
                calls.append((f"/v1/payouts/{load.rng.choice(load.payouts).id}", None, None))
            for path, payload, key in calls:
                t0 = time.monotonic()
                status, answer = await call(load, session, path, payload, load.secret, key)
                samples.latencies.append((t0 - started, (time.monotonic() - t0) * 1000))
                if status >= 400:
                    samples.errors += 1
                elif payload is not None:
                    minor = 10**9 if asset == "TON" else 10**6
                    load.payouts.append(
                        Asked(answer["id"], asset, minor // 100, body["destination"])
                    )
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))


def _p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, int(0.99 * len(ordered) + 0.999999) - 1)]


def _median_of_last(points: list[tuple[float, int, int]], until: float, index: int) -> int:
    before = [p[index] for p in points if p[0] <= until][-3:]
    return int(statistics.median(before)) if before else 0


def judge(samples: Samples, warmup: float, window: float, end: float) -> tuple[list[str], str]:
    """The failures, and the Markdown table of the run."""
    failures: list[str] = []
    rows = [
        "| process | RSS after warm-up | RSS at end | growth | fds after warm-up | fds at end |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, points in sorted(samples.procs.items()):
        rss0, rss1 = _median_of_last(points, warmup, 1), _median_of_last(points, end, 1)
        fd0, fd1 = _median_of_last(points, warmup, 2), _median_of_last(points, end, 2)
        growth = (rss1 - rss0) / rss0 if rss0 else float("nan")
        rows.append(
            f"| {name} | {rss0 / 2**20:.1f} MiB | {rss1 / 2**20:.1f} MiB | {100 * growth:+.1f} % "
            f"| {fd0} | {fd1} |"
        )
        if not rss0 or growth > RSS_GROWTH_MAX:
            failures.append(f"{name}: RSS grew {100 * growth:.1f} % after the warm-up")
        if fd1 > fd0 + FD_SLACK:
            failures.append(f"{name}: open fds {fd0} -> {fd1}")
    first = [ms for at, ms in samples.latencies if warmup <= at < warmup + window]
    last = [ms for at, ms in samples.latencies if end - window <= at <= end]
    p_first, p_last = _p99(first), _p99(last)
    drift = (p_last - p_first) / p_first if p_first else float("nan")
    rows += [
        "",
        "| requests | first window after warm-up | last window | drift |",
        "| --- | ---: | ---: | ---: |",
        f"| p99 latency | {p_first:.1f} ms ({len(first)} requests) | {p_last:.1f} ms "
        f"({len(last)} requests) | {100 * drift:+.1f} % |",
    ]
    if not first or not last or drift > P99_DRIFT_MAX:
        failures.append(f"p99 {p_first:.1f} ms -> {p_last:.1f} ms ({100 * drift:+.1f} %)")
    if samples.errors:
        failures.append(f"{samples.errors} requests answered 4xx")
    return failures, "\n".join(rows)


async def _failed_payouts(up: Stack) -> int:
    from sqlalchemy import func, select

    from tonrail.payments.models import Payment

    async with up.db.transaction() as session:
        found = await session.execute(
            select(func.count()).where(Payment.direction == "out", Payment.status == "failed")
        )
        return int(found.scalar_one())


async def run(minutes: float, warmup_min: float, window_min: float, seed: int) -> int:
    rng = random.Random(seed)
    async with stack("soak", APIS, WORKERS, rng, {"LOG_LEVEL": "WARNING"}) as up:
        load = Load(up.apis, up.secret, up.approvers, rng)
        samples = Samples()
        stop = asyncio.Event()
        started = time.monotonic()
        print(f"soak: {minutes:g} min, logs in {up.folder}", file=sys.stderr, flush=True)
        tasks = [
            asyncio.create_task(sample(up, samples, started, stop)),
            asyncio.create_task(steady(load, samples, started, stop)),
            asyncio.create_task(
                pay_invoices(
                    load, f"{up.net}/api/v2", up.usdt_master, up.payer_key, up.chain.hot, stop
                )
            ),
        ]
        await asyncio.sleep(minutes * 60)
        end = time.monotonic() - started
        stop.set()
        await asyncio.gather(*tasks)
        moving: str | None = "not checked"
        for _ in range(150):  # at rest within 5 minutes
            moving = await quiet(up.db, load, up.chain)
            if moving is None:
                break
            await asyncio.sleep(2)
        failures, table = judge(samples, warmup_min * 60, window_min * 60, end)
        failed = await _failed_payouts(up)
        if failed:
            failures.append(f"{failed} payouts failed")
        if moving is not None:
            failures.append(f"not at rest 5 minutes after the load: {moving}")
        crashed = [n for n, r in up.cluster.roles.items() if r.proc and r.proc.poll() is not None]
        if crashed:
            failures.append(f"processes exited during the run: {crashed}")
        figures = {
            "minutes": minutes,
            "payouts": len(load.payouts),
            "invoices": len(load.invoices),
            "requests": len(samples.latencies),
            "load_avg": os.getloadavg(),
        }
        print(json.dumps(figures, default=str))
        print(table)
        for failure in failures:
            print(f"FAIL {failure}", file=sys.stderr)
        up.keep = bool(failures)
        folder = up.folder
    if failures:
        print(f"soak: FAILED; logs kept in {folder}", file=sys.stderr)
        return 1
    print("soak: every check passed", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument("--window-minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.minutes < args.warmup_minutes + 2 * args.window_minutes:
        parser.error("--minutes must cover the warm-up and two windows")
    return asyncio.run(run(args.minutes, args.warmup_minutes, args.window_minutes, args.seed))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
