"""The container image, proven on this machine (docs/CONTAINERS.md).

Builds the image (deploy/docker/build-image.sh: the base is made once and cached), starts the
production-like stack from it (deploy/docker/stack.sh: localnet, migrate, 2 x worker, 2 x
serve behind one port, on the host network against the machine's PostgreSQL, in a database
of its own), then: the containers run as non-root on a read-only root filesystem; a payout
made through the API is paid on the containerised local network; a worker container stopped
with SIGTERM hands its leased payouts to the other worker, which finishes them long before
the lease would have run out.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.tonnet import free_port
from tonrail.db import Database
from tonrail.settings import REPO_ROOT

pytestmark = pytest.mark.slow

DOCKER = REPO_ROOT / "deploy" / "docker"
LEASE_SECONDS = 600  # the workers' lease: a takeover that waited for it would take 10 minutes


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


def _free_port_run(n: int) -> int:
    """A port p with p .. p+n-1 all free (the balancer and the serve containers)."""
    for _ in range(50):
        base = free_port()
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no run of free ports")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    image = "localhost/tonrail"
    tag = f"test-{secrets.token_hex(3)}"
    subprocess.run(
        [str(DOCKER / "build-image.sh")], check=True, env={**os.environ, "TAG": tag}
    )  # fmt: skip
    name = f"tonrail-test-{secrets.token_hex(3)}"
    env_file = tmp_path_factory.mktemp("stack") / "stack.env"
    env = {
        **os.environ,
        "IMAGE": f"{image}:{tag}",
        "STACK_NAME": name,
        "STACK_DB": name.replace("-", "_"),
        "STACK_PORT": str(_free_port_run(3)),
        "STACK_LOCALNET_PORT": str(free_port()),
        "STACK_ENV_FILE": str(env_file),
        "STACK_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    try:
        subprocess.run([str(DOCKER / "stack.sh"), "up"], check=True, env=env)
        values = dict(
            line.split("=", 1)
            for line in env_file.read_text().splitlines()
            if line and not line.startswith("#")
        )
        yield {**values, "NAME": name}
    finally:
        subprocess.run(
            [str(DOCKER / "stack.sh"), "down"], env={**env, "STACK_PURGE": "1"}, check=False
        )
        _podman("rmi", f"{image}:{tag}", check=False)  # :latest and the layers stay cached


@pytest.fixture
async def api(stack: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {stack['TONRAIL_API_KEY']}"}
    async with httpx.AsyncClient(
        base_url=stack["TONRAIL_API_URL"], headers=headers, timeout=10
    ) as client:
        yield client


@pytest.fixture
async def stack_db(stack: dict[str, str]) -> AsyncIterator[Database]:
    db = Database(stack["TONRAIL_DATABASE_URL"])
    yield db
    await db.dispose()


def test_containers_run_as_non_root_on_a_read_only_root(stack: dict[str, str]) -> None:
    serve = f"{stack['NAME']}-serve-1"
    (info,) = json.loads(_podman("inspect", serve).stdout)
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["Config"]["User"] == "10001:10001"
    probe = (
        "import os, pathlib\n"
        "print(os.getuid(), os.getgid())\n"
        "pathlib.Path('/tmp/probe').write_text('ok')\n"
        "try:\n"
        "    pathlib.Path('/opt/tonrail/probe').write_text('no')\n"
        "except OSError as exc:\n"
        "    print(exc.strerror)\n"
    )
    out = _podman("exec", serve, "/opt/tonrail/bin/python", "-c", probe).stdout.splitlines()
    assert out == ["10001 10001", "Read-only file system"]
    (image,) = json.loads(_podman("image", "inspect", info["ImageName"]).stdout)
    assert image["Config"]["StopSignal"] == "SIGTERM"
    head = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert image["Labels"]["org.opencontainers.image.revision"] == (head or "unknown")
    assert "/healthz" in " ".join(image["Healthcheck"]["Test"])
    health = _podman("healthcheck", "run", serve, check=False)
    assert health.returncode == 0, health.stdout + health.stderr


async def test_a_payout_through_the_api_is_paid_on_the_containerised_chain(
    stack: dict[str, str], api: httpx.AsyncClient
) -> None:
    destination = stack["TONRAIL_PAYER_ADDRESS"]
    created = await api.post(
        "/v1/payouts",
        json={"amount": "2.5", "asset": "TON", "destination": destination, "priority": "urgent"},
        headers={"Idempotency-Key": secrets.token_hex(8)},
    )
    assert created.status_code == 201, created.text
    (payout,) = await _settled(api, [created.json()["id"]], within=120)
    assert payout["status"] == "succeeded", payout
    # On the chain, read through the local network's toncenter API: the hot wallet's message
    # with exactly the amount reached the destination.
    incoming = [tx["in_msg"] for tx in await _transactions(stack, destination)]
    assert any(
        m["source"] == stack["TONRAIL_HOT_WALLET_ADDRESS"] and m["value"] == "2500000000"
        for m in incoming
    ), incoming


async def test_a_worker_stopped_with_sigterm_hands_its_work_over_at_once(
    stack: dict[str, str], api: httpx.AsyncClient, stack_db: Database
) -> None:
    localnet = stack["TONRAIL_LOCALNET_URL"]
    async with httpx.AsyncClient(base_url=localnet) as chain:
        # No blocks: the payouts are signed and sent, then wait, leased to one worker.
        assert (await chain.post("/localnet/faults", json={"stall_blocks": True})).is_success
        try:
            ids = []
            for i in range(3):
                r = await api.post(
                    "/v1/payouts",
                    json={
                        "amount": f"1.{i + 1}",
                        "asset": "TON",
                        "destination": stack["TONRAIL_PAYER_ADDRESS"],
                        "priority": "urgent",
                    },
                    headers={"Idempotency-Key": secrets.token_hex(8)},
                )
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            holder, lease_ends = await _leased_to_a_worker(stack_db, ids, stack["NAME"])
            container = holder.split(":", 1)[0]  # worker ids start with the container's name

            stopped = _podman("stop", "--time", "30", container)
            assert stopped.returncode == 0
            (state,) = json.loads(_podman("inspect", container).stdout)
            assert state["State"]["ExitCode"] == 0  # a clean exit, not a kill after 30 s
            logs = _podman("logs", container).stdout + _podman("logs", container).stderr
            stop_line = [ln for ln in logs.splitlines() if '"worker stopped"' in ln]
            assert stop_line and json.loads(stop_line[-1])["released_leases"] >= len(ids)
            assert await _locked_by(stack_db, ids) == {None}
        finally:
            await chain.delete("/localnet/faults")
    settled = await _settled(api, ids, within=120)
    assert {p["status"] for p in settled} == {"succeeded"}, settled
    # The other worker finished them: long before the stopped worker's lease would have ended.
    assert datetime.now(UTC) < lease_ends
    assert holder not in await _locked_by(stack_db, ids)


async def test_a_serve_container_stopped_with_sigterm_costs_no_request(
    stack: dict[str, str],
) -> None:
    """A rolling restart of one `serve`: requests through the one port all succeed while it
    stops (SIGTERM: uvicorn finishes what is in flight) and comes back."""
    serve = f"{stack['NAME']}-serve-1"
    statuses: list[int] = []
    done = asyncio.Event()

    async def traffic() -> None:
        # A new connection each time, as many clients behind a load balancer would open.
        while not done.is_set():
            async with httpx.AsyncClient(base_url=stack["TONRAIL_API_URL"]) as client:
                statuses.append((await client.get("/readyz")).status_code)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(traffic())
    try:
        await asyncio.sleep(1)
        stopped = await asyncio.to_thread(_podman, "stop", "--time", "30", serve)
        assert stopped.returncode == 0
        (state,) = json.loads(_podman("inspect", serve).stdout)
        assert state["State"]["ExitCode"] == 0
        await asyncio.sleep(1)
        await asyncio.to_thread(_podman, "start", serve)
        port = int(stack["TONRAIL_API_URL"].rsplit(":", 1)[1]) + 1
        async with httpx.AsyncClient() as client:
            for _ in range(120):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).is_success:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.5)
    finally:
        done.set()
        await task
    assert len(statuses) > 10 and set(statuses) == {200}, statuses


async def _leased_to_a_worker(
    db: Database, ids: list[str], stack_name: str
) -> tuple[str, datetime]:
    for _ in range(240):
        async with db.transaction() as session:
            rows = (
                await session.execute(
                    text(
                        "SELECT locked_by, locked_until FROM payments"
                        " WHERE id = ANY(:ids) AND status = 'processing'"
                    ),
                    {"ids": ids},
                )
            ).all()
        holders = {r.locked_by for r in rows}
        if len(rows) == len(ids) and len(holders) == 1:
            (holder,) = holders
            if holder and holder.startswith(f"{stack_name}-worker-"):
                return holder, min(r.locked_until for r in rows).replace(tzinfo=UTC)
        await asyncio.sleep(0.25)
    raise AssertionError(f"the payouts were never leased to one worker: {rows}")


async def _locked_by(db: Database, ids: list[str]) -> set[str | None]:
    async with db.transaction() as session:
        result = await session.execute(
            text("SELECT locked_by FROM payments WHERE id = ANY(:ids)"), {"ids": ids}
        )
        return {r.locked_by for r in result}


async def _settled(api: httpx.AsyncClient, ids: list[str], within: float) -> list[Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        payouts = [(await api.get(f"/v1/payouts/{pid}")).json() for pid in ids]
        if all(p["status"] in ("succeeded", "failed", "canceled") for p in payouts):
            return payouts
        assert loop.time() < deadline, payouts
        await asyncio.sleep(0.5)


async def _transactions(stack: dict[str, str], address: str) -> list[Any]:
    async with httpx.AsyncClient() as client:
        r = await client.get(
            f"{stack['TONRAIL_TONCENTER_V2_URL']}/getTransactions",
            params={"address": address, "limit": 20},
        )
    assert r.status_code == 200, r.text
    result: list[Any] = r.json()["result"]
    return result


def test_the_stack_env_file_has_what_a_payer_needs(stack: dict[str, str]) -> None:
    for key in (
        "TONRAIL_API_URL",
        "TONRAIL_API_KEY",
        "TONRAIL_TONCENTER_URL",
        "TONRAIL_PAYER_PRIVATE_KEY",
        "TONRAIL_PAYER_ADDRESS",
        "TONRAIL_USDT_MASTER",
    ):
        assert stack.get(key), key
