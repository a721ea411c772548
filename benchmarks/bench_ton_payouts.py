"""TON payouts benchmark: N payouts (mixed TON/USDT) from the HTTP API to confirmed on chain.

Four processes, all on 127.0.0.1:

- the local TON network (`tonrail.localnet.server.serve`, real TVM, a fresh state file,
  blocks every BENCH_TON_BLOCK_MS, default 400 — the mainnet cadence);
- the API (uvicorn, one process, the real `tonrail.app.create_app` on a fresh SQLite file,
  or with --backend postgresql a scratch database created and dropped on the server of
  TONRAIL_TEST_POSTGRES_URL; --backend both, the default when that is set: the batched run
  on each);
- the worker (`tonrail worker --only ton_payouts`, the real payout loop: assemble, sign,
  send, track; one process, default settings except TON_BATCH_MAX);
- this process, the load: it POSTs the payouts (aiohttp, a few connections) through
  `POST /v1/payouts/batch`, BENCH_TON_POST_BATCH (250) a request, each item with its own
  idempotency key (`--post-batch 1`: one `POST /v1/payouts` each), and polls the database
  until every payout is final.

The worker runs before the first POST, so payouts are sent while others are still being
created, as in production. A run is bounded in time; an unfinished run is reported as such.
Then the database tells the story: payout statuses, highload requests, the `fee` of every
`ton_transfers` row, and `check_books`. The same workload runs twice: batched (TON_BATCH_MAX
254, the default) and unbatched (TON_BATCH_MAX=1: one payout per highload request).

    python -m benchmarks.bench_ton_payouts                      # 10,000 batched + 1,000 unbatched
    python -m benchmarks.bench_ton_payouts --payouts 1000 --unbatched 200
    python -m benchmarks.bench_ton_payouts --profile var/prof   # py-spy each process

Environment knobs (used by `make bench`): BENCH_TON_PAYOUTS, BENCH_TON_UNBATCHED,
BENCH_TON_BLOCK_MS, BENCH_TON_COLLATE_MS (how long a block may take messages; default 0, no
limit), BENCH_TON_TIMEOUT (seconds per run), BENCH_TON_PROFILE (a folder),
BENCH_TON_BACKEND (sqlite, postgresql or both), BENCH_TON_POST_BATCH; for a diagnosis,
BENCH_TON_LOG_LEVEL (the processes' LOG_LEVEL, default WARNING) and BENCH_TON_KEEP_LOGS (a
folder the processes' logs are copied to, a subfolder per run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
_COLLATE = os.environ.get("BENCH_TON_COLLATE_MS")
COLLATE_MS = int(_COLLATE) if _COLLATE else 0  # 0: no limit, whole traces in a block
TONRAIL = str(Path(sys.executable).parent / "tonrail")
TON = 10**9
USDT = 10**6
ACCOUNT = "acct_bench_ton"
PASSPHRASE = "bench-ton-payouts-passphrase"
SEED = 20261127
TON_SHARE = 0.7
DESTINATIONS = 2_000
CONNECTIONS = 8
GOAL_SECONDS = 120.0
GOAL_PAYOUTS = 10_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
FINAL = ("succeeded", "failed", "cancelled", "rejected")


# ----------------------------------------------------------------------------- workload
def workload(n: int, seed: int = SEED) -> list[dict[str, str]]:
    """A fixed, seeded mix: ~70 % TON / 30 % USDT, varied amounts, 2,000 fresh destinations
    (never deployed, so addressed in non-bounceable form)."""
    from ton_core import Address

    rng = random.Random(seed)
    dests = [
        Address((0, rng.randbytes(32))).to_str(is_user_friendly=True, is_bounceable=False)
        for _ in range(DESTINATIONS)
    ]
    out = []
    for _ in range(n):
        if rng.random() < TON_SHARE:
            amount = f"{rng.randint(1, 2_000) / 1_000:.3f}"  # 0.001 .. 2 TON
            asset = "TON"
        else:
            amount = f"{rng.randint(1, 50_000) / 100:.2f}"  # 0.01 .. 500 USDT
            asset = "USDT"
        out.append({"amount": amount, "asset": asset, "destination": rng.choice(dests)})
    return out


# ----------------------------------------------------------------------------- processes
def server_app() -> Any:
    """uvicorn factory of the API process: the real app, configured from the environment."""
    from tonrail.app import create_app
    from tonrail.settings import Settings

    return create_app(Settings(_env_file=None))  # type: ignore[call-arg]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(fields[11]) + int(fields[12])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@dataclass
class Procs:
    """The processes of one run, by role; stopped (process groups) on close."""

    scratch: Path
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    profilers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, role: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.scratch / f"{role}.log").open("wb")
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.started[role] = proc
        return proc

    def log_tail(self, role: str, lines: int = 5) -> str:
        path = self.scratch / f"{role}.log"
        text = path.read_text(errors="replace").strip() if path.exists() else ""
        return " | ".join(text.splitlines()[-lines:])

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each role's process, and by this process."""
        out = {role: _ticks(p.pid) / CLK_TCK for role, p in self.started.items()}
        out["load client"] = time.process_time()
        # Everything else on the machine (colleagues' test runs share the cores).
        busy = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:4]
        out["other processes"] = sum(int(v) for v in busy) / CLK_TCK - sum(out.values())
        return out

    def profile(self, folder: Path, label: str, roles: list[str]) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        folder.mkdir(parents=True, exist_ok=True)
        for role in roles:
            proc = self.started[role]
            out = folder / f"{label}-{role}.txt"
            cmd = [spy, "record", "--pid", str(proc.pid), "--rate", "50", "--format", "raw"]
            self.profilers.append(
                subprocess.Popen(
                    [*cmd, "--output", str(out)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def close(self) -> None:
        for spy in self.profilers:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in self.profilers:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
        for proc in reversed(list(self.started.values())):
            _stop(proc)


def _keep_logs(scratch: Path, label: str) -> None:
    """Copy the run's process logs to BENCH_TON_KEEP_LOGS/<label>/ when that is set."""
    keep = os.environ.get("BENCH_TON_KEEP_LOGS")
    if not keep:
        return
    dest = Path(keep) / label.replace(" ", "_").replace(",", "")
    dest.mkdir(parents=True, exist_ok=True)
    for f in scratch.glob("*.log"):
        shutil.copy(f, dest / f.name)


def _base_env(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TON", "DATABASE", "CRASH"))}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    env.update(
        DATA_DIR=str(scratch),
        ENVIRONMENT="production",
        LOG_LEVEL=os.environ.get("BENCH_TON_LOG_LEVEL", "WARNING"),
        BOOTSTRAP_DEMO="false",
        JWT_SECRET=secrets.token_urlsafe(32),  # production refuses the development one
    )
    return env


async def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, within: float) -> None:
    import aiohttp

    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with status {proc.returncode}")
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {within:.0f} s")


# ----------------------------------------------------------------------------- database
PG_DB = "tonrail_bench_ton"
DB_NAMES = {"sqlite": "SQLite", "postgresql": f"PostgreSQL, scratch database `{PG_DB}`"}
DB_SHORT = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _postgres_urls() -> tuple[str, str]:
    """(admin URL, URL of the scratch database PG_DB) on TONRAIL_TEST_POSTGRES_URL's server."""
    from sqlalchemy.engine import make_url

    raw = os.environ.get("TONRAIL_TEST_POSTGRES_URL", "").strip()
    if not raw:
        raise RuntimeError("the postgresql backend needs TONRAIL_TEST_POSTGRES_URL")
    url = make_url(raw).set(drivername="postgresql+asyncpg")
    admin = url.set(database="postgres").render_as_string(hide_password=False)
    return admin, url.set(database=PG_DB).render_as_string(hide_password=False)


async def _pg_admin(admin_url: str, *statements: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    conn = await asyncpg.connect(
        user=url.username,
        password=url.password,
        host=url.host,
        port=url.port or 5432,
        database=url.database,
    )
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _prepare_db(url: str) -> str:
    from tonrail.db import Database
    from tonrail.migrate import upgrade_async
    from tonrail.security.api_keys import create_key

    await upgrade_async(url)
    db = Database(url)
    try:
        async with db.transaction() as session:
            _, secret = await create_key(
                session, ACCOUNT, "bench", ("payments:read", "payments:write")
            )
    finally:
        await db.dispose()
    return secret


async def _statuses(db: Any) -> dict[str, int]:
    """Payout counts by status. On SQLite through a read-only connection of its own: every
    transaction of `Database` begins IMMEDIATE (takes the write lock), and polling with it
    would compete with the API and the worker for that lock."""
    from sqlalchemy import func, select

    from tonrail.payments.models import Payment

    if db.dialect == "sqlite":
        path = db.url.split(":///", 1)[1]

        def read() -> dict[str, int]:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
                rows = conn.execute(
                    "SELECT status, count(*) FROM payments WHERE direction = 'out' GROUP BY status"
                ).fetchall()
            return {str(s): int(c) for s, c in rows}

        return await asyncio.to_thread(read)
    async with db.transaction() as session:
        rows = await session.execute(
            select(Payment.status, func.count())
            .where(Payment.direction == "out")
            .group_by(Payment.status)
        )
        return {str(s): int(c) for s, c in rows.all()}


async def _wait_worker_up(
    db: Any, proc: subprocess.Popen[bytes], within: float, count: int = 1
) -> None:
    """The workers are up once `count` ton_payouts loops have written a heartbeat."""
    from sqlalchemy import func, select

    from tonrail.kit.models import WorkerHeartbeat

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with status {proc.returncode}")
        async with db.transaction() as session:
            beats = (
                await session.execute(
                    select(func.count())
                    .select_from(WorkerHeartbeat)
                    .where(WorkerHeartbeat.loop == "ton_payouts")
                )
            ).scalar_one()
        if beats >= count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"worker did not start within {within:.0f} s")


# ----------------------------------------------------------------------------- one run
@dataclass
class Run:
    label: str
    batch_max: int
    payouts: int
    ton: int = 0
    usdt: int = 0
    create_s: float = 0.0  # first POST sent .. last POST answered
    total_s: float = 0.0  # first POST sent .. last payout final (its updated_at)
    statuses: dict[str, int] = field(default_factory=dict)
    post_errors: int = 0
    requests: int = 0
    request_sizes: list[int] = field(default_factory=list)
    sends: int = 0  # external messages sent to the network: every request once, plus copies
    fees_ton: list[int] = field(default_factory=list)  # nanoton, per TON payout
    fees_usdt: list[int] = field(default_factory=list)  # nanoton, per USDT payout
    books_ok: bool = False
    books_note: str = ""
    finished: bool = False
    timeout_s: float = 0.0
    cpu_create: dict[str, float] = field(default_factory=dict)
    cpu_confirm: dict[str, float] = field(default_factory=dict)
    hot_spent: int = 0  # nanoton that left the hot wallet (TON principal + fees)
    principal_ton: int = 0
    error: str | None = None
    phased: bool = False  # the worker started only after the last POST
    post_batch: int = 1  # payouts per POST: 1 = POST /v1/payouts, more = /v1/payouts/batch
    workers: int = 1  # worker processes (`tonrail worker --only ton_payouts`) sharing the work
    doubled: int = 0  # payouts with more than one confirmed transfer (must be 0)
    ids: dict[int, str] = field(default_factory=dict)  # workload index -> payment id
    fee_of: dict[str, tuple[str, int]] = field(default_factory=dict)  # payment -> asset, fee
    # The network's own wallet transfers/s, measured on a fresh network right before this run
    capacity: float | None = None

    @property
    def fees(self) -> list[int]:
        return self.fees_ton + self.fees_usdt

    @property
    def succeeded(self) -> int:
        return self.statuses.get("succeeded", 0)

    @property
    def rate(self) -> float:
        return self.succeeded / self.total_s if self.total_s else 0.0


async def _post_all(
    base: str, secret: str, items: list[dict[str, str]], run: Run
) -> tuple[datetime, float]:
    """POST every payout with CONNECTIONS in flight, one a request (`POST /v1/payouts`) or
    `run.post_batch` a request (`POST /v1/payouts/batch`, each item with its own key);
    returns (wall start, monotonic start)."""
    import aiohttp

    size = max(1, run.post_batch)
    chunks = [list(range(i, min(i + size, len(items)))) for i in range(0, len(items), size)]
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)
    headers = {"Authorization": f"Bearer {secret}"}
    nonce = f"{run.label}-{os.getpid()}-{time.time_ns()}"
    errors: list[str] = []

    def request(chunk: list[int]) -> tuple[str, Any]:
        if run.post_batch <= 1:
            return "/v1/payouts", items[chunk[0]]
        keyed = [{**items[i], "idempotency_key": f"{nonce}-{i}"} for i in chunk]
        return "/v1/payouts/batch", {"payouts": keyed}

    async def sender(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            chunk = queue.get_nowait()
            path, body = request(chunk)
            for attempt in range(5):
                async with session.post(
                    f"{base}{path}",
                    json=body,
                    headers={**headers, "Idempotency-Key": f"{nonce}-{chunk[0]}"},
                ) as r:
                    if r.status in (200, 201):
                        answer = await r.json()
                        payouts = answer["data"] if run.post_batch > 1 else [answer]
                        for i, payout in zip(chunk, payouts, strict=True):
                            run.ids[i] = payout["id"]
                        break
                    text = await r.text()
                    if r.status >= 500 or r.status == 429:
                        await asyncio.sleep(0.05 * (attempt + 1))  # same key: safe to retry
                        continue
                    errors.extend(f"{r.status} {text[:200]}" for _ in chunk)
                    break
            else:
                errors.extend(f"gave up after 5 attempts: {r.status}" for _ in chunk)

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        wall = datetime.now(UTC)
        start = time.monotonic()
        await asyncio.gather(*[sender(session) for _ in range(CONNECTIONS)])
        run.create_s = time.monotonic() - start
    run.post_errors = len(errors)
    if errors:
        print(f"  {run.label}: {len(errors)} payouts refused, e.g. {errors[0]}", file=sys.stderr)
    return wall, start


async def _collect(db: Any, run: Run, first_post: datetime) -> None:
    from sqlalchemy import func, select

    from tonrail.ledger.service import check_books
    from tonrail.payments.models import Payment
    from tonrail.rails.ton.models import TonRequest, TonTransfer

    async with db.transaction() as session:
        run.statuses = await _statuses(db)
        last = (
            await session.execute(
                select(func.max(Payment.updated_at)).where(
                    Payment.direction == "out", Payment.status.in_(FINAL)
                )
            )
        ).scalar_one()
        if run.finished and last is not None:
            run.total_s = (last - first_post).total_seconds()
        sizes = (
            await session.execute(
                select(func.count(TonTransfer.attempt_id))
                .join(TonRequest, TonRequest.id == TonTransfer.request_id)
                .group_by(TonRequest.id)
            )
        ).all()
        run.request_sizes = [int(s) for (s,) in sizes]
        run.requests = len(run.request_sizes)
        run.sends = int(
            (
                await session.execute(select(func.coalesce(func.sum(TonRequest.send_count), 0)))
            ).scalar_one()
        )
        rows = (
            await session.execute(
                select(
                    TonTransfer.payment_id, TonTransfer.asset, TonTransfer.fee, TonTransfer.amount
                ).where(TonTransfer.status == "confirmed")
            )
        ).all()
        for payment_id, asset, fee, amount in rows:
            run.fee_of[str(payment_id)] = (str(asset), int(fee or 0))
            (run.fees_ton if asset == "TON" else run.fees_usdt).append(int(fee or 0))
            if asset == "TON":
                run.principal_ton += int(amount)
        # Exactly once with several workers: no payout confirmed by two transfers.
        run.doubled = len(
            (
                await session.execute(
                    select(TonTransfer.payment_id)
                    .where(TonTransfer.status == "confirmed")
                    .group_by(TonTransfer.payment_id)
                    .having(func.count() > 1)
                )
            ).all()
        )
        report = await check_books(session)
        run.books_ok = bool(report.ok)
        if not report.ok:
            run.books_note = str(report)[:300]


async def _hot_balance(base: str, address: str) -> int:
    import aiohttp

    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{base}/api/v2/getAddressBalance", params={"address": address}) as r,
    ):
        body = await r.json()
    return int(body["result"])


async def _run(
    label: str,
    batch_max: int,
    n: int,
    block_ms: int,
    limit_s: float,
    profile: Path | None,
    backend: str,
    phased: bool,
    post_batch: int,
    workers: int = 1,
) -> Run:
    from nacl.signing import SigningKey

    from tonrail.db import Database
    from tonrail.localnet.genesis import Genesis
    from tonrail.rails.ton.keys import PassphraseKek, seal, write_envelope

    items = workload(n)
    run = Run(
        label=label,
        batch_max=batch_max,
        payouts=n,
        timeout_s=limit_s,
        phased=phased,
        post_batch=post_batch,
        workers=workers,
    )
    run.ton = sum(1 for i in items if i["asset"] == "TON")
    run.usdt = n - run.ton
    genesis = Genesis()
    hot = genesis.wallet("hot")
    hot_address = hot.address.to_str()
    with tempfile.TemporaryDirectory(prefix="bench-ton-") as tmp:
        scratch = Path(tmp)
        procs = Procs(scratch)
        admin_url = ""
        if backend == "postgresql":
            admin_url, db_url = _postgres_urls()
            await _pg_admin(
                admin_url,
                f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)',
                f'CREATE DATABASE "{PG_DB}"',
            )
        else:
            db_url = f"sqlite+aiosqlite:///{scratch / 'tonrail.sqlite3'}"
        db = Database(db_url)
        try:
            # The local network.
            net_port = _free_port()
            net = f"http://127.0.0.1:{net_port}"
            state = str(scratch / "chain.sqlite3")
            code = (
                "from tonrail.localnet.server import serve; "
                f"serve({state!r}, '127.0.0.1', {net_port}, {block_ms}, collate_ms={COLLATE_MS})"
            )
            env = _base_env(scratch)
            netproc = procs.start("localnet", [sys.executable, "-c", code], env)
            # The database and an API key, while the network starts.
            secret = await _prepare_db(db_url)
            await _wait_http(f"{net}/localnet/status", netproc, "localnet", 60)

            # The API.
            key_file = scratch / "hot_wallet.key"
            seed = bytes.fromhex(hot.to_json()["private_key"])
            assert bytes(SigningKey(seed).verify_key).hex() == hot.to_json()["public_key"]
            write_envelope(key_file, seal(seed, PassphraseKek(PASSPHRASE, n=2**14)))
            env.update(
                DATABASE_URL=db_url,
                TON_NETWORK="localnet",
                TON_API_URL=f"{net}/api/v2",
                TON_API_V3_URL=f"{net}/api/v3",
                USDT_JETTON_MASTER=genesis.usdt_master.to_str(),
                TON_MASTER_KEY_FILE=str(key_file),
                TON_KEY_PASSPHRASE=PASSPHRASE,
                TON_BATCH_MAX=str(batch_max),
            )
            # Any setting for a trial: BENCH_TON_SET_<NAME>=value sets <NAME>.
            prefix = "BENCH_TON_SET_"
            env.update({k[len(prefix) :]: v for k, v in os.environ.items() if k.startswith(prefix)})
            api_port = _free_port()
            api = f"http://127.0.0.1:{api_port}"
            uvicorn = [sys.executable, "-m", "uvicorn", "benchmarks.bench_ton_payouts:server_app"]
            uvicorn += ["--factory", "--host", "127.0.0.1", "--port", str(api_port)]
            uvicorn += ["--no-access-log", "--log-level", "warning"]
            apiproc = procs.start("api", uvicorn, env)
            # The worker (in a phased run: after the last POST).
            worker_cmd = [TONRAIL, "worker", "--only", "ton_payouts"]
            roles = ["worker"] + [f"worker {i + 1}" for i in range(1, workers)]
            if not phased:
                for role in roles:
                    worker = procs.start(role, worker_cmd, env)
            await _wait_http(f"{api}/readyz", apiproc, "API server", 60)
            if not phased:
                await _wait_worker_up(db, worker, 60, len(roles))
            hot_before = await _hot_balance(net, hot_address)
            if profile is not None:
                procs.profile(profile, label, list(procs.started))

            print(f"  {label}: posting {n} payouts", file=sys.stderr, flush=True)
            cpu0 = procs.cpu()
            first_post, start = await _post_all(api, secret, items, run)
            if phased:
                for role in roles:
                    worker = procs.start(role, worker_cmd, env)
                if profile is not None:
                    await asyncio.sleep(0.5)
                    procs.profile(profile, label, roles)
            cpu1 = procs.cpu()
            run.cpu_create = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
            print(
                f"  {label}: created in {run.create_s:.1f} s; waiting until final",
                file=sys.stderr,
                flush=True,
            )
            expected = n - run.post_errors
            deadline = start + limit_s
            shown = 0.0
            while True:
                statuses = await _statuses(db)
                done = sum(c for s, c in statuses.items() if s in FINAL)
                if done >= expected:
                    run.finished = True
                    break
                if time.monotonic() > deadline:
                    break
                for role in roles:
                    if procs.started[role].poll() is not None:
                        raise RuntimeError(f"{role} exited: {procs.log_tail(role)}")
                if time.monotonic() - shown > 10:
                    shown = time.monotonic()
                    print(
                        f"  {label}: {time.monotonic() - start:5.0f} s {statuses}",
                        file=sys.stderr,
                        flush=True,
                    )
                await asyncio.sleep(0.5)
            cpu2 = procs.cpu()
            run.cpu_confirm = {k: cpu2[k] - cpu1[k] for k in cpu1}
            if not run.finished:
                run.total_s = time.monotonic() - start
            await _collect(db, run, first_post)
            run.hot_spent = hot_before - await _hot_balance(net, hot_address)
        except Exception as exc:
            run.error = f"{type(exc).__name__}: {exc}"
            print(f"  {label}: {run.error}", file=sys.stderr, flush=True)
            for role in procs.started:
                print(f"    {role} log: {procs.log_tail(role)}", file=sys.stderr)
        finally:
            procs.close()
            _keep_logs(scratch, label)
            await db.dispose()
            if admin_url:
                await _pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
    return run


# ----------------------------------------------------------------------------- report
def _ton(nano: float) -> str:
    return f"{nano / TON:.6f}"


def _pct(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def _fee_cells(values: list[int]) -> str:
    if not values:
        return "- | - | -"
    return (
        f"{_ton(statistics.fmean(values))} | {_ton(_pct(values, 0.5))} | {_ton(_pct(values, 0.95))}"
    )


def _vs(batched: list[int], unbatched: list[int]) -> str:
    if not batched or not unbatched:
        return "-"
    b, u = statistics.fmean(batched), statistics.fmean(unbatched)
    return f"{_ton(b)} vs {_ton(u)} TON ({100 * (1 - b / u):.0f}% less)"


def _cpu_cell(cpu: dict[str, float], seconds: float) -> str:
    if not cpu or seconds <= 0:
        return "-"
    return ", ".join(f"{role} {100 * s / seconds:.0f}%" for role, s in cpu.items())


def _row(run: Run) -> str:
    if run.error:
        return f"| {run.label} | {run.payouts:,} | failed: {run.error} |||||||||"
    status = ", ".join(f"{c:,} {s}" for s, c in sorted(run.statuses.items()))
    total = f"{run.total_s:.1f}" if run.finished else f"> {run.total_s:.0f} (unfinished)"
    confirm = run.total_s - run.create_s
    sizes = run.request_sizes or [0]
    return (
        f"| {run.label} (TON_BATCH_MAX={run.batch_max}) | {run.payouts:,} "
        f"({run.ton:,} TON / {run.usdt:,} USDT) | **{total}** | {run.create_s:.1f} "
        f"| {confirm:.1f} | **{run.rate:.1f}** | {run.requests:,} "
        f"(max {max(sizes)} payouts) | {status} | {'yes' if run.books_ok else 'NO'} |"
    )


def _fee_rows(run: Run) -> list[str]:
    if run.error:
        return []
    return [
        f"| {run.label} | all ({len(run.fees):,}) | {_fee_cells(run.fees)} |",
        f"| {run.label} | TON ({len(run.fees_ton):,}) | {_fee_cells(run.fees_ton)} |",
        f"| {run.label} | USDT ({len(run.fees_usdt):,}) | {_fee_cells(run.fees_usdt)} |",
    ]


def _collating() -> str:
    if COLLATE_MS:
        return f"each taking messages for at most {COLLATE_MS} ms"
    return "each running whole traces, without a time limit"


def report(runs: list[Run], block_ms: int, backend: str, elapsed: float, command: str) -> str:
    batched = next((r for r in runs if r.batch_max > 1), None)
    unbatched = next((r for r in runs if r.batch_max == 1), None)
    verdicts = []
    for run in [r for r in runs if r.batch_max > 1 and not r.error]:
        at_scale = run.payouts >= GOAL_PAYOUTS
        met = run.finished and run.total_s < GOAL_SECONDS and run.post_errors == 0
        met = met and run.succeeded == run.payouts and run.books_ok
        scale_note = "" if at_scale else f" (measured at {run.payouts:,}, not 10,000)"
        verdicts.append(
            f"- **{GOAL_PAYOUTS:,} payouts API to confirmed in under {GOAL_SECONDS:.0f} s** "
            f"({run.label}): "
            f"{'met' if met and at_scale else 'NOT met'} — {run.total_s:.1f} s, "
            f"{run.rate:.1f} payouts/s{scale_note}."
        )
    same: list[str] = []
    if batched and unbatched and batched.fees and unbatched.fees:
        # Like for like: the unbatched run pays the first N payouts of the same seeded
        # workload on a fresh chain; compare with what those N cost in the batched run (later
        # payouts can find the recipient's jetton wallet already deployed, which is cheaper).
        picked = [batched.fee_of.get(i) for k, i in batched.ids.items() if k < unbatched.payouts]
        mine = [x for x in picked if x is not None]
        b_all = [f for _, f in mine]
        b_ton = [f for a, f in mine if a == "TON"]
        b_usdt = [f for a, f in mine if a == "USDT"]
        n = unbatched.payouts
        same = [
            f"| batched, its first {n:,} (the unbatched run's) | all ({len(b_all):,}) "
            f"| {_fee_cells(b_all)} |",
            f"| batched, its first {n:,} | TON ({len(b_ton):,}) | {_fee_cells(b_ton)} |",
            f"| batched, its first {n:,} | USDT ({len(b_usdt):,}) | {_fee_cells(b_usdt)} |",
        ]
        if b_all:
            b, u = statistics.fmean(b_all), statistics.fmean(unbatched.fees)
            verdicts.append(
                f"- **Batched fee per payout well under unbatched**: "
                f"{'met' if b < 0.8 * u else 'NOT met'} — on the same {n:,} payouts, average "
                f"{_vs(b_all, unbatched.fees)}; TON payouts {_vs(b_ton, unbatched.fees_ton)}; "
                f"USDT payouts {_vs(b_usdt, unbatched.fees_usdt)}."
            )
    checks = []
    for run in runs:
        if run.error:
            continue
        fees = sum(run.fees)
        exact = run.hot_spent == run.principal_ton + fees
        checks.append(
            f"- {run.label}: {run.succeeded:,} of {run.payouts:,} payouts succeeded, "
            f"{run.post_errors} POSTs refused, `check_books` "
            f"{'balanced' if run.books_ok else 'NOT balanced ' + run.books_note}; the hot "
            f"wallet spent {_ton(run.hot_spent)} TON = TON paid out {_ton(run.principal_ton)}"
            f" + fees booked {_ton(fees)}"
            f"{'' if exact else f' (differs by {_ton(run.hot_spent - run.principal_ton - fees)})'}."
        )
    cpu_lines = []
    for run in runs:
        if run.error:
            continue
        confirm = run.total_s - run.create_s
        cpu_lines.append(
            f"| {run.label} | creating ({run.create_s:.1f} s) "
            f"| {_cpu_cell(run.cpu_create, run.create_s)} |"
        )
        cpu_lines.append(
            f"| {run.label} | after the last POST ({confirm:.1f} s) "
            f"| {_cpu_cell(run.cpu_confirm, confirm)} |"
        )
    databases = (
        f"the database each run names: {DB_NAMES['sqlite']} or {DB_NAMES['postgresql']}"
        if backend == "both"
        else DB_NAMES[backend]
    )
    sizes = {r.post_batch for r in runs}
    posted = (
        "one `POST /v1/payouts` each"
        if sizes == {1}
        else f"`POST /v1/payouts/batch` with {max(sizes)} payouts per request, each with its "
        "own idempotency key"
    )
    phased = any(r.phased for r in runs)
    when = "only after the last POST: `--phased`" if phased else "before the first POST"
    lines = [
        "## TON payouts: API to confirmed",
        "",
        "Payouts (a fixed seeded mix: 70 % TON of 0.001 to 2 TON, 30 % USDT of 0.01 to 500 "
        f"USDT, to {DESTINATIONS:,} never-deployed addresses) POSTed to the real API "
        f"(uvicorn, 1 process, {databases}) by {CONNECTIONS} connections ({posted}), "
        "sent and "
        "tracked by one real worker process (`tonrail worker --only ton_payouts`, started "
        f"{when}), on the local network (its own process, real TVM, blocks "
        f"every {block_ms} ms, {_collating()}). All on 127.0.0.1, "
        f"{os.cpu_count()} CPUs shared by the four processes. Time runs from the first POST "
        "to the last payout's final `updated_at`; "
        "fees are the `fee` booked on each confirmed `ton_transfers` row (its share of the "
        "request's common fee + its own chain fees).",
        "",
        "| run | payouts | total s | create s | after last POST s | payouts/s "
        "| highload requests | final statuses | books balanced |",
        "|---|--:|--:|--:|--:|--:|--:|---|---|",
        *[_row(r) for r in runs],
        "",
        "### Fee per payout (TON)",
        "",
        "| run | payouts | average | p50 | p95 |",
        "|---|---|--:|--:|--:|",
        *[row for r in runs for row in _fee_rows(r)],
        *same,
        "",
        "### Goals",
        "",
        *verdicts,
        "",
        "### Checks",
        "",
        *checks,
        "",
        "### CPU by process (% of one core)",
        "",
        "| run | phase | CPU |",
        "|---|---|---|",
        *cpu_lines,
        "",
        f"Command: `{command}`. This section took {elapsed:.0f} s to produce.",
        "",
    ]
    return "\n".join(lines)


def code_state() -> str:
    """The commit under test, and whether src/ had uncommitted changes when the run began."""
    try:
        git = ["git", "-C", str(REPO)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"commit `{head or 'unknown'}`" + (" + uncommitted changes in src/" if dirty else "")


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    # Killed (timeout, kill): unwind, so each run's `finally` stops its processes. A worker
    # left behind would join the next run, whose scratch database has the same name.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> str:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    env = os.environ.get
    parser.add_argument("--payouts", type=int, default=int(env("BENCH_TON_PAYOUTS", "10000")))
    parser.add_argument(
        "--unbatched",
        type=int,
        default=int(env("BENCH_TON_UNBATCHED", "1000")),
        help="payouts of the unbatched run (0: skip it)",
    )
    parser.add_argument("--block-ms", type=int, default=int(env("BENCH_TON_BLOCK_MS", "400")))
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(env("BENCH_TON_TIMEOUT", "600")),
        help="seconds each run may take after its first POST",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=Path(env("BENCH_TON_PROFILE")) if env("BENCH_TON_PROFILE") else None,
        help="record each process with py-spy (raw stacks) into this folder",
    )
    parser.add_argument(
        "--phased",
        action="store_true",
        default=env("BENCH_TON_PHASED", "") == "1",
        help="start the worker only after the last POST (create and send measured apart)",
    )
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgresql", "both"),
        default=env("BENCH_TON_BACKEND", "both" if env("TONRAIL_TEST_POSTGRES_URL") else "sqlite"),
        help=f"postgresql: a scratch database {PG_DB} on TONRAIL_TEST_POSTGRES_URL's server; "
        "both: the batched run on each, the unbatched one on SQLite",
    )
    parser.add_argument(
        "--post-batch",
        type=int,
        default=int(env("BENCH_TON_POST_BATCH", "250")),
        help="payouts per POST: 1 = one POST /v1/payouts each; more = POST /v1/payouts/batch",
    )
    parser.add_argument(
        "--workers",
        default=env("BENCH_TON_WORKERS", "1,2,2,1,1,2,2,1"),
        help="worker processes of the batched PostgreSQL runs, one run per count, in this "
        "order (repeated counts: their medians are compared; e.g. 1,2)",
    )
    parser.add_argument(
        "--capacity-seconds",
        type=float,
        default=float(env("BENCH_TON_CAPACITY_SECONDS", "8")),
        help="measure the local network's own transfers/s first, this long (0: skip)",
    )
    args = parser.parse_args(argv if argv is not None else [])
    started = time.monotonic()
    code = code_state()
    load = [_load()]

    def capacity_now() -> float | None:
        """The network's own transfers/s, measured now (`_capacity`), or None."""
        if args.capacity_seconds <= 0:
            return None
        got = asyncio.run(_capacity(args.block_ms, args.capacity_seconds))
        if got is None:
            print("  the network's capacity could not be measured", file=sys.stderr)
        return got["per_second"] if got else None

    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    counts = [int(c) for c in str(args.workers).split(",") if c.strip()]
    runs = []
    for i, backend in enumerate(backends):
        common = (
            args.block_ms,
            args.timeout,
            args.profile,
            backend,
            args.phased,
            args.post_batch,
        )
        name = DB_SHORT[backend]
        seen: dict[int, int] = {}
        for workers in counts if backend == "postgresql" else [1]:
            seen[workers] = seen.get(workers, 0) + 1
            label = f"batched, {name}" + (f", {workers} workers" if workers > 1 else "")
            if counts.count(workers) > 1 and backend == "postgresql":
                label += f" #{seen[workers]}"
            capacity = capacity_now()  # right before the run: the machine's speed drifts
            run = asyncio.run(_run(label, 254, args.payouts, *common, workers))
            run.capacity = capacity
            runs.append(run)
        if args.unbatched > 0 and i == 0:
            runs.append(asyncio.run(_run(f"unbatched, {name}", 1, args.unbatched, *common)))
    load.append(_load())
    knobs = " ".join(
        f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_TON_")
    )
    command = (knobs + " " if knobs else "") + "python -m benchmarks.bench_ton_payouts"
    if argv:
        command += " " + " ".join(argv)
    section = report(runs, args.block_ms, args.backend, time.monotonic() - started, command)
    section += capacity_report(runs, args.capacity_seconds, load)
    return section.replace("Command: `", f"Code: {code}. Command: `", 1)


def _load() -> str:
    """The machine's load averages (`uptime`): the cores are shared with colleagues."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


async def _capacity(block_ms: int, seconds: float) -> dict[str, float] | None:
    """The local network's own transfers/s (benchmarks/bench_localnet.py's measurement:
    wallets v4r2 each sending a transfer and waiting for it in a block), on a fresh network,
    right before a payout run: the ceiling that run is held against."""
    from benchmarks import bench_localnet

    try:
        # Bounded: a transfer whose block is never seen would hold the run for ever.
        run = bench_localnet._run(block_ms, 300, seconds, highload_runs=0)
        transfers, _ = await asyncio.wait_for(run, timeout=seconds + 240)
    except (TimeoutError, RuntimeError) as exc:
        print(f"  capacity: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    return transfers


CAPACITY_GOAL = 0.75


def _share(run: Run) -> float | None:
    """The run's payouts/s as a share of the network's capacity measured right before it."""
    return run.rate / run.capacity if run.capacity else None


def capacity_report(runs: list[Run], seconds: float, load: list[str]) -> str:
    """Payouts/s against the network's own transfers/s measured right before each run, and
    one worker against two (issue #18: at least 75 %, and two at least as fast as one)."""
    rows = []
    verdicts = []
    for run in runs:
        if run.error or run.batch_max == 1 or run.capacity is None:
            continue
        ratio = _share(run) or 0.0
        ok = run.finished and run.succeeded == run.payouts and run.books_ok
        exact = ok and run.hot_spent == run.principal_ton + sum(run.fees) and run.doubled == 0
        rows.append(
            f"| {run.label} | {run.workers} | {run.rate:.1f} | {run.capacity:.0f} "
            f"| **{ratio:.0%}** | {run.succeeded:,} / {run.payouts:,} "
            f"| {'yes' if run.books_ok else 'NO'} | {'yes' if exact else 'NO'} | {run.doubled} "
            f"| {run.sends:,} ({run.sends - run.requests:,} copies) |"
        )
        if "PostgreSQL" in run.label:
            verdicts.append(
                f"- **>= {CAPACITY_GOAL:.0%} of the network's capacity** ({run.label}): "
                f"{'met' if ratio >= CAPACITY_GOAL and exact else 'NOT met'} — {ratio:.0%}."
            )
    if not rows:
        return ""
    verdicts += workers_verdict(runs)
    return "\n".join(
        [
            "### Against the local network's own capacity (same run)",
            "",
            "The network's capacity: its own wallet transfers/s (300 wallets v4r2 each sending "
            "and waiting for its block, as in the local network section, for "
            f"{seconds:g} s on a fresh network), measured right before each run, so that each "
            "ratio compares two measurements seconds apart: the machine's speed drifts by tens "
            "of per cent within minutes (2 cores shared with colleagues' runs). Machine load "
            f"(`uptime`, 1/5/15 min) at the start: {load[0]}; at the end: {load[-1]}.",
            "",
            "| run | workers | payouts/s | network transfers/s (right before) "
            "| payouts / capacity | succeeded | books balanced "
            "| hot-wallet spend = payouts + fees, exactly once "
            "| payouts confirmed twice | externals sent (re-sent copies) |",
            "|---|--:|--:|--:|--:|---|---|---|--:|--:|",
            *rows,
            "",
            *verdicts,
            "",
        ]
    )


def workers_verdict(runs: list[Run]) -> list[str]:
    """Two workers against one on PostgreSQL. With repeated counts (`make bench` runs
    `--workers 1,2,2,1,1,2,2,1`: neighbours are paired, and the order cancels a steady drift of
    the shared machine) the medians are compared: one pair is within the machine's noise.
    Where each run has its network capacity measured right before it, the medians of the
    runs' shares of it (payouts/s over the capacity, which leaves out the machine's drift
    between runs but adds the capacity measurement's own noise) are compared too: both
    verdicts are given."""
    pg = [r for r in runs if "PostgreSQL" in r.label and not r.error and r.batch_max != 1]
    rates = {n: [r.rate for r in pg if r.workers == n] for n in (1, 2)}
    if not rates[1] or not rates[2]:
        return []
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    doubled = sum(r.doubled for r in pg if r.workers == 2)
    raw_ok = two >= one and doubled == 0
    raw = (
        f"by raw payouts/s: {'met' if raw_ok else 'NOT met'} — {two:.1f} vs {one:.1f} "
        f"({two / one:.2f} x)"
    )
    shares = {n: [_share(r) for r in pg if r.workers == n] for n in (1, 2)}
    if all(s is not None for n in (1, 2) for s in shares[n]):
        s1 = statistics.median(s for s in shares[1] if s is not None)
        s2 = statistics.median(s for s in shares[2] if s is not None)
        by_share = (
            "by each run's share of the network's capacity measured right before it: "
            f"{'met' if s2 >= s1 and doubled == 0 else 'NOT met'} — {s2:.0%} vs {s1:.0%} "
            f"({s2 / s1:.2f} x); "
        )
        basis = by_share + raw
    else:
        basis = raw
    each = ""
    if len(rates[2]) > 1:
        ones = [r for r in pg if r.workers == 1]
        twos = [r for r in pg if r.workers == 2]
        pairs = ", ".join(
            f"{b.rate:.1f} vs {a.rate:.1f} ({b.rate / a.rate:.2f} x"
            + (
                f"; shares {b.rate / b.capacity:.0%} vs {a.rate / a.capacity:.0%}"
                if a.capacity and b.capacity
                else ""
            )
            + ")"
            for a, b in zip(ones, twos, strict=False)
        )
        each = f" Medians of {len(rates[2])} runs each, in the order given; pairs: {pairs}."
    return [
        f"- **2 workers at least as fast as 1** (PostgreSQL): {basis}; {doubled} payouts "
        f"confirmed twice.{each}"
    ]


if __name__ == "__main__":
    print(main(sys.argv[1:]))
