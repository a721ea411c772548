"""Crash tests: the worker is SIGKILLed at each step of the payout and deposit paths, then
restarted; every payment must end paid exactly once, with the books balanced."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from ton_core import Address

from tests.tonnet import Localnet, running_localnet
from tonrail.db import Database
from tonrail.ledger.service import check_books
from tonrail.rails.ton.api import ToncenterTonApi, jetton_balance, jetton_wallet_of
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.keys import passphrase_kek, seal, write_envelope
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.settings import Settings

TONRAIL = str(Path(sys.executable).parent / "tonrail")
PASSPHRASE = "crash-test-passphrase"


@pytest.fixture
async def net() -> AsyncIterator[Localnet]:
    async with running_localnet(block_ms=50) as n:
        yield n


def worker_env(net: Localnet, settings: Settings, tmp_path: Path, crash_at: str) -> dict[str, str]:
    key_file = tmp_path / "hot_wallet.key"
    if not key_file.exists():
        seed = bytes.fromhex(net.genesis.wallet("hot").to_json()["private_key"])
        kek = passphrase_kek(
            settings.model_copy(
                update={"ton_key_passphrase": settings.ton_key_passphrase.__class__(PASSPHRASE)}
            ),
            n=2**14,
        )
        write_envelope(key_file, seal(seed, kek))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TON", "DATABASE"))}
    env.update(
        DATABASE_URL=settings.database_url,
        DATA_DIR=str(tmp_path),
        ENVIRONMENT="test",
        TON_NETWORK="localnet",
        TON_API_URL=net.v2,
        TON_API_V3_URL=net.v3,
        USDT_JETTON_MASTER=net.genesis.usdt_master.to_str(),
        TON_MASTER_KEY_FILE=str(key_file),
        TON_KEY_PASSPHRASE=PASSPHRASE,
        TON_RESEND_SECONDS="1",
        WORKER_LEASE_SECONDS="2",
        CRASH_AT=crash_at,
        FEES_WINDOW_URGENT_MS="0",
        FEES_WINDOW_NORMAL_MS="0",
        FEES_WINDOW_LOW_MS="0",
        LOG_LEVEL="WARNING",
    )
    return env


async def run_worker(env: dict[str, str], loops: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        TONRAIL,
        "worker",
        "--only",
        loops,
        env=env,
        cwd=env["DATA_DIR"],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def deployed_payer(net: Localnet, name: str) -> str:
    """A funded wallet v5 that has sent one message (so it is deployed); its raw address."""
    from ton_core import NetworkGlobalID, PrivateKey
    from tonutils.clients import ToncenterClient as TonutilsClient
    from tonutils.contracts import WalletV5R1

    from tonrail.localnet.genesis import TON, derive_key

    tc = TonutilsClient(NetworkGlobalID.MAINNET, base_url=net.v2, api_key="x", rps_limit=1000)
    await tc.connect()
    try:
        payer = WalletV5R1.from_private_key(tc, PrivateKey(bytes(derive_key("crash", name))))
        net.chain.faucet(payer.address, 10 * TON)
        for _ in range(1200):  # up to a minute on a loaded machine
            await payer.refresh()
            if payer.balance:
                break
            await asyncio.sleep(0.05)
        await payer.transfer(net.genesis.wallet("hot").address, TON // 10, bounce=False)
        for _ in range(1200):
            await payer.refresh()
            if payer.is_active:
                break
            await asyncio.sleep(0.05)
        assert payer.is_active, "the payer's wallet did not deploy"
        return raw(payer.address)
    finally:
        await tc.close()


async def wait_final(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    path: str,
    ids: list[str],
    done: set[str],
    within: float = 90,
) -> list[dict]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        got = [(await client.get(f"{path}/{i}", headers=auth)).json() for i in ids]
        if all(p["status"] in done for p in got):
            return got
        if loop.time() > deadline:
            raise AssertionError([p["status"] for p in got])
        await asyncio.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "crash_at",
    [
        "ton.after_claim",
        "ton.after_sign",
        "ton.after_store",
        "ton.after_send",
        "ton.before_confirm",
    ],
)
async def test_payouts_survive_a_crash_at_every_step(
    net: Localnet,
    settings: Settings,
    db: Database,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tmp_path: Path,
    crash_at: str,
) -> None:
    api = ToncenterTonApi(ToncenterClient([net.v2], [net.v3]))
    customer = net.genesis.wallet("customer").address
    payee = customer.to_str(is_user_friendly=True, is_bounceable=False)
    theirs = await jetton_wallet_of(api, net.genesis.usdt_master.to_str(), raw(customer))
    usdt_before = await jetton_balance(api, theirs)
    ids = []
    for amount, asset in (("1.25", "TON"), ("0.75", "TON"), ("3", "USDT")):
        r = await client.post(
            "/v1/payouts",
            json={"amount": amount, "asset": asset, "destination": payee},
            headers=auth,
        )
        ids.append(r.json()["id"])

    env = worker_env(net, settings, tmp_path, crash_at)
    first = await run_worker(env, "ton_payouts")
    code = await asyncio.wait_for(first.wait(), timeout=60)
    assert code == -signal.SIGKILL, (await first.stderr.read()).decode()[-2000:]  # type: ignore[union-attr]

    second = await run_worker({**env, "CRASH_AT": ""}, "ton_payouts")
    try:
        final = await wait_final(client, auth, "/v1/payouts", ids, {"succeeded", "failed"})
    finally:
        second.kill()
        await second.wait()
    assert [p["status"] for p in final] == ["succeeded"] * 3
    # Exactly once on chain: each TON payout's comment (its id) reached the payee once.
    received: dict[str, int] = {}
    for tx in await api.account_transactions(raw(customer), 0, 100):
        if tx.in_msg is not None and tx.in_msg.source == raw(net.genesis.wallet("hot").address):
            received[tx.in_msg.comment or ""] = received.get(tx.in_msg.comment or "", 0) + 1
    assert received == {ids[0]: 1, ids[1]: 1}
    assert await jetton_balance(api, theirs) - usdt_before == 3_000_000
    async with db.transaction() as session:
        assert (await check_books(session)).ok
    await api.aclose()


@pytest.mark.slow
async def test_deposit_watcher_survives_a_crash_before_commit(
    net: Localnet,
    settings: Settings,
    db: Database,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tmp_path: Path,
) -> None:
    from ton_core import NetworkGlobalID, PrivateKey
    from tonutils.clients import ToncenterClient as TonutilsClient
    from tonutils.contracts import WalletV5R1

    from tonrail.localnet.genesis import TON, derive_key

    inv = (
        await client.post("/v1/invoices", json={"amount": "2", "asset": "TON"}, headers=auth)
    ).json()
    tc = TonutilsClient(NetworkGlobalID.MAINNET, base_url=net.v2, api_key="x", rps_limit=1000)
    await tc.connect()
    payer = WalletV5R1.from_private_key(tc, PrivateKey(bytes(derive_key("crash", "payer"))))
    net.chain.faucet(payer.address, 10 * TON)
    for _ in range(1200):  # up to a minute on a loaded machine
        await payer.refresh()
        if payer.balance:
            break
        await asyncio.sleep(0.05)
    await payer.transfer(
        net.genesis.wallet("hot").address, 2 * TON, body=inv["reference"], bounce=False
    )
    await tc.close()

    env = worker_env(net, settings, tmp_path, "ton.deposit_before_commit")
    first = await run_worker(env, "ton_deposits")
    assert await asyncio.wait_for(first.wait(), timeout=60) == -signal.SIGKILL
    second = await run_worker({**env, "CRASH_AT": ""}, "ton_deposits")
    try:
        [paid] = await wait_final(client, auth, "/v1/invoices", [inv["id"]], {"succeeded"})
    finally:
        second.kill()
        await second.wait()
    assert paid["status"] == "succeeded"
    from sqlalchemy import select

    from tonrail.rails.ton.models import TonDeposit

    async with db.transaction() as session:
        deps = (
            (await session.execute(select(TonDeposit).where(TonDeposit.payment_id == inv["id"])))
            .scalars()
            .all()
        )
        assert [d.status for d in deps] == ["credited"]
        assert (await check_books(session)).ok


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", ["ton.after_send", "ton.before_confirm"])
async def test_a_refund_is_paid_back_once_across_a_crash(
    net: Localnet,
    settings: Settings,
    db: Database,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tmp_path: Path,
    crash_at: str,
) -> None:
    from sqlalchemy import func, select

    from tests.api.test_refunds import deposit
    from tonrail.events.models import OutboxEvent
    from tonrail.localnet.genesis import TON

    # The payer as on chain: a wallet that sent the payment is deployed (a refund to an address
    # with no contract would bounce, as raw destinations are bounceable).
    customer = await deployed_payer(net, "refund-payer")
    inv = (
        await client.post("/v1/invoices", json={"amount": "3", "asset": "TON"}, headers=auth)
    ).json()
    await deposit(db, inv["id"], 3 * TON, sender=customer)  # as the watcher records it
    r = await client.post(f"/v1/invoices/{inv['id']}/refunds", json={"amount": "1.5"}, headers=auth)
    assert r.status_code == 201, r.text
    refund = r.json()

    env = worker_env(net, settings, tmp_path, crash_at)
    first = await run_worker(env, "ton_payouts")
    code = await asyncio.wait_for(first.wait(), timeout=60)
    assert code == -signal.SIGKILL, (await first.stderr.read()).decode()[-2000:]  # type: ignore[union-attr]
    second = await run_worker({**env, "CRASH_AT": ""}, "ton_payouts")
    try:
        [done] = await wait_final(
            client, auth, "/v1/refunds", [refund["id"]], {"succeeded", "failed"}
        )
    finally:
        second.kill()
        await second.wait()
    assert done["status"] == "succeeded"
    # Once on chain: the refund's payout (its id is the comment) reached the payer once.
    api = ToncenterTonApi(ToncenterClient([net.v2], [net.v3]))
    hot = raw(net.genesis.wallet("hot").address)
    paid = [
        tx.in_msg.value
        for tx in await api.account_transactions(customer, 0, 100)
        if tx.in_msg is not None and tx.in_msg.source == hot and tx.in_msg.comment == done["payout"]
    ]
    await api.aclose()
    assert paid == [1_500_000_000]
    async with db.transaction() as session:
        succeeded = (
            await session.execute(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.type == "refund.succeeded")
            )
        ).scalar()
        assert succeeded == 1
        assert (await check_books(session)).ok


@pytest.mark.slow
async def test_a_refused_usdt_payout_is_retried_once_across_a_crash(
    net: Localnet,
    settings: Settings,
    db: Database,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tmp_path: Path,
) -> None:
    """Our jetton wallet refuses the USDT transfer (0.015 TON attached, a new payee); the
    worker dies after booking the refused attempt and before re-queuing the payout (one
    transaction: nothing of it is kept). The restarted worker books it again from the chain,
    re-queues and pays with more TON: the payee gets the USDT once, the books balance."""
    from sqlalchemy import select

    from tonrail.payments.models import Attempt
    from tonrail.rails.ton.models import TonTransfer

    api = ToncenterTonApi(ToncenterClient([net.v2], [net.v3]))
    payee = Address((0, os.urandom(32)))
    hot = raw(net.genesis.wallet("hot").address)
    usdt_master = net.genesis.usdt_master.to_str()
    ours = await jetton_wallet_of(api, usdt_master, hot)
    ours_before = await jetton_balance(api, ours)
    r = await client.post(
        "/v1/payouts",
        json={
            "amount": "2.5",
            "asset": "USDT",
            "destination": payee.to_str(is_user_friendly=True, is_bounceable=False),
        },
        headers=auth,
    )
    pid = r.json()["id"]
    env = {
        **worker_env(net, settings, tmp_path, "ton.attach_refused_booked"),
        "TON_JETTON_ATTACH_NANOTON": "15000000",
        "FEES_JETTON_ATTACH_MIN_NANOTON": "15000000",
    }
    first = await run_worker(env, "ton_payouts")
    code = await asyncio.wait_for(first.wait(), timeout=60)
    assert code == -signal.SIGKILL, (await first.stderr.read()).decode()[-2000:]  # type: ignore[union-attr]
    async with db.transaction() as session:  # the crash left the refused attempt open
        [open_attempt] = (
            (await session.execute(select(Attempt).where(Attempt.payment_id == pid)))
            .scalars()
            .all()
        )
        assert open_attempt.status in ("submitted", "unknown")

    second = await run_worker({**env, "CRASH_AT": ""}, "ton_payouts")
    try:
        [paid] = await wait_final(client, auth, "/v1/payouts", [pid], {"succeeded", "failed"})
    finally:
        second.kill()
        await second.wait()
    assert paid["status"] == "succeeded", paid
    codes = [a["error_code"] for a in paid["attempts"]]
    assert codes[-1] is None and set(codes[:-1]) == {"jetton_attach_low"}
    theirs = await jetton_wallet_of(api, usdt_master, raw(payee))
    assert await jetton_balance(api, theirs) == 2_500_000
    assert ours_before - await jetton_balance(api, ours) == 2_500_000
    async with db.transaction() as session:
        attached = (
            (
                await session.execute(
                    select(TonTransfer.message_value)
                    .where(TonTransfer.payment_id == pid)
                    .order_by(TonTransfer.message_value)
                )
            )
            .scalars()
            .all()
        )
        assert list(attached) == [15_000_000 * 2**i for i in range(len(codes))]
        assert (await check_books(session)).ok
    await api.aclose()
