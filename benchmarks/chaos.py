"""Chaos run: several tonrail processes on PostgreSQL, killed at random while they pay.

Separate processes, all on 127.0.0.1 (docs/CHAOS.md):

- the local TON network (`tonrail.localnet.server.serve`, real TVM, blocks every 400 ms);
- 2 x `tonrail serve` and 3 x `tonrail worker` (every loop) on a scratch PostgreSQL database:
  with `--restart-postgres`, on a PostgreSQL cluster of the run's own (benchmarks/private_pg.py,
  made with the machine's initdb in the run's folder, on a free port), else on
  TONRAIL_TEST_POSTGRES_URL's server; dropped after a passing run;
- this process: the load (benchmarks/chaos_load.py: payouts in TON and USDT, single and in
  batches, some above the approval threshold approved by two approvers at the same moment;
  invoices paid on chain by a customer's wallet) and the chaos driver, which SIGKILLs a
  random tonrail process every few seconds and restarts it, injects toncenter faults (5xx,
  429, dropped externals, stalled blocks) on the local network, and with
  `--restart-postgres` restarts the run's own PostgreSQL once, halfway, crash-like
  (`pg_ctl stop -m immediate`, then start). The machine's shared server is never restarted.

Then chaos stops, every process is up, and the run waits (bounded) until the system is at
rest; the workers are stopped with SIGTERM and benchmarks/chaos_checks.py judges against the
chain. Exit status 0 only if every check passed; on failure the logs stay in the folder
printed.

    python -m benchmarks.chaos --seconds 300 --restart-postgres     # make chaos
    python -m benchmarks.chaos --seconds 90 --restart-postgres      # the pytest version
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from benchmarks.chaos_checks import quiet, verify
from benchmarks.chaos_load import USDT, Load, generate, pay_invoices
from benchmarks.cluster import Cluster, Role, stack
from benchmarks.private_pg import PrivatePostgres

APIS = 2
WORKERS = 3
FAULTS = (
    ("5xx", {"http_5xx_rate": 0.3}),
    ("429", {"http_429_rate": 0.3}),
    ("dropped externals", {"drop_external_rate": 0.5}),
    ("stalled blocks", {"stall_blocks": True}),
)
HEALTHY = {"http_5xx_rate": 0.0, "http_429_rate": 0.0, "drop_external_rate": 0.0}


@dataclass
class Chaos:
    faults: dict[str, int] = field(default_factory=dict)
    postgres_restarts: int = 0
    postgres_restart_s: float = 0.0


async def set_faults(net: str, changes: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
        s.post(f"{net}/localnet/faults", json=changes) as r,
    ):
        r.raise_for_status()


async def drive(
    cluster: Cluster,
    chaos: Chaos,
    net: str,
    rng: random.Random,
    until: float,
    pg: PrivatePostgres | None,
) -> None:
    """Kill a random tonrail process every 3-7 s (restarted 0.5-2 s later); a fault episode
    of 3-8 s every 5-12 s; the run's own PostgreSQL `pg` restarted once halfway (immediate
    stop: no checkpoint, recovery from the WAL, like a crash)."""
    next_kill = time.monotonic() + rng.uniform(3, 7)
    next_fault = time.monotonic() + rng.uniform(5, 12)
    halfway = time.monotonic() + (until - time.monotonic()) / 2
    restarts: list[tuple[float, Role]] = []
    fault_ends = 0.0
    while time.monotonic() < until:
        now = time.monotonic()
        if now >= next_kill:
            role = rng.choice(list(cluster.roles.values()))
            cluster.kill(role)
            restarts.append((now + rng.uniform(0.5, 2.0), role))
            next_kill = now + rng.uniform(3, 7)
        pending = {id(role) for _, role in restarts}
        for role in cluster.roles.values():
            if id(role) not in pending and role.proc is not None and role.proc.poll() is not None:
                cluster.crashes += 1
                cluster.note(f"{role.name} exited by itself (status {role.proc.returncode})")
                cluster.start(role)
                cluster.restarts += 1
        for due, role in list(restarts):
            if now >= due:
                restarts.remove((due, role))
                cluster.start(role)
                cluster.restarts += 1
                cluster.note(f"restarted {role.name}")
        if fault_ends and now >= fault_ends:
            await set_faults(net, {**HEALTHY, "stall_blocks": False})
            cluster.note("faults off")
            fault_ends = 0.0
        if not fault_ends and now >= next_fault:
            name, change = rng.choice(FAULTS)
            await set_faults(net, change)
            chaos.faults[name] = chaos.faults.get(name, 0) + 1
            cluster.note(f"fault on: {name} {json.dumps(change)}")
            fault_ends = now + rng.uniform(3, 8)
            next_fault = fault_ends + rng.uniform(5, 12)
        if pg is not None and not chaos.postgres_restarts and now >= halfway:
            cluster.note(f"PostgreSQL (port {pg.port}): pg_ctl stop -m immediate, then start")
            took = await asyncio.to_thread(pg.restart)
            chaos.postgres_restarts += 1
            chaos.postgres_restart_s = round(took, 1)
            cluster.note(f"PostgreSQL restarted in {took:.1f} s (port {pg.port})")
        await asyncio.sleep(0.2)
    await set_faults(net, {**HEALTHY, "stall_blocks": False})
    cluster.note("chaos over: faults off")


async def run(seconds: float, quiesce: float, pg_restart: bool, seed: int) -> int:
    rng = random.Random(seed)
    extra = {
        "APPROVAL_THRESHOLD_USDT": str(100 * USDT),
        "WORKER_LEASE_SECONDS": "10",
        "FEES_WINDOW_URGENT_MS": "500",
        "FEES_WINDOW_NORMAL_MS": "1000",
        "FEES_WINDOW_LOW_MS": "2000",
    }
    chaos = Chaos()
    ok = False
    async with stack("chaos", APIS, WORKERS, rng, extra, own_postgres=pg_restart) as up:
        cluster, net, db, chain = up.cluster, up.net, up.db, up.chain
        load = Load(up.apis, up.secret, up.approvers, rng)
        stop = asyncio.Event()
        print(f"chaos: {seconds:.0f} s, logs in {up.folder}", file=sys.stderr, flush=True)
        cluster.note(f"chaos begins for {seconds:.0f} s")
        tasks = [
            asyncio.create_task(generate(load, stop)),
            asyncio.create_task(
                pay_invoices(load, f"{net}/api/v2", up.usdt_master, up.payer_key, chain.hot, stop)
            ),
        ]
        await drive(cluster, chaos, net, rng, time.monotonic() + seconds, up.postgres)
        stop.set()
        cluster.ensure_up()
        await asyncio.gather(*tasks)
        cluster.ensure_up()
        cluster.note("load over; waiting for rest")
        started = time.monotonic()
        moving: str | None = "not checked"
        while time.monotonic() - started < quiesce:
            moving = await quiet(db, load, chain)
            if moving is None:
                break
            await asyncio.sleep(2)
        rest_s = time.monotonic() - started
        cluster.note(f"at rest after {rest_s:.0f} s" if moving is None else f"still: {moving}")
        graceful = {
            r.proc.pid
            for r in cluster.roles.values()
            if r.kind == "worker" and r.proc is not None and r.proc.poll() is None
        }
        cluster.stop("worker")
        cluster.stop("api")
        verdict = await verify(db, load, chain, graceful)
        if moving is not None:
            verdict.fail(f"not at rest after {quiesce:.0f} s: {moving}")
        verdict.figures.update(
            seconds=seconds,
            kills=cluster.kills,
            crashes=cluster.crashes,
            restarts=cluster.restarts,
            faults=chaos.faults,
            postgres_restarts=chaos.postgres_restarts,
            rest_after_s=round(rest_s, 1),
        )
        if up.postgres is not None:
            verdict.figures["postgres_restart_s"] = chaos.postgres_restart_s
        print(json.dumps(verdict.figures, indent=1, default=str))
        for failure in verdict.failures[:50]:
            print(f"FAIL {failure}", file=sys.stderr)
        if len(verdict.failures) > 50:
            print(f"... {len(verdict.failures) - 50} more failures", file=sys.stderr)
        ok = not verdict.failures
        (up.folder / "verdict.json").write_text(
            json.dumps({"figures": verdict.figures, "failures": verdict.failures}, default=str)
        )
        up.keep = not ok
        folder, db_name = up.folder, up.db_name
        where = f"private cluster in {up.postgres.folder}" if up.postgres else "shared server"
    if ok:
        print("chaos: every check passed", file=sys.stderr)
        return 0
    print(f"chaos: FAILED; logs kept in {folder} (database {db_name}, {where})", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    env = os.environ.get
    parser.add_argument("--seconds", type=float, default=float(env("CHAOS_SECONDS", "300")))
    parser.add_argument(
        "--quiesce",
        type=float,
        default=float(env("CHAOS_QUIESCE_SECONDS", "600")),
        help="longest wait for rest after the chaos (a bound, not a goal)",
    )
    parser.add_argument(
        "--restart-postgres",
        action="store_true",
        help="run on a PostgreSQL cluster of the run's own and crash-restart it once, halfway",
    )
    parser.add_argument("--seed", type=int, default=int(env("CHAOS_SEED", "0")) or None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    print(f"chaos: seed {seed}", file=sys.stderr, flush=True)
    return asyncio.run(run(args.seconds, args.quiesce, args.restart_postgres, seed))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
