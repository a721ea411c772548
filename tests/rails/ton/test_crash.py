"""Crash tests: the worker is SIGKILLed at each step of the payout and deposit paths, then
restarted; every payment must end paid exactly once, with the books balanced."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from ton_core import Address

from tests.crash_support import (
    crash,
    crashed_and_restarted,
    net,
    running_worker,
    wait_final,
    worker_env,
)
from tests.tonnet import Localnet
from tonrail.db import Database
from tonrail.ledger.service import check_books
from tonrail.rails.ton.api import ToncenterTonApi, jetton_balance, jetton_wallet_of
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.settings import Settings

__all__ = ["net"]  # fixture, used by name


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
    async with crashed_and_restarted(env, "ton_payouts"):
        final = await wait_final(client, auth, "/v1/payouts", ids, {"succeeded", "failed"})
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
    from tests.crash_support import pay_hot_wallet
    from tonrail.localnet.genesis import TON

    inv = (
        await client.post("/v1/invoices", json={"amount": "2", "asset": "TON"}, headers=auth)
    ).json()
    await pay_hot_wallet(net, ("crash", "payer"), 2 * TON, inv["reference"])

    env = worker_env(net, settings, tmp_path, "ton.deposit_before_commit")
    async with crashed_and_restarted(env, "ton_deposits"):
        [paid] = await wait_final(client, auth, "/v1/invoices", [inv["id"]], {"succeeded"})
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
    from tests.crash_support import deployed_payer
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
    async with crashed_and_restarted(env, "ton_payouts"):
        [done] = await wait_final(
            client, auth, "/v1/refunds", [refund["id"]], {"succeeded", "failed"}
        )
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
    await crash(env, "ton_payouts")
    async with db.transaction() as session:  # the crash left the refused attempt open
        [open_attempt] = (
            (await session.execute(select(Attempt).where(Attempt.payment_id == pid)))
            .scalars()
            .all()
        )
        assert open_attempt.status in ("submitted", "unknown")

    async with running_worker({**env, "CRASH_AT": ""}, "ton_payouts"):
        [paid] = await wait_final(client, auth, "/v1/payouts", [pid], {"succeeded", "failed"})
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
