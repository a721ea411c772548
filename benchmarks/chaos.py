"""Chaos run: several tonrail processes on PostgreSQL, killed at random while they pay.

Separate processes, all on 127.0.0.1 (docs/CHAOS.md):

- the local TON network (`tonrail.localnet.server.serve`, real TVM, blocks every 400 ms);
- 2 x `tonrail serve` and 3 x `tonrail worker` (every loop) on a scratch PostgreSQL database
  created on TONRAIL_TEST_POSTGRES_URL's server (and dropped after a passing run);
- this process: the load (benchmarks/chaos_load.py: payouts in TON and USDT, single and in
  batches, some above the approval threshold approved by two approvers at the same moment;
  invoices paid on chain by a customer's wallet) and the chaos driver, which SIGKILLs a
  random tonrail process every few seconds and restarts it, injects toncenter faults (5xx,
  429, dropped externals, stalled blocks) on the local network, and with
  `--restart-postgres` restarts PostgreSQL once (`pg_ctlcluster`).

Then chaos stops, every process is up, and the run waits (bounded) until the system is at
rest; the workers are stopped with SIGTERM and benchmarks/chaos_checks.py judges against the
chain. Exit status 0 only if every check passed; on failure the logs stay in the folder
printed.

    python -m benchmarks.chaos --seconds 300 --restart-postgres     # make chaos
    python -m benchmarks.chaos --seconds 90                         # the pytest version
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.chaos_checks import quiet, verify
from benchmarks.chaos_load import USDT, Load, generate, pay_invoices
from benchmarks.cluster import Cluster, Role, stack

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
    postgres_note: str = ""


async def set_faults(net: str, changes: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
        s.post(f"{net}/localnet/faults", json=changes) as r,
    ):
        r.raise_for_status()


def restart_postgres() -> str:
    """Restart the local cluster once; a note instead when pg_ctlcluster is not there."""
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return "PostgreSQL not restarted: pg_ctlcluster is not available here"
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir() if p.name[:1].isdigit())
    if not versions:
        return "PostgreSQL not restarted: no cluster under /etc/postgresql"
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return f"PostgreSQL not restarted: {' '.join(cmd)} said {done.stderr.strip()[:200]}"
    return ""


async def drive(
    cluster: Cluster, chaos: Chaos, net: str, rng: random.Random, until: float, pg: bool
) -> None:
    """Kill a random tonrail process every 3-7 s (restarted 0.5-2 s later); a fault episode
    of 3-8 s every 5-12 s; PostgreSQL restarted once halfway when `pg`."""
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
        if pg and not chaos.postgres_restarts and not chaos.postgres_note and now >= halfway:
            cluster.note("restarting PostgreSQL")
            note = await asyncio.to_thread(restart_postgres)
            if note:
                chaos.postgres_note = note
                print(note, file=sys.stderr, flush=True)
            else:
                chaos.postgres_restarts += 1
            cluster.note(note or "PostgreSQL restarted")
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
    async with stack("chaos", APIS, WORKERS, rng, extra) as up:
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
        await drive(cluster, chaos, net, rng, time.monotonic() + seconds, pg_restart)
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
        if chaos.postgres_note:
            verdict.figures["postgres_note"] = chaos.postgres_note
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
    if ok:
        print("chaos: every check passed", file=sys.stderr)
        return 0
    print(f"chaos: FAILED; logs kept in {folder} (database {db_name})", file=sys.stderr)
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
    parser.add_argument("--restart-postgres", action="store_true")
    parser.add_argument("--seed", type=int, default=int(env("CHAOS_SEED", "0")) or None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    print(f"chaos: seed {seed}", file=sys.stderr, flush=True)
    return asyncio.run(run(args.seconds, args.quiesce, args.restart_postgres, seed))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
