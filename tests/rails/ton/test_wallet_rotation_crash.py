"""Hot wallet rotation end to end on the local network, with a real worker running: the
command is SIGKILLed after each step (new wallet created, old one paused, sweep signed and
not sent, sent and not confirmed, booked, switched) and rerun with --resume. Every time the
sweep lands exactly once, the new wallet is deployed by it, the worker adopts the new key and
pays the payout queued during the rotation, and the books match the new wallet's balances."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.crash_support import TONRAIL, net, running_worker, wait_final, worker_env
from tests.tonnet import Localnet
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.processing.wallet_rotation import CONFIRMATION
from tonrail.rails.ton import keys
from tonrail.rails.ton.api import ToncenterTonApi, jetton_balance, jetton_wallet_of
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.models import TonWalletRotation
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.security.audit_log import recent, verify
from tonrail.settings import Settings

__all__ = ["net"]  # fixture, used by name


async def rotate(env: dict[str, str], *args: str) -> tuple[int | None, str]:
    proc = await asyncio.create_subprocess_exec(
        TONRAIL,
        "keys",
        "rotate-wallet",
        *args,
        "--wait-seconds",
        "90",
        env=env,
        cwd=env["DATA_DIR"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    return proc.returncode, out.decode()


async def pay(client: httpx.AsyncClient, auth: dict[str, str], net: Localnet, amount: str) -> str:
    payee = net.genesis.wallet("customer").address.to_str(
        is_user_friendly=True, is_bounceable=False
    )
    r = await client.post(
        "/v1/payouts",
        json={"amount": amount, "asset": "TON", "destination": payee},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def key_file_public_key(path: Path) -> str:
    return keys.envelope_public_key(path.read_text().strip()).hex()


@pytest.mark.slow
@pytest.mark.parametrize(
    "crash_at",
    [
        "",
        "rotation.after_create",
        "rotation.after_pause",
        "rotation.after_sweep_signed",
        "rotation.after_sweep_sent",
        "rotation.after_swept",
        "rotation.after_switch",
    ],
)
async def test_a_rotation_sweeps_once_and_switches_across_crashes(
    net: Localnet,
    settings: Settings,
    db: Database,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tmp_path: Path,
    crash_at: str,
) -> None:
    api = ToncenterTonApi(ToncenterClient([net.v2], [net.v3]))
    master = net.genesis.usdt_master.to_str()
    old = raw(net.genesis.wallet("hot").address)
    old_jetton = await jetton_wallet_of(api, master, old)
    usdt_held = await jetton_balance(api, old_jetton)
    assert usdt_held > 0
    env = worker_env(net, settings, tmp_path, "")
    env["TON_EXPIRY_MARGIN_S"] = "2"
    async with running_worker(env, "ton_payouts"):
        before = await pay(client, auth, net, "1")
        code, out = await rotate({**env, "CRASH_AT": crash_at}, "--confirm", CONFIRMATION)
        if crash_at:
            assert code == -signal.SIGKILL, out
            during = await pay(client, auth, net, "2")
            code, out = await rotate(env, "--resume")
        else:
            during = await pay(client, auth, net, "2")
        assert code == 0, out
        assert "switched" in out
        final = await wait_final(client, auth, "/v1/payouts", [before, during], {"succeeded"})
    assert [p["status"] for p in final] == ["succeeded", "succeeded"]

    async with db.transaction() as session:
        [row] = (await session.execute(select(TonWalletRotation))).scalars().all()
    assert row.state == "switched" and row.open_marker is None
    new = row.new_wallet
    # The key file holds the new wallet's key; the old one is kept beside it; no .next left.
    key_file = tmp_path / "hot_wallet.key"
    assert key_file_public_key(key_file) == row.new_public_key
    retired = tmp_path / f"hot_wallet.key.retired-{row.old_public_key[:16]}"
    assert key_file_public_key(retired) == row.old_public_key
    assert not (tmp_path / "hot_wallet.key.next").exists()

    # Exactly one sweep: one message from the old wallet to the new one, which deployed it.
    new_txs = await api.account_transactions(new, 0, 100)
    from_old = [t for t in new_txs if t.in_msg is not None and t.in_msg.source == old]
    assert len(from_old) == 1 and from_old[0].in_msg is not None
    assert from_old[0].in_msg.value == row.sweep_ton
    state, new_ton = await api.account_state(new)
    assert state == "active"
    new_jetton = await jetton_wallet_of(api, master, new)
    assert await jetton_balance(api, new_jetton) == usdt_held == row.sweep_usdt
    assert await jetton_balance(api, old_jetton) == 0
    # Each payout reached the customer once.
    customer = raw(net.genesis.wallet("customer").address)
    paid = {
        (t.in_msg.comment, t.in_msg.source)
        for t in await api.account_transactions(customer, 0, 100)
        if t.in_msg is not None and t.in_msg.comment in (before, during)
    }
    assert len(paid) == 2 and {c for c, _ in paid} == {before, during}
    if crash_at != "rotation.after_create":
        # Queued while the old wallet was paused: paid by the new one.
        assert (during, new) in paid

    async with db.transaction() as session:
        assert (await check_books(session)).ok
        # The books of the hot wallet are the new wallet's balances, to the nanoton.
        assert await balance(session, books.HOT_WALLET, "USDT") == usdt_held
        ledger_ton = await balance(session, books.HOT_WALLET, "TON")
        assert (await verify(session)).ok
        entries = await recent(session, action_prefix="hot_wallet.")
    assert ledger_ton == new_ton
    actions = [e.action for e in reversed(entries)]
    assert actions == [
        "hot_wallet.rotation_created",
        "hot_wallet.rotation_paused",
        "hot_wallet.rotation_drained",
        "hot_wallet.sweep_signed",
        "hot_wallet.swept",
        "hot_wallet.rotation_deployed",
        "hot_wallet.rotation_switched",
    ]
    await api.aclose()


@pytest.mark.slow
async def test_late_deposits_to_the_old_address_are_credited_and_booked_where_they_are(
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

    from tests.crash_support import deployed_payer
    from tonrail.localnet.genesis import TON, derive_key
    from tonrail.processing.resolutions import book_opening_balance
    from tonrail.rails.ton.models import TonDeposit, TonWalletCursor

    api = ToncenterTonApi(ToncenterClient([net.v2], [net.v3]))
    master = net.genesis.usdt_master.to_str()
    old = raw(net.genesis.wallet("hot").address)
    old_jetton = await jetton_wallet_of(api, master, old)
    # The genesis TON reached the hot wallet in a message the deposit watcher books; its USDT
    # was minted without a notification: booked by hand, as the runbook's opening balance.
    held_usdt = await jetton_balance(api, old_jetton)
    async with db.transaction() as session:
        await book_opening_balance(session, "USDT", held_usdt, "admin:test", "genesis")
    env = worker_env(net, settings, tmp_path, "")
    async with running_worker(env, "ton_payouts,ton_deposits"):
        await deployed_payer(net, "late")  # also a deposit (0.1 TON, unmatched) to the old wallet
        code, out = await rotate(env, "--confirm", CONFIRMATION)
        assert code == 0 and "switched" in out, out
        invoice = (
            await client.post("/v1/invoices", json={"amount": "2", "asset": "TON"}, headers=auth)
        ).json()
        tc = TonutilsClient(NetworkGlobalID.MAINNET, base_url=net.v2, api_key="x", rps_limit=1000)
        await tc.connect()
        payer = WalletV5R1.from_private_key(tc, PrivateKey(bytes(derive_key("crash", "late"))))
        await payer.transfer(
            net.genesis.wallet("hot").address, 2 * TON, body=invoice["reference"], bounce=False
        )
        await tc.close()
        [paid] = await wait_final(client, auth, "/v1/invoices", [invoice["id"]], {"succeeded"})
        assert paid["status"] == "succeeded"
        # The watcher has read the old address to its last transaction.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            async with db.transaction() as session:
                cursor = await session.get(TonWalletCursor, old)
            if cursor is not None and cursor.last_lt == await api.last_lt(old):
                break
            assert loop.time() < deadline
            await asyncio.sleep(0.1)
    async with db.transaction() as session:
        [row] = (await session.execute(select(TonWalletRotation))).scalars().all()
        deposit = (
            await session.execute(select(TonDeposit).where(TonDeposit.payment_id == invoice["id"]))
        ).scalar_one()
        assert (await check_books(session)).ok
        ledger = {
            (account, asset): await balance(session, account, asset)
            for account in (books.HOT_WALLET, books.RETIRED_HOT_WALLETS)
            for asset in ("TON", "USDT")
        }
    assert deposit.wallet == old and deposit.status == "credited"
    new_jetton = await jetton_wallet_of(api, master, row.new_wallet)
    # Each wallet's books equal its balances on chain, to the nanoton.
    assert ledger == {
        (books.HOT_WALLET, "TON"): (await api.account_state(row.new_wallet))[1],
        (books.HOT_WALLET, "USDT"): await jetton_balance(api, new_jetton),
        (books.RETIRED_HOT_WALLETS, "TON"): (await api.account_state(old))[1],
        (books.RETIRED_HOT_WALLETS, "USDT"): await jetton_balance(api, old_jetton),
    }
    await api.aclose()
