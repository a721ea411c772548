"""A tonrail deployment as separate processes on PostgreSQL, for the chaos and soak runs.

`stack()` starts the local TON network (real TVM, blocks every 400 ms), N x `tonrail serve`
and M x `tonrail worker` on a scratch database created on TONRAIL_TEST_POSTGRES_URL's
server, each process with its own log in a scratch folder, an API key and two approver keys
of one account, and a customer wallet (funded with TON and USDT, deployed) that pays
invoices. With `own_postgres` the database is on a PostgreSQL cluster of the run's own
(benchmarks/private_pg.py, in the folder's `postgres/`), which the run may restart without
harming anyone else on the machine. On leaving, every process is stopped (SIGTERM, then
SIGKILL); the database (or the private cluster) and the folder are dropped unless `Stack.keep`
was set (a failed run keeps its logs, and the private cluster's data and server log, stopped).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.bench_ton_payouts import _base_env, _free_port, _pg_admin, _wait_http
from benchmarks.chaos_checks import Chain
from benchmarks.chaos_load import TON, USDT, deploy_payer
from benchmarks.private_pg import PrivatePostgres

TONRAIL = str(Path(sys.executable).parent / "tonrail")
ACCOUNT = "acct_chaos"
PASSPHRASE = "chaos-run-passphrase"


@dataclass
class Role:
    name: str
    cmd: list[str]
    proc: subprocess.Popen[bytes] | None = None
    kind: str = "worker"


@dataclass
class Cluster:
    """The tonrail processes by role; each keeps one log across its restarts."""

    folder: Path
    env: dict[str, str]
    roles: dict[str, Role] = field(default_factory=dict)
    kills: int = 0
    restarts: int = 0
    crashes: int = 0  # processes that exited by themselves (restarted, as a supervisor would)
    events: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        self.events.append(line)
        with (self.folder / "chaos.log").open("a") as f:
            f.write(line + "\n")

    def start(self, role: Role) -> None:
        with (self.folder / f"{role.name}.log").open("ab") as log:
            role.proc = subprocess.Popen(
                role.cmd,
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, role: Role) -> None:
        if role.proc is not None and role.proc.poll() is None:
            os.killpg(role.proc.pid, signal.SIGKILL)
            role.proc.wait(timeout=10)
            self.kills += 1
            self.note(f"SIGKILL {role.name} (pid {role.proc.pid})")

    def ensure_up(self) -> None:
        for role in self.roles.values():
            if role.proc is None or role.proc.poll() is not None:
                self.start(role)
                self.restarts += 1
                self.note(f"started {role.name} again")

    def stop(self, kind: str | None = None) -> None:
        """SIGTERM (graceful: a worker gives its leases back), SIGKILL after 30 s."""
        for role in self.roles.values():
            if (kind and role.kind != kind) or role.proc is None or role.proc.poll() is not None:
                continue
            os.killpg(role.proc.pid, signal.SIGTERM)
        for role in self.roles.values():
            if (kind and role.kind != kind) or role.proc is None:
                continue
            try:
                role.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(role.proc.pid, signal.SIGKILL)
                role.proc.wait(timeout=10)
                self.note(f"{role.name} ignored SIGTERM for 30 s")


def postgres_urls(db_name: str) -> tuple[str, str]:
    from sqlalchemy.engine import make_url

    raw = os.environ.get("TONRAIL_TEST_POSTGRES_URL", "").strip()
    if not raw:
        raise SystemExit("this run needs TONRAIL_TEST_POSTGRES_URL (a PostgreSQL server)")
    url = make_url(raw).set(drivername="postgresql+asyncpg")
    admin = url.set(database="postgres").render_as_string(hide_password=False)
    return admin, url.set(database=db_name).render_as_string(hide_password=False)


async def make_keys(db_url: str) -> tuple[str, list[str]]:
    from tonrail.db import Database
    from tonrail.migrate import upgrade_async
    from tonrail.security.api_keys import create_key

    await upgrade_async(db_url)
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            _, secret = await create_key(session, ACCOUNT, "load")
            approvers = [
                (await create_key(session, ACCOUNT, f"approver {i}", ("payouts:approve",)))[1]
                for i in (1, 2)
            ]
    finally:
        await db.dispose()
    return secret, approvers


async def faucet(net: str, address: str, amount: int, asset: str) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{net}/localnet/faucet", json={"address": address, "amount": amount, "asset": asset}
        ) as r,
    ):
        r.raise_for_status()


@dataclass
class Stack:
    """What `stack()` started, for the run's load, checks and chaos."""

    folder: Path
    cluster: Cluster
    localnet: Role
    net: str  # the local network's base URL
    apis: list[str]
    db: Any  # tonrail.db.Database on the scratch database
    db_name: str
    secret: str
    approvers: list[str]
    chain: Chain
    payer_key: bytes
    usdt_master: Any  # ton_core Address of the USDT jetton master
    postgres: PrivatePostgres | None = None  # the run's own cluster, when it has one
    keep: bool = False  # keep the database and the logs after the run


@asynccontextmanager
async def stack(
    kind: str,
    apis: int,
    workers: int,
    rng: random.Random,
    extra_env: dict[str, str],
    own_postgres: bool = False,
) -> AsyncIterator[Stack]:
    from ton_core import Address

    from tonrail.db import Database
    from tonrail.localnet.genesis import Genesis, derive_key
    from tonrail.rails.ton.keys import PassphraseKek, seal, write_envelope

    folder = Path(tempfile.mkdtemp(prefix=f"tonrail-{kind}-"))
    db_name = f"tonrail_{kind}_{os.getpid()}"
    postgres: PrivatePostgres | None = None
    if own_postgres:
        postgres = PrivatePostgres(folder / "postgres")
        try:
            await asyncio.to_thread(postgres.start)
        except BaseException:
            await asyncio.to_thread(postgres.stop)
            print(f"{kind}: private PostgreSQL failed; see {folder}", file=sys.stderr)
            raise
        admin_url, db_url = postgres.url("postgres"), postgres.url(db_name)
    else:
        admin_url, db_url = postgres_urls(db_name)
        await _pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    try:
        await _pg_admin(admin_url, f'CREATE DATABASE "{db_name}"')
    except BaseException:
        if postgres is not None:
            await asyncio.to_thread(postgres.stop)
        raise
    genesis = Genesis()
    hot = genesis.wallet("hot")
    env = _base_env(folder)
    net_port = _free_port()
    net = f"http://127.0.0.1:{net_port}"
    code = (
        "from tonrail.localnet.server import serve; "
        f"serve({str(folder / 'chain.sqlite3')!r}, '127.0.0.1', {net_port}, 400)"
    )
    cluster = Cluster(folder, env)
    localnet = Role("localnet", [sys.executable, "-c", code], kind="localnet")
    cluster.start(localnet)
    db = Database(db_url)
    keep = True  # until the stack was used and said otherwise
    try:
        secret, approvers = await make_keys(db_url)
        await _wait_http(f"{net}/localnet/status", localnet.proc, "localnet", 120)  # type: ignore[arg-type]
        key_file = folder / "hot_wallet.key"
        write_envelope(
            key_file,
            seal(bytes.fromhex(hot.to_json()["private_key"]), PassphraseKek(PASSPHRASE, n=2**14)),
        )
        env.update(
            DATABASE_URL=db_url,
            TON_NETWORK="localnet",
            TON_API_URL=f"{net}/api/v2",
            TON_API_V3_URL=f"{net}/api/v3",
            USDT_JETTON_MASTER=genesis.usdt_master.to_str(),
            TON_MASTER_KEY_FILE=str(key_file),
            TON_KEY_PASSPHRASE=PASSPHRASE,
            LOG_LEVEL="INFO",
        )
        env.update(extra_env)
        ports = [_free_port() for _ in range(apis)]
        for i, port in enumerate(ports):
            cmd = [TONRAIL, "serve", "--host", "127.0.0.1", "--port", str(port)]
            cluster.roles[f"api-{i}"] = Role(f"api-{i}", cmd, kind="api")
        for i in range(workers):
            cluster.roles[f"worker-{i}"] = Role(f"worker-{i}", [TONRAIL, "worker"])
        for role in cluster.roles.values():
            cluster.start(role)
        api_urls = [f"http://127.0.0.1:{p}" for p in ports]
        for i, api in enumerate(api_urls):
            await _wait_http(f"{api}/readyz", cluster.roles[f"api-{i}"].proc, "API", 120)  # type: ignore[arg-type]
        # The customer who pays invoices: funded and deployed before the run begins.
        payer_key = bytes(derive_key("chaos", "payer"))
        from ton_core import NetworkGlobalID, PrivateKey
        from tonutils.clients import ToncenterClient as TonutilsClient
        from tonutils.contracts import WalletV5R1

        probe = TonutilsClient(NetworkGlobalID.MAINNET, base_url=f"{net}/api/v2", api_key="l")
        payer = WalletV5R1.from_private_key(probe, PrivateKey(payer_key)).address
        await faucet(net, payer.to_str(), 1_000 * TON, "TON")
        await faucet(net, payer.to_str(), 100_000 * USDT, "USDT")
        chain = Chain(
            f"{net}/api/v2",
            hot.address.to_str(),
            genesis.usdt_master.to_str(),
            int(hot.to_json()["funded_usdt"]),
        )
        async with aiohttp.ClientSession() as s:
            for _ in range(600):
                if await chain.ton_balance(s, payer.to_str()) > 0:
                    break
                await asyncio.sleep(0.2)
        sink = Address((0, rng.randbytes(32))).to_str(is_bounceable=False)
        await deploy_payer(f"{net}/api/v2", payer_key, sink)
        up = Stack(
            folder,
            cluster,
            localnet,
            net,
            api_urls,
            db,
            db_name,
            secret,
            approvers,
            chain,
            payer_key,
            genesis.usdt_master,
            postgres,
        )
        yield up
        keep = up.keep
    finally:
        cluster.stop()
        if localnet.proc is not None and localnet.proc.poll() is None:
            os.killpg(localnet.proc.pid, signal.SIGTERM)
            localnet.proc.wait(timeout=30)
        await db.dispose()
        if postgres is not None:
            await asyncio.to_thread(postgres.stop)  # kept on failure, stopped, with its log
        elif not keep:
            await _pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
