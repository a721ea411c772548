"""The testnet rehearsal end to end on this machine: a production-like stack of separate
processes (the local TON network, `tonrail migrate`, the hot wallet bootstrap the container
stack uses, `tonrail serve`, `tonrail worker`, on PostgreSQL), then `tonrail rehearsal pay`
and `tonrail rehearsal verify` as `make test-payments verify-testnet-payments` run them, with
the settings file `make stack-up` writes. Verify reads the chain through toncenter's HTTP
API only; the record it writes is what `tonrail deploy check-record` accepts or refuses."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import PG_URL
from tests.tonnet import free_port
from tonrail.deploy.record import git_sha
from tonrail.settings import RehearsalSettings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@dataclass
class Stack:
    env_file: Path
    records: Path
    database_url: str
    workdir: Path

    def tonrail(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "tonrail"), *args],
            cwd=self.workdir,
            env={**_base_env(), **env},
            capture_output=True,
            text=True,
            timeout=900,
        )


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "SSL_CERT_FILE")
    return {k: v for k, v in os.environ.items() if k in keep}


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(240):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer at {url}")


async def _database(name: str, drop: bool = False) -> None:
    engine = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not drop:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must test PostgreSQL: TONRAIL_TEST_POSTGRES_URL is not set")
        pytest.skip("TONRAIL_TEST_POSTGRES_URL not set")
    tmp = tmp_path_factory.mktemp("stack")
    name = f"tonrail_rehearsal_{uuid.uuid4().hex[:8]}"
    asyncio.run(_database(name))
    database_url = PG_URL.rsplit("/", 1)[0] + "/" + name
    chain_port, api_port = free_port(), free_port()
    chain = f"http://127.0.0.1:{chain_port}"
    app_env = {
        **_base_env(),
        "ENVIRONMENT": "production",
        "LOG_JSON": "true",
        "DATABASE_URL": database_url,
        "TON_NETWORK": "localnet",
        "TON_API_URL": f"{chain}/api/v2",
        "TON_API_V3_URL": f"{chain}/api/v3",
        "TON_MASTER_KEY_FILE": str(tmp / "keys" / "hot_wallet.key"),
        "TON_KEY_PASSPHRASE": secrets.token_urlsafe(18),
        "JWT_SECRET": secrets.token_urlsafe(36),
        "BOOTSTRAP_DEMO": "false",
        "DATA_DIR": str(tmp / "data"),
    }
    (tmp / "keys").mkdir()
    logs = tmp / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(what: str, *args: str) -> subprocess.Popen[bytes]:
        out = (logs / f"{what}.log").open("wb")
        proc = subprocess.Popen(
            [str(BIN / "tonrail"), *args], cwd=tmp, env=app_env, stdout=out, stderr=out
        )
        procs.append(proc)
        return proc

    def once(*argv: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            argv, cwd=tmp, env=app_env, input=stdin, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, (argv, result.stdout, result.stderr)
        return result.stdout

    try:
        localnet = start(
            "localnet", "localnet", "--port", str(chain_port), "--block-ms", "200",
            "--state", str(tmp / "localnet.sqlite3"),
        )  # fmt: skip
        _wait_http(f"{chain}/localnet/status", localnet, "localnet")
        once(str(BIN / "tonrail"), "migrate")
        boot = once(
            sys.executable, str(ROOT / "deploy/docker/localnet_bootstrap.py"), "--localnet", chain
        )
        out = dict(line.split("=", 1) for line in boot.splitlines() if "=" in line)
        app_env["USDT_JETTON_MASTER"] = out["USDT_JETTON_MASTER"]
        app_env["PAYMENT_PROCESSOR_ADDRESS"] = out["PAYMENT_PROCESSOR_ADDRESS"]
        created = once(str(BIN / "tonrail"), "keys", "create", "--account", "acct_rehearsal")
        api_key = next(
            ln.split(": ", 1)[1] for ln in created.splitlines() if ln.startswith("secret")
        )
        start("worker", "worker")
        serve = start("serve", "serve", "--host", "127.0.0.1", "--port", str(api_port))
        _wait_http(f"http://127.0.0.1:{api_port}/readyz", serve, "serve")
        env_file = tmp / "stack.env"
        env_file.write_text(
            "\n".join(
                [
                    "TONRAIL_NETWORK=localnet",
                    f"TONRAIL_API_URL=http://127.0.0.1:{api_port}",
                    f"TONRAIL_API_KEY={api_key}",
                    f"TONRAIL_TONCENTER_URL={chain}",
                    "TONRAIL_TONCENTER_API_KEY=",
                    f"TONRAIL_USDT_MASTER={out['USDT_JETTON_MASTER']}",
                    f"TONRAIL_HOT_WALLET_ADDRESS={out['PAYMENT_PROCESSOR_ADDRESS']}",
                    "TONRAIL_PAYER_WALLET=v5r1",
                    f"TONRAIL_PAYER_ADDRESS={out['PAYER_ADDRESS']}",
                    f"TONRAIL_PAYER_PRIVATE_KEY={out['PAYER_PRIVATE_KEY']}",
                    f"TONRAIL_DATABASE_URL={database_url}",
                    "TONRAIL_REHEARSAL_TIMEOUT_SECONDS=300",
                ]
            )
            + "\n"
        )
        yield Stack(env_file, tmp / "records", database_url, tmp)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        asyncio.run(_database(name, drop=True))


def test_rehearsal_pays_verifies_on_chain_and_writes_the_record(stack: Stack) -> None:
    paid = stack.tonrail(
        "rehearsal", "pay", "--env-file", str(stack.env_file), "--dir", str(stack.records)
    )
    assert paid.returncode == 0, paid.stdout + paid.stderr
    state = json.loads((stack.records / "localnet-rehearsal-payments.json").read_text())
    outcomes = {i["check"]: i["status"] for i in state["items"]}
    assert outcomes == {
        "ton_payout": "succeeded",
        "usdt_payout": "succeeded",
        "idempotent_retry": "succeeded",
        "bounce": "failed",
        "invoice": "succeeded",
    }
    retry = next(i["retry"] for i in state["items"] if i["check"] == "idempotent_retry")
    assert retry == {"status_code": 201, "replayed": True, "same_id": True}

    verified = stack.tonrail(
        "rehearsal", "verify", "--env-file", str(stack.env_file), "--dir", str(stack.records)
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    [path] = stack.records.glob("localnet-verification-*.json")
    rec = json.loads(path.read_text())
    assert rec["ok"] is True and rec["network"] == "localnet"
    assert rec["git_sha"] == git_sha()
    assert [c["name"] for c in rec["checks"]] == [
        "ton_payout", "usdt_payout", "idempotent_retry", "bounce", "invoice", "books_balance",
    ]  # fmt: skip
    assert all(c["ok"] for c in rec["checks"]), rec["checks"]
    assert all(c.get("tx_hash") for c in rec["checks"][:5])

    # The mainnet deploy accepts it for this commit on its network, and refuses it for testnet.
    sha = git_sha()
    accepted = stack.tonrail(
        "deploy", "check-record", "--sha", sha, "--network", "localnet", "--dir", str(stack.records)
    )
    assert accepted.returncode == 0, accepted.stderr
    refused = stack.tonrail("deploy", "check-record", "--sha", sha, "--dir", str(stack.records))
    assert refused.returncode == 1 and "no verification record on testnet" in refused.stderr

    # Verify reads the chain: a payment the chain does not show as recorded fails its check.
    state_file = stack.records / "localnet-rehearsal-payments.json"
    for item in state["items"]:
        if item["check"] == "ton_payout":
            item["amount_minor"] += 1
        if item["check"] == "usdt_payout":
            item["destination"] = item["destination"][:-6] + "AAAAAA"  # not a valid checksum
    state_file.write_text(json.dumps(state))
    tampered = stack.tonrail(
        "rehearsal", "verify", "--env-file", str(stack.env_file), "--dir", str(stack.records)
    )
    assert tampered.returncode == 1
    assert "FAIL ton_payout" in tampered.stdout and "FAIL usdt_payout" in tampered.stdout
    assert "ok   bounce" in tampered.stdout


def test_verify_fails_when_the_books_do_not_balance(stack: Stack) -> None:
    async def unbalance() -> None:
        engine = create_async_engine(stack.database_url)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE ledger_lines SET amount = amount + 1"
                    " WHERE id = (SELECT min(id) FROM ledger_lines)"
                )
            )
        await engine.dispose()

    asyncio.run(unbalance())
    verified = stack.tonrail(
        "rehearsal", "verify", "--env-file", str(stack.env_file), "--dir", str(stack.records)
    )
    assert verified.returncode == 1
    assert "FAIL books_balance" in verified.stdout


def test_rehearsal_settings_are_documented() -> None:
    example = (ROOT / ".env.example").read_text()
    for name in RehearsalSettings.model_fields:
        assert f"# TONRAIL_{name.upper()}=" in example, name


def test_pay_refuses_without_a_deployment(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "tonrail"), "rehearsal", "pay", "--env-file", str(tmp_path / "none.env"),
         "--dir", str(tmp_path)],
        cwd=tmp_path, env=_base_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "not set: TONRAIL_API_URL, TONRAIL_API_KEY, TONRAIL_TONCENTER_URL" in result.stderr
    verify = subprocess.run(
        [str(BIN / "tonrail"), "rehearsal", "verify", "--dir", str(tmp_path)],
        cwd=tmp_path,
        env={**_base_env(), "TONRAIL_TONCENTER_URL": "http://127.0.0.1:9",
             "TONRAIL_HOT_WALLET_ADDRESS": "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 1
    assert "no rehearsal payments in" in verify.stderr
