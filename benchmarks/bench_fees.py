"""Fee optimizer benchmark: seeded workloads replayed on the local network, in one run.

In one process: the local TON network (real TVM, HTTP toncenter API, blocks every
BENCH_FEES_BLOCK_MS, default 400), the real TON payout rail (`assemble`, `send_due`,
`track_open` of processing/) on one SQLite database, and three workloads, all created
through the HTTP API and all on the wall clock (nothing is simulated: arrival times, the
chain's blocks and the confirmations are real time; the fees are exact chain fees and do not
depend on the machine's load, the times do):

1. main — BENCH_FEES_PAYOUTS payouts (seeded: priorities 20 % urgent, 50 % normal, 30 % low;
   70 % TON, 30 % USDT; ten payees) arriving at seeded times over BENCH_FEES_SECONDS, with a
   congestion episode injected through the local network's fault controls from 35 % to 55 %
   of the arrival period (`inclusion_delay_ms` 2000, `max_tx_per_block` 4); replayed three
   ways:
   (a) naive — every payout sent alone at once (TON_BATCH_MAX=1, the optimizer off:
       `fee_optimizer=False`, assemble until the queue is empty, every round);
   (b) fixed — the optimizer off; everything queued goes in one request every 30 s;
   (c) optimizer — the payout loop as it runs in production: the `fee_sampler` every 5 s, and
       `assemble` every round, which asks the optimizer (`decide_for_batch`, `timing`) when
       each payout goes and what a jetton transfer attaches.
2. low traffic — BENCH_FEES_LOW_PAYOUTS payouts, one every 20 s (priorities in turn), the
   optimizer; it starts once the main workload's arrivals have left the optimizer's
   arrival window (FEES_ARRIVAL_WINDOW_SECONDS), as after a busy hour. (It runs before the
   burst: tracking 1,000 payouts takes the worker about a minute, a latency the sampler
   reads as congestion for FEES_LATENCY_WINDOW_SECONDS, and congestion holds low and normal
   payouts.)
3. burst — BENCH_FEES_BURST payouts (the same mix) posted at once through
   `POST /v1/payouts/batch` (250 a call), the optimizer.

Targets: urgent 15 s, normal 60 s, low BENCH_FEES_LOW_TARGET (default 180 s instead of 1 h,
to keep a run short; the optimizer's low window cap scales with it). Reported per run: total
fees (nanoton, the TON rail's exact per-payout fees), fee per payout, p50/p95 time from
created to confirmed per priority, share that missed its target; and the floor: what the
main workload's payouts must spend whatever the timing plus one request's shared fee.

    python -m benchmarks.bench_fees           # prints the section
    python -m benchmarks.run --only fees      # and writes it into docs/BENCHMARKS.md
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from nacl.signing import SigningKey
from sqlalchemy import select
from ton_core import Address

from tonrail.app import create_app
from tonrail.db import Database
from tonrail.fees.sampler import ApiTally, Sampler
from tonrail.fees.service import shared_fee_fit
from tonrail.localnet.chain import Chain
from tonrail.localnet.genesis import HOT_SUBWALLET, HOT_TIMEOUT, Genesis
from tonrail.localnet.server import create_app as localnet_app
from tonrail.migrate import upgrade
from tonrail.payments.models import Payment
from tonrail.payments.service import PaymentService
from tonrail.processing.context import TonRailContext
from tonrail.processing.ton_loop import assemble, send_due
from tonrail.processing.ton_track import track_open
from tonrail.rails.ton.api import ToncenterTonApi, jetton_wallet_of
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.highload import HighloadWallet
from tonrail.rails.ton.models import TonRequest, TonTransfer
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.security.api_keys import create_key
from tonrail.settings import Settings

SEED = 20261127
PAYOUTS = int(os.environ.get("BENCH_FEES_PAYOUTS", "90"))
SECONDS = float(os.environ.get("BENCH_FEES_SECONDS", "90"))
BLOCK_MS = int(os.environ.get("BENCH_FEES_BLOCK_MS", "400"))
LOW_TARGET = int(os.environ.get("BENCH_FEES_LOW_TARGET", "180"))
BURST = int(os.environ.get("BENCH_FEES_BURST", "1000"))
TRICKLE = int(os.environ.get("BENCH_FEES_LOW_PAYOUTS", "12"))
TRICKLE_EVERY = 20.0
ONLY = os.environ.get("BENCH_FEES_ONLY", "main,burst,low").split(",")
POST_BATCH = 250  # payouts per POST /v1/payouts/batch when several arrive at once
TARGETS = {"urgent": 15, "normal": 60, "low": LOW_TARGET}
CONGESTION = {"inclusion_delay_ms": 2000, "max_tx_per_block": 4}
FIXED_EVERY = 30.0
ROUND = 0.2
DRAIN_LIMIT = 600.0
GOAL_FLOOR = 1.05  # optimizer fees <= this x the floor, ...
GOAL_MET = 1.0  # ... with every payout on target
GOAL_TRICKLE_P50_S = 2.0  # low traffic: median confirmation of every priority
GOAL_BURST_PER_REQUEST = 200  # burst: payouts a request carries on average


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds from the start
    priority: str
    asset: str
    amount: str
    payee: int


def mix(rng: random.Random, at: float, priority: str | None = None) -> Arrival:
    drawn = rng.choices(["urgent", "normal", "low"], [0.2, 0.5, 0.3])[0]
    if rng.random() < 0.7:
        asset, amount = "TON", f"0.{rng.randint(10, 500):03d}"
    else:
        asset, amount = "USDT", f"{rng.randint(1, 20)}.{rng.randint(0, 99):02d}"
    return Arrival(at, priority or drawn, asset, amount, rng.randrange(10))


def workload() -> list[Arrival]:
    rng = random.Random(SEED)
    times = sorted(rng.uniform(0, SECONDS) for _ in range(PAYOUTS))
    return [mix(rng, at) for at in times]


def burst() -> list[Arrival]:
    rng = random.Random(f"{SEED}-burst")
    return [mix(rng, 0.0) for _ in range(BURST)]


def trickle() -> list[Arrival]:
    rng = random.Random(f"{SEED}-trickle")
    turns = ("urgent", "normal", "low")
    return [mix(rng, i * TRICKLE_EVERY, turns[i % 3]) for i in range(TRICKLE)]


@dataclass
class Result:
    name: str
    fees: list[int] = field(default_factory=list)
    times: dict[str, list[float]] = field(default_factory=dict)
    missed: int = 0
    failed: int = 0
    unfinished: int = 0
    requests: int = 0
    common: int = 0  # nanoton: the requests' shared fees (external + internal_transfer)
    shared: list[tuple[int, int]] = field(default_factory=list)  # (common fee, size) a request
    payouts: int = 0
    # nanoton each payout spent beyond its share of its request: what batching cannot save
    own: dict[str, list[int]] = field(
        default_factory=lambda: {"TON": [], "USDT first": [], "USDT again": []}
    )

    @property
    def total(self) -> int:
        return sum(self.fees)


@dataclass
class Run:
    net_url: str
    genesis: Genesis
    db: Database
    settings: Settings
    ctx: TonRailContext
    http: httpx.AsyncClient
    auth: dict[str, str]


async def set_faults(url: str, values: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as c:
        (await c.post(f"{url}/localnet/faults", json=values)).raise_for_status()


async def open_run(net_url: str, genesis: Genesis, folder: Path, name: str) -> Run:
    path = folder / f"{name}.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url)
    settings = Settings(
        _env_file=None,
        environment="test",
        database_url=url,
        data_dir=folder,
        ton_api_url=f"{net_url}/api/v2",
        ton_api_v3_url=f"{net_url}/api/v3",
        ton_resend_seconds=3,
        fees_window_low_ms=LOW_TARGET * 1000 // 6,  # 10 min of a 1 h target, scaled
        payment_processor_address="EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs",
    )
    db = Database(url)
    hot = genesis.wallet("hot")
    key = SigningKey(bytes.fromhex(hot.to_json()["private_key"]))
    wallet = HighloadWallet(bytes(key.verify_key), HOT_SUBWALLET, HOT_TIMEOUT)
    api = ToncenterTonApi(ToncenterClient([f"{net_url}/api/v2"], [f"{net_url}/api/v3"]))
    jetton = await jetton_wallet_of(api, genesis.usdt_master.to_str(), raw(wallet.address))
    ctx = TonRailContext(
        db=db,
        settings=settings,
        payments=PaymentService(db, settings),
        api=api,
        wallet=wallet,
        sign=lambda data: key.sign(data).signature,
        jetton_wallet=jetton,
        worker_id=f"bench-{name}",
    )
    async with db.transaction() as session:
        _, secret = await create_key(
            session, "acct_bench_fees", name, ("payments:read", "payments:write")
        )
    app = create_app(settings, db)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
    return Run(net_url, genesis, db, settings, ctx, http, {"Authorization": f"Bearer {secret}"})


Strategy = Callable[[Run, float], Awaitable[None]]


async def assemble_all(ctx: TonRailContext) -> None:
    """Assemble requests until the queue (as this context may take it) is empty."""
    while True:
        state, _ = await ctx.api.account_state(ctx.wallet.address.to_str())
        if not await assemble(ctx, deploy=state != "active"):
            return


async def naive(run: Run, elapsed: float) -> None:
    one = run.ctx.settings.model_copy(update={"ton_batch_max": 1})
    await assemble_all(replace(run.ctx, settings=one, fee_optimizer=False))


def fixed() -> Strategy:
    last = {"at": 0.0}

    async def every_30s(run: Run, elapsed: float) -> None:
        if elapsed - last["at"] >= FIXED_EVERY:
            last["at"] = elapsed
            await assemble_all(replace(run.ctx, fee_optimizer=False))

    return every_30s


def optimizer(sampler: Sampler) -> Strategy:
    last = {"sampled": -1e9}

    async def sample_and_assemble(run: Run, elapsed: float) -> None:
        if elapsed - last["sampled"] >= 5.0:
            last["sampled"] = elapsed
            await sampler.sample()
        await assemble_all(run.ctx)  # the optimizer times every payout inside assemble

    return sample_and_assemble


def payees_for(name: str) -> list[str]:
    """Fresh payees per strategy, so each one pays the same first-transfer (deploy) costs."""
    rng = random.Random(f"{SEED}-{name}")
    return [
        Address((0, rng.randbytes(32))).to_str(is_user_friendly=True, is_bounceable=False)
        for _ in range(10)
    ]


async def post(run: Run, payees: list[str], due: list[Arrival]) -> list[str]:
    """Create the payouts that arrived: one POST each, or /v1/payouts/batch when several
    arrive in the same round (a burst)."""
    items = [
        {
            "amount": a.amount,
            "asset": a.asset,
            "destination": payees[a.payee],
            "priority": a.priority,
            "target_confirmation_seconds": TARGETS[a.priority],
        }
        for a in due
    ]
    if len(items) == 1:
        r = await run.http.post("/v1/payouts", json=items[0], headers=run.auth)
        r.raise_for_status()
        return [r.json()["id"]]
    ids = []
    for i in range(0, len(items), POST_BATCH):
        r = await run.http.post(
            "/v1/payouts/batch", json={"payouts": items[i : i + POST_BATCH]}, headers=run.auth
        )
        r.raise_for_status()
        ids += [p["id"] for p in r.json()["data"]]
    return ids


async def replay(
    run: Run, name: str, arrivals: list[Arrival], strategy: Strategy, *, congestion: bool = True
) -> Result:
    payees = payees_for(name)
    start = time.monotonic()
    ids: list[str] = []
    pending = list(arrivals)
    congested = False
    while True:
        elapsed = time.monotonic() - start
        episode = congestion and 0.35 * SECONDS <= elapsed < 0.55 * SECONDS
        if episode != congested:
            congested = episode
            off = {k: 0 for k in CONGESTION}
            await set_faults(run.net_url, CONGESTION if episode else off)
        due = []
        while pending and pending[0].at <= elapsed:
            due.append(pending.pop(0))
        if due:
            ids += await post(run, payees, due)
        try:
            await strategy(run, elapsed)
            await send_due(run.ctx)
            await track_open(run.ctx)
        except Exception as exc:  # a failed round is retried on the next one, as the worker does
            print(f"{name}: round failed: {exc!r}")
        if not pending and await all_final(run, ids):
            break
        if elapsed > arrivals[-1].at + DRAIN_LIMIT:
            break
        await asyncio.sleep(ROUND)
    return await measure(run, name, ids)


async def all_final(run: Run, ids: list[str]) -> bool:
    async with run.db.transaction() as session:
        rows = (await session.execute(select(Payment.status).where(Payment.id.in_(ids)))).scalars()
        return all(s in ("succeeded", "failed") for s in rows)


async def measure(run: Run, name: str, ids: list[str]) -> Result:
    """Times and fees as the chain and the books have them (`ton_transfers.fee`: the
    payout's share of its request's fees plus its own trace's fees)."""
    result = Result(name, times={p: [] for p in TARGETS})
    async with run.db.transaction() as session:
        payments = (
            (await session.execute(select(Payment).where(Payment.id.in_(ids)))).scalars().all()
        )
        rows = (
            await session.execute(
                select(
                    TonTransfer.payment_id,
                    TonTransfer.fee,
                    TonTransfer.request_id,
                    TonTransfer.position,
                    TonTransfer.destination,
                    TonRequest.common_fee,
                    TonRequest.created_at,
                )
                .join(TonRequest, TonRequest.id == TonTransfer.request_id)
                .where(TonTransfer.payment_id.in_(ids), TonTransfer.status == "confirmed")
            )
        ).all()
    fees = {r.payment_id: int(r.fee or 0) for r in rows}
    sizes: dict[str, int] = {}
    for r in rows:
        sizes[r.request_id] = sizes.get(r.request_id, 0) + 1
    result.requests = len(sizes)
    common = {r.request_id: int(r.common_fee or 0) for r in rows}
    result.common = sum(common.values())
    result.shared = [(fee, sizes[rid]) for rid, fee in common.items()]
    result.payouts = len(ids)
    asset_of = {p.id: p.asset for p in payments}
    seen: set[str] = set()
    for r in sorted(rows, key=lambda r: (r.created_at, r.position)):
        own = int(r.fee or 0) - int(r.common_fee or 0) // sizes[r.request_id]
        if asset_of[r.payment_id] == "TON":
            result.own["TON"].append(own)
        else:
            first = r.destination not in seen  # its jetton wallet is deployed by this one
            seen.add(r.destination)
            result.own["USDT first" if first else "USDT again"].append(own)
    for p in payments:
        if p.status != "succeeded" or p.completed_at is None:
            result.failed += p.status == "failed"
            result.unfinished += p.status != "failed"
            result.missed += 1
            continue
        seconds = (p.completed_at - p.created_at).total_seconds()
        result.times[p.priority].append(seconds)
        result.missed += seconds > p.target_confirmation_seconds
        result.fees.append(fees.get(p.id, 0))
    return result


def pct(values: list[float], q: float) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]:.1f}"


def row(r: Result, naive_total: int) -> str:
    n = len(r.fees) or 1
    cells = [
        r.name,
        str(r.requests),
        f"{r.payouts / max(r.requests, 1):.1f}",
        f"{r.total / 1e9:.4f}",
        f"{100 * r.total / naive_total:.0f} %" if naive_total else "-",
        f"{r.total / n / 1e9:.5f}",
        *(f"{pct(r.times[p], 50)} / {pct(r.times[p], 95)}" for p in TARGETS),
        f"{100 * r.missed / max(r.payouts, 1):.1f} %"
        + (f" ({r.failed} failed, {r.unfinished} unfinished)" if r.failed or r.unfinished else ""),
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = [
    "| run | requests | payouts/request | total fees (TON) | vs naive | fee/payout (TON) "
    "| urgent p50/p95 s | normal p50/p95 s | low p50/p95 s | missed target |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]


def floor_of(results: list[Result]) -> tuple[int, int, int, int] | None:
    """(a, b, own, floor) in nanoton: a request's shared fee is a + b x its payouts, fitted
    over every request of the main workload's three runs (sizes 1 to ~30); the floor is what
    the optimizer's payouts spent beyond their requests' shared fees, plus the shared fee of
    one request carrying all of them (a + b x n): no timing can pay less."""
    fit = shared_fee_fit([x for r in results for x in r.shared])
    if fit is None:
        return None
    a, b = fit
    opt = results[2]
    own = sum(sum(v) for v in opt.own.values())
    return a, b, own, own + a + b * opt.payouts


def medians(r: Result) -> dict[str, float | None]:
    return {p: statistics.median(v) if v else None for p, v in r.times.items()}


def report(results: list[Result], extra: list[Result], seconds: float) -> str:
    naive_total = results[0].total or 1
    lines = [
        "## Fee optimizer (`make bench-fees`)",
        "",
        f"Main workload: {PAYOUTS} payouts (seeded {SEED}: 20 % urgent, 50 % normal, 30 % "
        f"low; 70 % TON, 30 % USDT; ten payees) over {SECONDS:.0f} s on the local network "
        f"(blocks every {BLOCK_MS} ms), congestion episode {CONGESTION} from "
        f"{0.35 * SECONDS:.0f} s to {0.55 * SECONDS:.0f} s; burst: {BURST} payouts of the "
        f"same mix posted at once; low traffic: {TRICKLE} payouts, one every "
        f"{TRICKLE_EVERY:.0f} s, priorities in turn. Targets: urgent 15 s, normal 60 s, low "
        f"{LOW_TARGET} s (scaled from 1 h). Everything on the wall clock (nothing simulated): "
        f"the fees are exact chain fees and do not depend on the machine's load, the times "
        f"do. Run took {seconds:.0f} s.",
        "",
        *HEADER,
        *(row(r, naive_total) for r in results),
        *(row(r, 0) for r in extra),
    ]
    opt, fix = results[2], results[1]
    fl = floor_of(results)
    met = 1 - opt.missed / max(opt.payouts, 1)
    lines.append("")
    if fl is not None:
        a, b, own, floor = fl
        ratio = opt.total / floor
        lines += [
            f"Floor: a request's shared fee is a + b x its payouts with a = {a / 1e9:.5f} TON "
            f"and b = {b / 1e9:.5f} TON (fitted over the {sum(r.requests for r in results)} "
            f"requests above); the optimizer's payouts spent {own / 1e9:.4f} TON beyond their "
            f"requests' shared fees, so the floor — that plus one request carrying all "
            f"{opt.payouts} (a + {opt.payouts} b) — is **{floor / 1e9:.4f} TON**. Fixed "
            f"batching paid {fix.total / floor:.3f} x the floor, the optimizer "
            f"{ratio:.3f} x.",
            "",
            f"Goal (main): optimizer ≤ {GOAL_FLOOR} x the floor — {ratio:.3f} x, "
            f"{'met' if ratio <= GOAL_FLOOR else 'NOT met'}; {GOAL_MET:.0%} on target — "
            f"{met:.1%}, {'met' if met >= GOAL_MET else 'NOT met'}.",
        ]
    else:
        lines.append("Floor: not measurable (no two request sizes in the main runs).")
    for r in extra:
        if r.name.startswith("burst"):
            per = r.payouts / max(r.requests, 1)
            lines.append(
                f"Goal (burst): ≥ {GOAL_BURST_PER_REQUEST} payouts a request on average — "
                f"{per:.1f}, {'met' if per >= GOAL_BURST_PER_REQUEST else 'NOT met'}."
            )
        else:
            med = medians(r)
            ok = all(m is not None and m <= GOAL_TRICKLE_P50_S for m in med.values())
            shown = ", ".join(
                f"{p} {m:.2f} s" if m is not None else f"{p} n/a" for p, m in med.items()
            )
            lines.append(
                f"Goal (low traffic): median confirmation ≤ {GOAL_TRICKLE_P50_S:.0f} s for "
                f"every priority — {shown}, {'met' if ok else 'NOT met'}."
            )
    lines += [
        "",
        "Where the fees go (TON, read from the chain): a request's shared fees (its external "
        "and internal_transfer transactions), and what each payout spends beyond its share "
        "(its out message's forward fee; for USDT the jetton wallets' transactions, the "
        "storage the payee's new jetton wallet keeps, the notification) — the part no "
        "batching can save.",
        "",
        "| run | requests | shared by requests | per TON payout (n) | per USDT payout, "
        "first to a payee (n) | per USDT payout, again (n) | own parts, all payouts |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def avg(values: list[int]) -> str:
        return f"{sum(values) / len(values) / 1e9:.5f} ({len(values)})" if values else "-"

    for r in [*results, *extra]:
        own = sum(sum(v) for v in r.own.values())
        lines.append(
            f"| {r.name} | {r.requests} | {r.common / 1e9:.4f} | {avg(r.own['TON'])} "
            f"| {avg(r.own['USDT first'])} | {avg(r.own['USDT again'])} | {own / 1e9:.4f} |"
        )
    return "\n".join(lines) + "\n"


async def bench() -> str:
    folder = Path(tempfile.mkdtemp(prefix="bench-fees-"))
    chain = Chain.open(None, block_ms=BLOCK_MS)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(localnet_app(chain), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
    net_url = f"http://127.0.0.1:{port}"
    genesis = Genesis()
    started = time.monotonic()
    results: list[Result] = []
    extra: list[Result] = []
    run = await open_run(net_url, genesis, folder, "bench")

    async def with_optimizer(name: str, arrivals: list[Arrival], congestion: bool) -> Result:
        tally = ApiTally()
        client = ToncenterClient(
            [f"{net_url}/api/v2"],
            [f"{net_url}/api/v3"],
            max_attempts=2,
            on_error=tally.on_error,
            on_call=tally.on_call,
        )
        sampler = Sampler(
            run.db, run.settings, client, tally, run.ctx.wallet, run.ctx.jetton_wallet
        )
        try:
            res = await replay(run, name, arrivals, optimizer(sampler), congestion=congestion)
            return res
        finally:
            await sampler.aclose()
            await set_faults(net_url, {k: 0 for k in CONGESTION})

    try:
        if "main" in ONLY:
            arrivals = workload()
            results.append(await replay(run, "naive", arrivals, naive))
            await set_faults(net_url, {k: 0 for k in CONGESTION})
            results.append(await replay(run, "fixed 30 s", arrivals, fixed()))
            await set_faults(net_url, {k: 0 for k in CONGESTION})
            results.append(await with_optimizer("optimizer", arrivals, True))
        if "low" in ONLY:
            # after a busy spell, once its arrivals have left the optimizer's window
            await asyncio.sleep(run.settings.fees_arrival_window_seconds + 1)
            name = f"low traffic, 1 per {TRICKLE_EVERY:.0f} s: optimizer"
            extra.append(await with_optimizer(name, trickle(), False))
        if "burst" in ONLY:
            extra.append(await with_optimizer(f"burst of {BURST}: optimizer", burst(), False))
    finally:
        await run.http.aclose()
        await run.db.dispose()
        server.should_exit = True
        await task
        chain.close()
        shutil.rmtree(folder, ignore_errors=True)
    if len(results) < 3:  # a partial run (BENCH_FEES_ONLY): no side-by-side, no floor
        return "\n".join([*HEADER, *(row(r, 0) for r in [*results, *extra])]) + "\n"
    return report(results, extra, time.monotonic() - started)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> str:
    """Run the workloads; the markdown section for docs/BENCHMARKS.md."""
    return asyncio.run(bench())


if __name__ == "__main__":
    print(main())
