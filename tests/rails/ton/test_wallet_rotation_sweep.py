"""Hot wallet rotation, the sweep's harder paths, on the local network (both databases), with
the worker's loops driven in the test: a sweep the network drops expires, is proven
unprocessed and is signed again; the new wallet reconciles after the switch, also when a
deposit reaches the old address between the sweep's signing and its booking; a sweep the chain
does not execute as signed is booked as it happened and stops the command
(`wallet_rotation_sweep_failed`); a plain cancel is refused, the one two operators agree on
ends it (the other ways out: test_wallet_rotation_recovery.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from ton_core import Address
from tonutils.contracts import WalletV5R1

from tests.rails.ton.rail_fixture import Rail, settled
from tests.rails.ton.test_faults import faults
from tests.rails.ton.test_payouts import _opening_balances
from tests.rails.ton.test_wallet_rotation import PASSPHRASE, invoke, with_key, write_key
from tonrail import clock
from tonrail.db import Database
from tonrail.errors import Conflict
from tonrail.ledger import rules as books
from tonrail.ledger.models import JournalEntry
from tonrail.ledger.service import balance, balance_through, check_books
from tonrail.localnet.genesis import TON
from tonrail.processing import deposits
from tonrail.processing import wallet_rotation as rot
from tonrail.processing.deposits import watch_deposits
from tonrail.processing.reconcile import reconcile
from tonrail.processing.rotation_pause import signing_paused
from tonrail.processing.ton_loop import next_query_seq
from tonrail.processing.ton_runtime import adopt_rotated_wallet
from tonrail.rails.ton.api import jetton_balance, jetton_wallet_of
from tonrail.rails.ton.highload import (
    OutTransfer,
    comment_body,
    jetton_transfer,
    query_id_for,
    sign_request,
)
from tonrail.rails.ton.models import TonWalletCursor, TonWalletRotation
from tonrail.security.audit_log import recent, verify
from tonrail.settings import Settings, get_settings

ACTOR = "admin:test"


def rotation_settings(rail: Rail, tmp_path: Path) -> Settings:
    """The rail's settings with the hot wallet's key in a file and the running network."""
    hot = rail.net.genesis.wallet("hot")
    write_key(tmp_path / "hot_wallet.key", bytes.fromhex(hot.to_json()["private_key"]))
    return with_key(rail.ctx.settings, tmp_path).model_copy(
        update={
            "ton_api_url": rail.net.v2,
            "ton_api_v3_url": rail.net.v3,
            "usdt_jetton_master": rail.net.genesis.usdt_master.to_str(),
            "ton_expiry_margin_s": 2,
        }
    )


async def drained(db: Database, s: Settings) -> rot.RotationView:
    v = await rot.start(db, s, ACTOR)
    await rot.pause(db, s, v.id, ACTOR)
    return await rot.wait_drained(db, v.id, ACTOR, within_s=5)


async def row_of(db: Database, rotation_id: str) -> TonWalletRotation:
    async with db.transaction() as session:
        row = await session.get(TonWalletRotation, rotation_id)
    assert row is not None
    return row


async def finish_rotation(
    db: Database, s: Settings, w: rot.Wallets, v: rot.RotationView
) -> rot.RotationView:
    v = await rot.settle_sweep(db, s, w, v.id, ACTOR, within_s=60)
    assert v.state == "swept"
    v = await rot.confirm_deployed(db, w, v.id, ACTOR, within_s=60)
    return await rot.switch(db, s, w, v.id, ACTOR)


async def quiet_reconciliation(rail: Rail) -> dict[str, int]:
    """Reconcile at the next quiet point (every asset compared): chain minus books."""
    for _ in range(600):
        await watch_deposits(rail.ctx)
        result = await reconcile(rail.ctx)
        if result.checked and result.quiet:
            return result.differences
        await asyncio.sleep(0.05)
    raise AssertionError("the books never reached a quiet point")


async def books_and_chain(rail: Rail, db: Database, row: TonWalletRotation) -> tuple[dict, dict]:
    """Each wallet's books and its balances on chain (TON, USDT)."""
    master = rail.net.genesis.usdt_master.to_str()
    chain = {}
    for account, wallet in (
        (books.HOT_WALLET, row.new_wallet),
        (books.RETIRED_HOT_WALLETS, row.old_wallet),
    ):
        chain[(account, "TON")] = (await rail.api.account_state(wallet))[1]
        jetton = await jetton_wallet_of(rail.api, master, wallet)
        chain[(account, "USDT")] = await jetton_balance(rail.api, jetton)
    async with db.transaction() as session:
        assert (await check_books(session)).ok
        ledger = {key: await balance(session, *key) for key in chain}
    return ledger, chain


async def sweeps_on_chain(rail: Rail, row: TonWalletRotation) -> list[int]:
    """The values of the messages from the old wallet to the new one."""
    txs = await rail.api.account_transactions(row.new_wallet, 0, 100)
    return [
        t.in_msg.value for t in txs if t.in_msg is not None and t.in_msg.source == row.old_wallet
    ]


async def test_a_dropped_sweep_expires_unprocessed_and_is_signed_again_once(
    rail: Rail, db: Database, tmp_path: Path
) -> None:
    s = rotation_settings(rail, tmp_path)
    await _opening_balances(rail, db)
    v = await drained(db, s)
    assert v.state == "drained"
    w = await rot.open_wallets(s, v)
    try:
        await faults(rail, drop_external_rate=1.0)
        v = await rot.sign_sweep(db, s, w, v.id, ACTOR)
        first = await row_of(db, v.id)
        assert first.state == "sweep_signed" and first.sweep_query_id is not None
        with pytest.raises(Conflict) as pending:
            await rot.settle_sweep(db, s, w, v.id, ACTOR, within_s=2.5)
        assert pending.value.code == "wallet_rotation_sweep_pending"
        assert (await row_of(db, v.id)).sweep_send_count >= 2  # re-sent, and dropped
        # Two hours later on both clocks: past valid_until, never processed.
        later = datetime.now(UTC) + timedelta(hours=2)
        clock.set_clock(lambda: later + (datetime.now(UTC) - later + timedelta(hours=2)))
        await faults(rail, time_offset_s=7200)
        v = await rot.settle_sweep(db, s, w, v.id, ACTOR, within_s=30)
        assert v.state == "drained"
        expired = await row_of(db, v.id)
        assert expired.sweep_boc is None and expired.sweep_entry_id is None
        assert await rot._processed(w, first.sweep_query_id) is False

        await faults(rail, drop_external_rate=0.0)  # a partial update: the offset stays
        v = await rot.sign_sweep(db, s, w, v.id, ACTOR)
        second = await row_of(db, v.id)
        assert second.sweep_query_id != first.sweep_query_id
        assert second.sweep_msg_hash != first.sweep_msg_hash
        v = await finish_rotation(db, s, w, v)
        assert v.state == "switched"
        # The first sweep can never land now: its query id is past the wallet's timeout.
        await rot._send(w, str(first.sweep_boc))
        await asyncio.sleep(1)
    finally:
        await w.aclose()

    row = await row_of(db, v.id)
    assert await sweeps_on_chain(rail, row) == [row.sweep_ton]
    assert await rail.api.tx_by_in_message(str(first.sweep_msg_hash)) is None
    ledger, chain = await books_and_chain(rail, db, row)
    assert ledger == chain
    async with db.transaction() as session:
        assert (await verify(session)).ok
        entries = await recent(session, action_prefix="hot_wallet.")
    assert [e.action for e in reversed(entries)] == [
        "hot_wallet.rotation_created",
        "hot_wallet.rotation_paused",
        "hot_wallet.rotation_drained",
        "hot_wallet.sweep_signed",
        "hot_wallet.sweep_expired",
        "hot_wallet.sweep_signed",
        "hot_wallet.swept",
        "hot_wallet.rotation_deployed",
        "hot_wallet.rotation_switched",
    ]
    expired_entry = next(e for e in entries if e.action == "hot_wallet.sweep_expired")
    assert expired_entry.details["query_id"] == first.sweep_query_id

    # The worker adopts the new wallet; its reconciliation finds the books equal the chain.
    rail.ctx.settings = s
    assert await adopt_rotated_wallet(rail.ctx, row.id, row.new_public_key)
    assert rail.ctx.wallet_raw == row.new_wallet
    assert await quiet_reconciliation(rail) == {}


async def test_a_sweep_copy_refused_as_executed_ends_the_resending(
    rail: Rail, db: Database, tmp_path: Path
) -> None:
    """The sweep landed but the indexer does not show it yet: its re-sent copy, refused as
    already executed (exit code 36), ends the re-sending; the sweep is booked from the chain
    once the indexer shows it."""
    s = rotation_settings(rail, tmp_path).model_copy(update={"ton_resend_seconds": 1})
    await _opening_balances(rail, db)
    v = await drained(db, s)
    w = await rot.open_wallets(s, v)
    try:
        v = await rot.sign_sweep(db, s, w, v.id, ACTOR)
        await faults(rail, stall_blocks=True, index_lag_blocks=1)
        with pytest.raises(Conflict):  # sent once; no block takes it yet
            await rot.settle_sweep(db, s, w, v.id, ACTOR, within_s=0.1)
        await rail.net.chain.produce_block()  # it lands; the indexer lags one block behind
        row = await row_of(db, v.id)
        assert row.sweep_send_count == 1 and row.sweep_query_id is not None
        assert await rot._processed(w, row.sweep_query_id) is True
        assert await rail.api.tx_by_in_message(str(row.sweep_msg_hash)) is None
        with pytest.raises(Conflict):  # a copy goes out, is refused, and is the last one
            await rot.settle_sweep(db, s, w, v.id, ACTOR, within_s=3.5)
        assert (await row_of(db, v.id)).sweep_send_count == 2
        assert (await row_of(db, v.id)).sweep_landed_at is not None
        await faults(rail, stall_blocks=False, index_lag_blocks=0)
        v = await finish_rotation(db, s, w, v)
        assert v.state == "switched"
    finally:
        await w.aclose()
    row = await row_of(db, v.id)
    assert row.sweep_send_count == 2
    assert await sweeps_on_chain(rail, row) == [row.sweep_ton]
    ledger, chain = await books_and_chain(rail, db, row)
    assert ledger == chain
    async with db.transaction() as session:
        entries = await recent(session, action_prefix="hot_wallet.")
    assert [e.action for e in entries[:4]] == [
        "hot_wallet.rotation_switched",
        "hot_wallet.rotation_deployed",
        "hot_wallet.swept",
        "hot_wallet.sweep_signed",
    ]


async def send_ton(payer: WalletV5R1, to: str, amount: int) -> None:
    await payer.refresh()
    [seqno] = await payer.run_get_method("seqno") if payer.is_active else [0]
    await payer.transfer(Address(to), amount, bounce=False)
    await settled(payer, int(seqno))


async def test_the_new_wallet_reconciles_after_a_deposit_to_the_old_one_during_the_sweep(
    rail: Rail, db: Database, tmp_path: Path, payer: WalletV5R1
) -> None:
    """The deposit lands after the sweep deployed the new wallet and is booked (on the hot
    wallet's account: the sweep is not booked yet) before the sweep is: the sweep moves it to
    the retired wallets, and the new wallet's reconciliation, at an lt below the deposit's,
    must not count the deposit's entry out while counting the sweep's in."""
    s = rotation_settings(rail, tmp_path)
    await _opening_balances(rail, db)
    v = await drained(db, s)
    w = await rot.open_wallets(s, v)
    try:
        v = await rot.sign_sweep(db, s, w, v.id, ACTOR)
        row = await row_of(db, v.id)
        await rot._send(w, str(row.sweep_boc))
        for _ in range(1200):  # the sweep's trace, to the new wallet's deployment
            if (await rail.api.account_state(row.new_wallet))[0] == "active":
                break
            await asyncio.sleep(0.05)
        assert (await rail.api.account_state(row.new_wallet))[0] == "active"
        await send_ton(payer, row.old_wallet, 3 * TON)
        # The watcher books the deposit before the command books the sweep.
        for _ in range(600):
            await watch_deposits(rail.ctx)
            async with db.transaction() as session:
                if (
                    await balance(session, books.HOT_WALLET, "TON") > 0
                    and (await rail.api.last_lt(row.old_wallet))
                    == (await session.get(TonWalletCursor, row.old_wallet)).last_lt
                ):
                    break
            await asyncio.sleep(0.05)
        v = await finish_rotation(db, s, w, v)
        assert v.state == "switched"
    finally:
        await w.aclose()

    row = await row_of(db, v.id)
    ledger, chain = await books_and_chain(rail, db, row)
    assert ledger == chain
    deposit_lt = await rail.api.last_lt(row.old_wallet)
    async with db.transaction() as session:
        late = (
            await session.execute(
                select(JournalEntry).where(JournalEntry.kind == "hot_wallet.swept_late")
            )
        ).scalar_one()
        late_ton = await balance_through(
            session, books.RETIRED_HOT_WALLETS, "TON", deposit_lt
        ) - await balance_through(session, books.RETIRED_HOT_WALLETS, "TON", deposit_lt - 1)
    # The deposit moved to the retired wallets in an entry of its own lt.
    assert (late.chain_first_lt, late.chain_lt) == (deposit_lt, deposit_lt)
    assert 0 < late_ton <= 3 * TON
    rail.ctx.settings = s
    assert await adopt_rotated_wallet(rail.ctx, row.id, row.new_public_key)
    # Nothing happened on the new wallet since its deployment: the reconciler compares at
    # the deployment's lt, below the deposit's on the old wallet.
    result = await reconcile(rail.ctx)
    assert result.checked, result.reason
    assert result.lt is not None and result.lt < deposit_lt
    assert result.differences == {}, result
    assert await quiet_reconciliation(rail) == {}


async def test_a_sweep_the_chain_does_not_execute_is_booked_as_it_happened_then_canceled(
    rail: Rail,
    db: Database,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between the sweep's signing and its landing, someone holding the old key (what a
    rotation runs from) spends the old wallet's TON and USDT: the sweep's transfers cannot
    leave. The command books what the sweep did (its fees: nothing reached the new wallet),
    moves to `sweep_failed` and stops with `wallet_rotation_sweep_failed`; --resume reports
    the same without booking again, a plain --cancel is refused; the cancel one operator asks
    for (`--recover cancel`) and another approves ends the rotation: the old wallet signs
    again. The stray transfer itself stays out of the books (the incident to investigate)."""
    s = rotation_settings(rail, tmp_path)
    await _opening_balances(rail, db)
    v = await drained(db, s)
    w = await rot.open_wallets(s, v)
    try:
        v = await rot.sign_sweep(db, s, w, v.id, ACTOR)
        signed = await row_of(db, v.id)
        assert signed.sweep_ton and signed.sweep_usdt and w.old_jetton
        old_state, held = await rail.api.account_state(signed.old_wallet)
        async with db.transaction() as session:
            seq = await next_query_seq(session, signed.old_wallet)
        customer = rail.net.genesis.wallet("customer").address
        stray = sign_request(
            w.old,
            rail.ctx.sign,
            [
                OutTransfer(customer, held - TON, False, comment_body("stray")),
                jetton_transfer(
                    Address(w.old_jetton),
                    customer,
                    signed.sweep_usdt,
                    attach_ton=50_000_000,
                    forward_ton=0,
                    response=w.old.address,
                    query_id=7,
                    comment="",
                ),
            ],
            query_id=query_id_for(seq),
            created_at=int(clock.now().timestamp()) - 30,
            deploy=old_state != "active",
        )
        await rot._send(w, stray.boc)
        for _ in range(1200):
            if await rail.api.tx_by_in_message(stray.message_hash_norm) is not None:
                break
            await asyncio.sleep(0.05)
        assert await rail.api.tx_by_in_message(stray.message_hash_norm) is not None
    finally:
        await w.aclose()
    async with db.transaction() as session:
        books_before = await check_books(session)
    env = {
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": database_url,
        "TON_KEY_PASSPHRASE": PASSPHRASE,
        "TON_NETWORK": "localnet",
        "TON_API_URL": rail.net.v2,
        "TON_API_V3_URL": rail.net.v3,
        "USDT_JETTON_MASTER": rail.net.genesis.usdt_master.to_str(),
        "TON_MASTER_KEY_FILE": str(tmp_path / "hot_wallet.key"),
        "TON_RESEND_SECONDS": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("TON_MASTER_KEY", "TON_KEY_KMS_KEY_ID", "CRASH_AT"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        failed = [
            await asyncio.to_thread(invoke, ["--resume", "--wait-seconds", "60"]) for _ in (1, 2)
        ]
        refused = await asyncio.to_thread(invoke, ["--cancel", "the sweep failed"])
        after = await row_of(db, v.id)
        async with db.transaction() as session:
            books_failed = await check_books(session)
        asked = await asyncio.to_thread(
            invoke, ["--recover", "cancel", "--reason", "old key exposed", "--actor", "alice"]
        )
        approved = await asyncio.to_thread(
            invoke, ["--approve-recovery", "cancel", "--actor", "bob"]
        )
    finally:
        get_settings.cache_clear()
    message = (
        f"error: rotation {v.id}: the sweep failed (the TON transfer to the new wallet did not "
        "leave; the USDT transfer failed: our jetton wallet bounced the transfer (balance?)); "
        "what it did is booked (hot_wallet.sweep_failed)"
    )
    for result in failed:
        assert result.exit_code == 2, result.output
        out = result.output.replace("\n", " ")
        assert message in out and "(wallet_rotation_sweep_failed)" in out
    assert refused.exit_code == 2
    assert "wallet_rotation_not_cancelable" in refused.output
    assert "--recover cancel" in refused.output.replace("\n", " ")

    # The sweep's external was taken (its query id is spent), its transfers did not leave:
    # booked once, its fees only.
    assert after.state == "sweep_failed" and after.open_marker == "open"
    assert after.sweep_msg_hash == signed.sweep_msg_hash and after.sweep_entry_id is not None
    assert after.sweep_fee and after.sweep_fee > 0
    assert await rail.api.tx_by_in_message(str(signed.sweep_msg_hash)) is not None
    assert await sweeps_on_chain(rail, after) == []
    assert (await rail.api.account_state(after.new_wallet))[0] != "active"
    assert books_failed.ok
    changed = {
        key: books_failed.balances.get(key, 0) - books_before.balances.get(key, 0)
        for key in {*books_failed.balances, *books_before.balances}
    }
    assert {k: d for k, d in changed.items() if d} == {
        (books.HOT_WALLET, "TON"): -after.sweep_fee,
        (books.NETWORK_FEES, "TON"): after.sweep_fee,
    }
    # The stray transfer is not ours to book: the books still hold the USDT it took.
    async with db.transaction() as session:
        assert await balance(session, books.HOT_WALLET, "USDT") == signed.sweep_usdt
    assert await jetton_balance(rail.api, str(w.old_jetton)) == 0

    assert asked.exit_code == 0, asked.output
    assert approved.exit_code == 0, approved.output
    assert "canceled" in approved.output
    canceled = await row_of(db, v.id)
    assert canceled.state == "canceled" and canceled.open_marker is None
    assert not await asyncio.to_thread((tmp_path / "hot_wallet.key.next").exists)
    async with db.transaction() as session:
        assert await signing_paused(session, canceled.old_wallet) is None  # signs again
        assert (await check_books(session)).balances == books_failed.balances
        assert (await verify(session)).ok
        entries = await recent(session, action_prefix="hot_wallet.")
    assert [e.action for e in entries[:4]] == [
        "hot_wallet.recovery_approved",
        "hot_wallet.recovery_requested",
        "hot_wallet.sweep_failed",
        "hot_wallet.sweep_signed",
    ]


async def test_a_deposit_the_watcher_is_booking_while_the_sweep_is_booked_lands_on_one_side(
    rail: Rail, db: Database, tmp_path: Path, payer: WalletV5R1
) -> None:
    """The deposit watcher has decided where a deposit to the old address goes (the hot
    wallet's account: the sweep is not booked) and has not committed when the command books
    the sweep: the sweep must count the deposit (or the watcher must see the sweep), never
    neither; else the new wallet's books keep a deposit that stayed on the old address."""
    s = rotation_settings(rail, tmp_path)
    await _opening_balances(rail, db)
    v = await drained(db, s)
    w = await rot.open_wallets(s, v)
    real_holder = deposits._holder
    try:
        v = await rot.sign_sweep(db, s, w, v.id, ACTOR)
        row = await row_of(db, v.id)
        await rot._send(w, str(row.sweep_boc))
        for _ in range(1200):
            if (await rail.api.account_state(row.new_wallet))[0] == "active":
                break
            await asyncio.sleep(0.05)
        await send_ton(payer, row.old_wallet, 3 * TON)
        deciding = asyncio.Event()

        async def slow_holder(
            session: AsyncSession, wallet: str, cursor: TonWalletCursor | None
        ) -> str:
            holder = await real_holder(session, wallet, cursor)
            if wallet == row.old_wallet:
                deciding.set()
                await asyncio.sleep(3)  # the watcher's transaction stays open meanwhile
            return holder

        deposits._holder = slow_holder  # type: ignore[assignment]
        watcher = asyncio.create_task(watch_deposits(rail.ctx))
        await asyncio.wait_for(deciding.wait(), 60)
        v = await finish_rotation(db, s, w, v)
        assert await watcher == 1
        assert v.state == "switched"
    finally:
        deposits._holder = real_holder  # type: ignore[assignment]
        await w.aclose()
    row = await row_of(db, v.id)
    ledger, chain = await books_and_chain(rail, db, row)
    assert ledger == chain
