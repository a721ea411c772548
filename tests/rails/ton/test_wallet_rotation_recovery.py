"""Hot wallet rotation, a sweep that fails on chain and the ways out of it
(processing/rotation_recovery.py), on the local network with the real TVM (both databases).

The failures are the chain's own: a sweep signed for more TON than the old wallet holds when
it lands (the highload wallet skips that transfer: send mode +2) and a USDT transfer with too
little TON attached (the old wallet's jetton wallet refuses it and bounces the TON back). The
failed sweep is booked as it happened, once; the books equal both wallets' balances after it,
and after each way out: a new sweep, the switch leaving the rest on the old address, and (in
test_wallet_rotation_sweep.py) the cancel. The expiry of a new sweep to a new wallet the failed
one already deployed is here too."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from tonutils.contracts import WalletV5R1

from tests.rails.ton.rail_fixture import Rail
from tests.rails.ton.test_faults import faults
from tests.rails.ton.test_payouts import _opening_balances
from tests.rails.ton.test_wallet_rotation import PASSPHRASE, invoke
from tests.rails.ton.test_wallet_rotation_crash import rotate
from tests.rails.ton.test_wallet_rotation_sweep import (
    ACTOR,
    books_and_chain,
    drained,
    finish_rotation,
    quiet_reconciliation,
    rotation_settings,
    row_of,
    send_ton,
    sweeps_on_chain,
)
from tonrail import clock
from tonrail.db import Database
from tonrail.errors import Conflict, IllegalTransition, PermissionDenied
from tonrail.ledger import rules as books
from tonrail.ledger.models import JournalEntry
from tonrail.ledger.service import balance, check_books
from tonrail.localnet.genesis import TON
from tonrail.processing import rotation_recovery as recovery
from tonrail.processing import wallet_rotation as rot
from tonrail.processing.deposits import watch_deposits
from tonrail.processing.ton_runtime import adopt_rotated_wallet
from tonrail.rails.ton.api import jetton_balance, jetton_wallet_of
from tonrail.rails.ton.models import TonWalletCursor, TonWalletRotation
from tonrail.rails.ton.states import SweepRecovery
from tonrail.security.audit_log import recent, verify
from tonrail.settings import Settings, get_settings

OTHER = "admin:second-operator"
# Below what the old wallet's jetton wallet asks to be attached: it refuses the transfer.
TOO_LITTLE_ATTACHED = 10_000_000


def failing(monkeypatch: pytest.MonkeyPatch, *, ton: bool, usdt: bool) -> None:
    """The next sweep signed fails on chain: its TON transfer asks for more than the old
    wallet holds (`ton`), its USDT transfer carries too little TON (`usdt`)."""
    if ton:
        monkeypatch.setattr(rot, "SWEEP_KEEP_NANOTON", -5 * TON)
    if usdt:
        monkeypatch.setattr(rot, "SWEEP_JETTON_ATTACH_NANOTON", TOO_LITTLE_ATTACHED)


async def before_switch(rail: Rail, db: Database, row: TonWalletRotation) -> tuple[dict, dict]:
    """While the old wallet is still the hot wallet: its books and the new wallet's
    (`asset:next_hot_wallet`) against their balances on chain."""
    master = rail.net.genesis.usdt_master.to_str()
    chain = {}
    for account, wallet in (
        (books.HOT_WALLET, row.old_wallet),
        (books.NEXT_HOT_WALLET, row.new_wallet),
    ):
        chain[(account, "TON")] = (await rail.api.account_state(wallet))[1]
        jetton = await jetton_wallet_of(rail.api, master, wallet)
        chain[(account, "USDT")] = await jetton_balance(rail.api, jetton)
    async with db.transaction() as session:
        assert (await check_books(session)).ok
        ledger = {key: await balance(session, *key) for key in chain}
    return ledger, chain


async def entries_of(db: Database, kind: str) -> list[JournalEntry]:
    async with db.transaction() as session:
        return list(
            (await session.execute(select(JournalEntry).where(JournalEntry.kind == kind))).scalars()
        )


async def actions(db: Database) -> list[str]:
    async with db.transaction() as session:
        assert (await verify(session)).ok
        entries = await recent(session, action_prefix="hot_wallet.")
    return [e.action for e in reversed(entries)]


async def failed_sweep(
    rail: Rail, db: Database, s: Settings, w: rot.Wallets, v: rot.RotationView
) -> rot.RotationView:
    v = await rot.sign_sweep(db, s, w, v.id, ACTOR)
    v = await rot.settle_sweep(db, s, w, v.id, ACTOR, within_s=60)
    assert v.state == "sweep_failed", v
    # Read again: the booking is not repeated.
    again = await rot.settle_sweep(db, s, w, v.id, ACTOR, within_s=5)
    assert again.state == "sweep_failed"
    assert len(await entries_of(db, "hot_wallet.sweep_failed")) == 1
    return v


async def test_a_sweep_where_nothing_left_is_booked_then_swept_again_once(
    rail: Rail, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = rotation_settings(rail, tmp_path)
    await _opening_balances(rail, db)
    v = await drained(db, s)
    w = await rot.open_wallets(s, v)
    try:
        with monkeypatch.context() as mp:
            failing(mp, ton=True, usdt=True)
            v = await failed_sweep(rail, db, s, w, v)
        failed = await row_of(db, v.id)
        assert failed.error == (
            "the TON transfer to the new wallet did not leave; the USDT transfer failed: "
            "our jetton wallet bounced the transfer (balance?)"
        )
        assert failed.sweep_fee and failed.sweep_fee > 0
        # Nothing reached the new wallet; the fees left the old one; books equal the chain.
        ledger, chain = await before_switch(rail, db, failed)
        assert ledger == chain
        assert chain[(books.NEXT_HOT_WALLET, "TON")] == 0
        [entry] = await entries_of(db, "hot_wallet.sweep_failed")
        assert entry.id == failed.sweep_entry_id
        async with db.transaction() as session:
            assert await balance(session, books.NEXT_HOT_WALLET, "TON") == 0

        # Resume and a plain cancel do not get past it; a way out needs two operators.
        with pytest.raises(IllegalTransition) as refused:
            await rot.cancel(db, ACTOR, "give up")
        assert refused.value.code == "wallet_rotation_not_cancelable"
        with pytest.raises(Conflict) as none_asked:
            await recovery.approve(db, s, OTHER, SweepRecovery.RESWEEP)
        assert none_asked.value.code == "wallet_rotation_no_recovery_requested"
        with pytest.raises(Conflict) as not_deployed:
            await recovery.request(db, ACTOR, SweepRecovery.SWITCH, "keep the rest")
        assert not_deployed.value.code == "wallet_rotation_new_wallet_not_funded"
        await recovery.request(db, ACTOR, SweepRecovery.RESWEEP, "fees were too low")
        with pytest.raises(PermissionDenied) as self_approved:
            await recovery.approve(db, s, ACTOR, SweepRecovery.RESWEEP)
        assert self_approved.value.code == "approver_is_requester"
        with pytest.raises(Conflict) as mismatch:
            await recovery.approve(db, s, OTHER, SweepRecovery.CANCEL)
        assert mismatch.value.code == "wallet_rotation_recovery_mismatch"
        assert (await row_of(db, v.id)).state == "sweep_failed"

        v = await recovery.approve(db, s, OTHER, SweepRecovery.RESWEEP)
        assert v.state == "drained"
        with pytest.raises(IllegalTransition):
            await recovery.approve(db, s, OTHER, SweepRecovery.RESWEEP)  # taken once
        v = await rot.sign_sweep(db, s, w, v.id, ACTOR)
        second = await row_of(db, v.id)
        assert second.sweep_query_id != failed.sweep_query_id
        v = await finish_rotation(db, s, w, v)
        assert v.state == "switched"
    finally:
        await w.aclose()

    row = await row_of(db, v.id)
    assert await sweeps_on_chain(rail, row) == [row.sweep_ton]  # the second sweep only
    ledger, chain = await books_and_chain(rail, db, row)
    assert ledger == chain
    async with db.transaction() as session:
        assert await balance(session, books.NEXT_HOT_WALLET, "TON") == 0
        assert await balance(session, books.NEXT_HOT_WALLET, "USDT") == 0
    assert await actions(db) == [
        "hot_wallet.rotation_created",
        "hot_wallet.rotation_paused",
        "hot_wallet.rotation_drained",
        "hot_wallet.sweep_signed",
        "hot_wallet.sweep_failed",
        "hot_wallet.recovery_requested",
        "hot_wallet.recovery_approved",
        "hot_wallet.sweep_signed",
        "hot_wallet.swept",
        "hot_wallet.rotation_deployed",
        "hot_wallet.rotation_switched",
    ]
    rail.ctx.settings = s
    assert await adopt_rotated_wallet(rail.ctx, row.id, row.new_public_key)
    assert await quiet_reconciliation(rail) == {}


def cli_env(rail: Rail, tmp_path: Path, database_url: str, mp: pytest.MonkeyPatch) -> None:
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
        mp.setenv(name, value)
    for name in ("TON_MASTER_KEY", "TON_KEY_KMS_KEY_ID", "CRASH_AT"):
        mp.delenv(name, raising=False)
    get_settings.cache_clear()


async def test_a_partial_sweep_ton_landed_usdt_refused_then_switch_without_the_rest(
    rail: Rail,
    db: Database,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The TON lands (and deploys the new wallet), the USDT transfer is refused: booked as
    such; the operators switch without sweeping the USDT, which stays on the old address,
    booked on the retired wallets. Through the command, as operators run it."""
    s = rotation_settings(rail, tmp_path)
    await _opening_balances(rail, db)
    v = await drained(db, s)
    w = await rot.open_wallets(s, v)
    try:
        with monkeypatch.context() as mp:
            failing(mp, ton=False, usdt=True)
            v = await rot.sign_sweep(db, s, w, v.id, ACTOR)
    finally:
        await w.aclose()
    signed = await row_of(db, v.id)
    assert signed.sweep_ton and signed.sweep_usdt
    with monkeypatch.context() as mp:
        cli_env(rail, tmp_path, database_url, mp)
        try:
            stopped = [
                await asyncio.to_thread(invoke, ["--resume", "--wait-seconds", "60"])
                for _ in (1, 2)
            ]
            cancel = await asyncio.to_thread(
                invoke, ["--recover", "cancel", "--reason", "x", "--actor", "alice"]
            )
            no_reason = await asyncio.to_thread(invoke, ["--recover", "switch"])
            asked = await asyncio.to_thread(
                invoke, ["--recover", "switch", "--reason", "USDT refused", "--actor", "alice"]
            )
            self_approved = await asyncio.to_thread(
                invoke, ["--approve-recovery", "switch", "--actor", "alice"]
            )
            failed = await row_of(db, v.id)
            ledger, chain = await before_switch(rail, db, failed)
            approved = await asyncio.to_thread(
                invoke,
                ["--approve-recovery", "switch", "--actor", "bob", "--wait-seconds", "60"],
            )
        finally:
            get_settings.cache_clear()
    for result in stopped:
        assert result.exit_code == 2, result.output
        out = result.output.replace("\n", " ")
        assert "the USDT transfer failed: our jetton wallet bounced" in out
        assert "(wallet_rotation_sweep_failed)" in out and "--recover" in out
    assert cancel.exit_code == 2 and "wallet_rotation_new_wallet_funded" in cancel.output
    assert no_reason.exit_code == 2 and "say why" in no_reason.output
    assert asked.exit_code == 0, asked.output
    assert "--approve-recovery switch" in asked.output
    assert self_approved.exit_code == 2
    assert "approver_is_requester" in self_approved.output
    assert approved.exit_code == 0, approved.output
    assert "switched" in approved.output

    # Booked as it happened: the TON on the new wallet, the USDT still on the old one.
    assert failed.state == "sweep_failed" and failed.error is not None
    assert ledger == chain
    assert chain[(books.NEXT_HOT_WALLET, "TON")] > 0
    assert chain[(books.NEXT_HOT_WALLET, "USDT")] == 0
    assert chain[(books.HOT_WALLET, "USDT")] == signed.sweep_usdt

    row = await row_of(db, v.id)
    assert row.state == "switched" and row.recovery is None
    assert await sweeps_on_chain(rail, row) == [signed.sweep_ton]  # the failed sweep's only
    ledger, chain = await books_and_chain(rail, db, row)
    assert ledger == chain
    assert ledger[(books.RETIRED_HOT_WALLETS, "USDT")] == signed.sweep_usdt
    assert ledger[(books.HOT_WALLET, "USDT")] == 0
    [moved] = await entries_of(db, "hot_wallet.retired_unswept")
    assert moved.id == row.sweep_entry_id
    assert await actions(db) == [
        "hot_wallet.rotation_created",
        "hot_wallet.rotation_paused",
        "hot_wallet.rotation_drained",
        "hot_wallet.sweep_signed",
        "hot_wallet.sweep_failed",
        "hot_wallet.recovery_requested",
        "hot_wallet.recovery_approved",
        "hot_wallet.rotation_deployed",
        "hot_wallet.rotation_switched",
    ]
    async with db.transaction() as session:
        [approval] = await recent(session, action_prefix="hot_wallet.recovery_approved")
    assert approval.actor == "admin:bob"
    assert approval.details["requested_by"] == "admin:alice"
    assert approval.details["journal_entry"] == moved.id
    rail.ctx.settings = s
    assert await adopt_rotated_wallet(rail.ctx, row.id, row.new_public_key)
    assert await quiet_reconciliation(rail) == {}


async def test_a_new_sweep_to_an_already_deployed_new_wallet_expires_and_is_signed_again(
    rail: Rail, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payer: WalletV5R1
) -> None:
    """A failed sweep deployed the new wallet (its TON landed, its USDT was refused); the
    new sweep the operators approved is dropped by the network, expires unprocessed, goes
    back to `drained` and is signed again: one sweep of each lands, the books hold."""
    s = rotation_settings(rail, tmp_path)
    await _opening_balances(rail, db)
    v = await drained(db, s)
    w = await rot.open_wallets(s, v)
    try:
        with monkeypatch.context() as mp:
            failing(mp, ton=False, usdt=True)
            v = await failed_sweep(rail, db, s, w, v)
        first = await row_of(db, v.id)
        assert (await rail.api.account_state(first.new_wallet))[0] == "active"
        await recovery.request(db, ACTOR, SweepRecovery.RESWEEP, "USDT refused")
        v = await recovery.approve(db, s, OTHER, SweepRecovery.RESWEEP)
        assert v.state == "drained"
        # What the TON sweep left cannot carry the USDT transfer's TON: topped up first.
        with pytest.raises(Conflict) as poor:
            await rot.sign_sweep(db, s, w, v.id, ACTOR)
        assert poor.value.code == "wallet_rotation_low_balance"
        await top_up_old_wallet(rail, db, payer, first.old_wallet)
        ledger, chain = await before_switch(rail, db, first)
        assert ledger == chain

        await faults(rail, drop_external_rate=1.0)
        v = await rot.sign_sweep(db, s, w, v.id, ACTOR)
        dropped = await row_of(db, v.id)
        with pytest.raises(Conflict) as pending:
            await rot.settle_sweep(db, s, w, v.id, ACTOR, within_s=2.5)
        assert pending.value.code == "wallet_rotation_sweep_pending"
        later = datetime.now(UTC) + timedelta(hours=2)
        clock.set_clock(lambda: later + (datetime.now(UTC) - later + timedelta(hours=2)))
        await faults(rail, time_offset_s=7200)
        v = await rot.settle_sweep(db, s, w, v.id, ACTOR, within_s=30)
        assert v.state == "drained"
        assert await rot._processed(w, int(str(dropped.sweep_query_id))) is False

        await faults(rail, drop_external_rate=0.0)
        v = await rot.sign_sweep(db, s, w, v.id, ACTOR)
        third = await row_of(db, v.id)
        assert third.sweep_msg_hash != dropped.sweep_msg_hash
        v = await finish_rotation(db, s, w, v)
        assert v.state == "switched"
    finally:
        await w.aclose()

    row = await row_of(db, v.id)
    assert sorted(await sweeps_on_chain(rail, row)) == sorted([first.sweep_ton, row.sweep_ton])
    assert await rail.api.tx_by_in_message(str(dropped.sweep_msg_hash)) is None
    ledger, chain = await books_and_chain(rail, db, row)
    assert ledger == chain
    assert ledger[(books.HOT_WALLET, "USDT")] == first.sweep_usdt
    assert [a for a in await actions(db) if "sweep" in a] == [
        "hot_wallet.sweep_signed",
        "hot_wallet.sweep_failed",
        "hot_wallet.sweep_signed",
        "hot_wallet.sweep_expired",
        "hot_wallet.sweep_signed",
    ]
    rail.ctx.settings = s
    assert await adopt_rotated_wallet(rail.ctx, row.id, row.new_public_key)
    assert await quiet_reconciliation(rail) == {}


def command_env(rail: Rail, tmp_path: Path, database_url: str) -> dict[str, str]:
    """The environment of `tonrail keys rotate-wallet` run as its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TON", "DATABASE"))}
    env.update(
        DATABASE_URL=database_url,
        DATA_DIR=str(tmp_path),
        ENVIRONMENT="test",
        TON_NETWORK="localnet",
        TON_API_URL=rail.net.v2,
        TON_API_V3_URL=rail.net.v3,
        USDT_JETTON_MASTER=rail.net.genesis.usdt_master.to_str(),
        TON_MASTER_KEY_FILE=str(tmp_path / "hot_wallet.key"),
        TON_KEY_PASSPHRASE=PASSPHRASE,
        TON_RESEND_SECONDS="1",
        TON_EXPIRY_MARGIN_S="2",
        LOG_LEVEL="WARNING",
        CRASH_AT="",
    )
    return env


async def top_up_old_wallet(rail: Rail, db: Database, payer: WalletV5R1, old: str) -> None:
    """What a TON sweep left cannot carry a USDT transfer's TON: an operator tops the old
    wallet up, a deposit the watcher books on it (still the hot wallet's account)."""
    await send_ton(payer, old, TON)
    for _ in range(600):
        await watch_deposits(rail.ctx)
        async with db.transaction() as session:
            cursor = await session.get(TonWalletCursor, old)
        if cursor is not None and cursor.last_lt == await rail.api.last_lt(old):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the top-up was never booked")


@pytest.mark.slow
async def test_crashes_after_booking_the_failed_sweep_and_during_the_new_one_do_nothing_twice(
    rail: Rail,
    db: Database,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    payer: WalletV5R1,
) -> None:
    """The command is SIGKILLed right after the failed sweep's booking commits, after the
    approved resweep's move to `drained`, and after the new sweep was sent: every rerun goes
    on from where it was; the failed sweep is booked once, one new sweep lands, and the
    books equal both wallets' balances."""
    s = rotation_settings(rail, tmp_path)
    await _opening_balances(rail, db)
    v = await drained(db, s)
    w = await rot.open_wallets(s, v)
    try:
        with monkeypatch.context() as mp:
            failing(mp, ton=False, usdt=True)
            v = await rot.sign_sweep(db, s, w, v.id, ACTOR)
    finally:
        await w.aclose()
    signed = await row_of(db, v.id)
    env = command_env(rail, tmp_path, database_url)

    code, out = await rotate({**env, "CRASH_AT": "rotation.after_sweep_failed"}, "--resume")
    assert code == -signal.SIGKILL, out
    assert (await row_of(db, v.id)).state == "sweep_failed"
    code, out = await rotate(env, "--resume")
    assert code == 2 and "wallet_rotation_sweep_failed" in out, out
    assert len(await entries_of(db, "hot_wallet.sweep_failed")) == 1

    await top_up_old_wallet(rail, db, payer, signed.old_wallet)
    asked = ("--recover", "resweep", "--reason", "USDT refused", "--actor", "a")
    code, out = await rotate(env, *asked)
    assert code == 0, out
    crash = {**env, "CRASH_AT": "rotation.after_recovery_approved"}
    code, out = await rotate(crash, "--approve-recovery", "resweep", "--actor", "b")
    assert code == -signal.SIGKILL, out
    assert (await row_of(db, v.id)).state == "drained"
    code, out = await rotate({**env, "CRASH_AT": "rotation.after_sweep_sent"}, "--resume")
    assert code == -signal.SIGKILL, out
    assert (await row_of(db, v.id)).state == "sweep_signed"
    code, out = await rotate(env, "--resume")
    assert code == 0 and "switched" in out, out

    row = await row_of(db, v.id)
    assert row.state == "switched"
    assert sorted(await sweeps_on_chain(rail, row)) == sorted([signed.sweep_ton, row.sweep_ton])
    assert len(await entries_of(db, "hot_wallet.sweep_failed")) == 1
    assert len(await entries_of(db, "hot_wallet.swept")) == 1
    ledger, chain = await books_and_chain(rail, db, row)
    assert ledger == chain
    assert ledger[(books.HOT_WALLET, "USDT")] == signed.sweep_usdt
    assert await actions(db) == [
        "hot_wallet.rotation_created",
        "hot_wallet.rotation_paused",
        "hot_wallet.rotation_drained",
        "hot_wallet.sweep_signed",
        "hot_wallet.sweep_failed",
        "hot_wallet.recovery_requested",
        "hot_wallet.recovery_approved",
        "hot_wallet.sweep_signed",
        "hot_wallet.swept",
        "hot_wallet.rotation_deployed",
        "hot_wallet.rotation_switched",
    ]
