"""Rotating the hot wallet (`tonrail keys rotate-wallet`): a new highload wallet v3 with a new
key takes over from the old one.

A rotation is one row of `ton_wallet_rotations` moving through the states of
`RotationState` (rails/ton/states.py, `ROTATION_MOVES`); every move commits with its audit
entry, so a crashed command is rerun and resumes from the state it reached:

1. `created`: a new Ed25519 key is sealed under the same kind of key-encryption key new
   envelopes get today (TON_KEY_KMS_KEY_ID: aws-kms, else the scrypt passphrase) and written
   beside the key file (`<key file>.next`, mode 0600) before the row commits.
2. `paused`: the old wallet signs no new payout (processing/ton_loop.py asks
   `signing_paused`); queued payouts wait, nothing is refused.
3. `drained`: every request of the old wallet is final or proven expired, by the payout
   tracker's own rules (processed? / valid_until): the worker keeps tracking while the
   command waits.

4. `sweep_signed`: one highload request of the old wallet, stored on the row before it is
   ever sent, carries all its TON but a reserve to the new wallet (non-bounceable, with the
   new wallet's StateInit: the sweep deploys it) and all its USDT (excess back to the old
   wallet). It is re-sent until `valid_until` (or until a copy is refused as already
   executed: it landed); replays are refused by the wallet, so it lands at most once.
   Expired and proven unprocessed (`processed?` false, no transaction), the rotation goes
   back to `drained` and signs a new one from the balances then.
5. `swept`: the trace is read to the end; one journal entry moves the books: the old
   wallet's holdings leave `asset:hot_wallet` for `asset:retired_hot_wallets`, what reached
   the new wallet comes back to `asset:hot_wallet`, and every nanoton of fee goes to
   `expense:network_fees`. The new wallet's deposit cursor starts after the sweep; the old
   wallet's is marked `retired` (its later deposits are booked on the retired wallets).
   A trace that ended otherwise than signed (a transfer that did not leave or failed) is
   booked as it happened instead (`sweep_failed`, one entry: what reached the new wallet on
   `asset:next_hot_wallet`, the fees to the network, the rest still the hot wallet's); the
   ways on from there are processing/rotation_recovery.py's.
6. `deployed`: the new wallet is active on chain.
7. `switched`: the key file holds the new envelope (the old one kept beside it as
   `<key file>.retired-<public key>`); workers adopt the new wallet (processing/ton_loop.py)
   and keep watching the old address for late deposits (processing/deposits.py).

A rotation that has signed nothing for its sweep may be canceled: the old wallet signs again.
After a failed sweep (`sweep_failed`), the ways on are two operators' choice
(processing/rotation_recovery.py).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from ton_core import Address

from tonrail import clock
from tonrail.chain.network import resolve_network
from tonrail.db import Database
from tonrail.errors import Conflict, IllegalTransition, InvalidRequest, NotFound
from tonrail.ids import new_id
from tonrail.kit.faults import crashpoint
from tonrail.ledger import rules as books
from tonrail.ledger.models import JournalEntry, LedgerLine
from tonrail.ledger.service import balance, post
from tonrail.processing.rotation_pause import lock_query_counter
from tonrail.processing.rotation_trace import SweepTrace, trace_sweep
from tonrail.processing.ton_loop import next_query_seq
from tonrail.processing.ton_runtime import register_own_accounts
from tonrail.processing.ton_track import processed_by
from tonrail.rails.ton import keys
from tonrail.rails.ton.api import ToncenterTonApi, jetton_balance, jetton_wallet_of
from tonrail.rails.ton.chain_view import Tx, raw
from tonrail.rails.ton.highload import (
    HighloadWallet,
    OutTransfer,
    comment_body,
    jetton_transfer,
    query_id_for,
    sign_request,
)
from tonrail.rails.ton.models import (
    TonRequest,
    TonWalletCursor,
    TonWalletRotation,
)
from tonrail.rails.ton.states import (
    OPEN_REQUEST_STATES,
    OPEN_ROTATION_STATES,
    ROTATION_MOVES,
    RotationState,
)
from tonrail.rails.ton.stored_send import SendOutcome, send_stored
from tonrail.security import audit_log
from tonrail.settings import Settings

CONFIRMATION = "ROTATE HOT WALLET"  # typed by the operator
OPEN = "open"
NEXT_SUFFIX = ".next"
RETIRED_SUFFIX = ".retired-"
# Left on the old wallet: its storage rent, and what a later sweep of late deposits needs.
SWEEP_KEEP_NANOTON = 50_000_000
# The sweep's own fees (external, internal_transfer, the new wallet's deployment): at most.
SWEEP_FEE_ALLOWANCE_NANOTON = 100_000_000
# TON attached to the USDT transfer; the excess returns to the old wallet.
SWEEP_JETTON_ATTACH_NANOTON = 50_000_000


@dataclass(frozen=True)
class RotationView:
    """What the command shows of a rotation."""

    id: str
    state: RotationState
    old_wallet: str
    new_wallet: str
    new_key_file: str
    old_public_key: str
    new_public_key: str
    error: str | None = None  # why its sweep failed, once booked
    recovery: str | None = None  # a way out asked for, waiting for approval
    recovery_requested_by: str | None = None


def view(row: TonWalletRotation) -> RotationView:
    return RotationView(
        row.id,
        row.state,
        row.old_wallet,
        row.new_wallet,
        row.new_key_file,
        row.old_public_key,
        row.new_public_key,
        row.error,
        row.recovery,
        row.recovery_requested_by,
    )


def wallet_of(settings: Settings, public_key: bytes) -> HighloadWallet:
    """The highload wallet v3 of `public_key` with the network's subwallet id and timeout."""
    network = resolve_network(settings)
    return HighloadWallet(
        public_key, network.highload_subwallet_id, network.highload_timeout_seconds
    )


def key_file(settings: Settings) -> Path:
    """The hot wallet's key file; a rotation replaces it at the switch, so the key must live
    in a file (TON_MASTER_KEY_FILE or DATA_DIR/hot_wallet.key), not inline."""
    if settings.ton_master_key.get_secret_value().strip():
        raise InvalidRequest(
            "TON_MASTER_KEY holds the hot wallet key inline: a rotation replaces the key file "
            "at the switch; move the envelope to TON_MASTER_KEY_FILE and unset TON_MASTER_KEY",
            code="wallet_rotation_inline_key",
        )
    return keys.key_file_path(settings)


def move(row: TonWalletRotation, to: RotationState) -> None:
    """Move the rotation to `to` if `ROTATION_MOVES` allows it, else IllegalTransition."""
    if to not in ROTATION_MOVES[row.state]:
        raise IllegalTransition(
            f"rotation {row.id} cannot go from {row.state} to {to}",
            code="wallet_rotation_illegal_move",
        )
    row.state = to
    row.updated_at = clock.now()
    if to not in OPEN_ROTATION_STATES:
        row.open_marker = None


async def open_rotation(session: AsyncSession, *, lock: bool = False) -> TonWalletRotation | None:
    """The rotation in progress, if any (there is at most one: `open_marker` is unique)."""
    stmt = select(TonWalletRotation).where(TonWalletRotation.open_marker == OPEN)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def start(db: Database, settings: Settings, actor: str) -> RotationView:
    """Create the new key (sealed, in `<key file>.next`) and the rotation row (`created`).

    The envelope is written before the row commits; a crash between the two leaves a file no
    row names, which the next start replaces (it was never used to sign anything)."""
    path = key_file(settings)
    old_signer = keys.load_signer(settings)  # proves the current key opens, as workers do
    old = wallet_of(settings, old_signer.public_key)
    kek = keys.sealing_kek(settings)
    seed = secrets.token_bytes(keys.SEED_BYTES)
    envelope = keys.seal(seed, kek)
    new_public = keys.HotWalletSigner(seed).public_key
    del seed
    new = wallet_of(settings, new_public)
    next_path = path.with_name(path.name + NEXT_SUFFIX)
    now = clock.now()
    try:
        async with db.transaction() as session:
            if await open_rotation(session) is not None:
                raise _already_open()
            row = TonWalletRotation(
                id=new_id("wrot"),
                state=RotationState.CREATED,
                open_marker=OPEN,
                old_wallet=raw(old.address),
                old_public_key=old_signer.public_key.hex(),
                new_wallet=raw(new.address),
                new_public_key=new_public.hex(),
                new_key_file=str(next_path),
                sweep_send_count=0,
                actor=actor,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            await session.flush()
            await audit_log.record(
                session,
                actor,
                "hot_wallet.rotation_created",
                row.id,
                {
                    "old_wallet": row.old_wallet,
                    "new_wallet": row.new_wallet,
                    "new_public_key": row.new_public_key,
                    "kek": kek.kind,
                    "key_file": str(next_path),
                },
            )
            await asyncio.to_thread(keys.write_envelope, next_path, envelope, force=True)
    except IntegrityError:
        raise _already_open() from None
    crashpoint(settings, "rotation.after_create")
    return view(row)


def _already_open() -> Conflict:
    return Conflict(
        "a hot wallet rotation is already in progress: resume it with "
        "`tonrail keys rotate-wallet --resume` (or cancel it with --cancel)",
        code="wallet_rotation_open",
    )


async def current(db: Database) -> RotationView:
    """The rotation in progress, or a switched one whose last step (`finish`) did not run;
    NotFound (`wallet_rotation_none`) when there is none."""
    async with db.transaction() as session:
        row = await open_rotation(session)
        if row is None:
            row = (
                await session.execute(
                    select(TonWalletRotation)
                    .where(TonWalletRotation.state == RotationState.SWITCHED)
                    .order_by(TonWalletRotation.created_at.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            if row is not None and not await asyncio.to_thread(Path(row.new_key_file).exists):
                row = None
    if row is None:
        raise NotFound("no hot wallet rotation in progress", code="wallet_rotation_none")
    return view(row)


async def pause(db: Database, settings: Settings, rotation_id: str, actor: str) -> RotationView:
    """`created` -> `paused`: the old wallet signs no new payout from this commit on."""
    async with db.transaction() as session:
        row = await locked(session, rotation_id)
        if row.state == RotationState.CREATED:
            await lock_query_counter(session, row.old_wallet)
            move(row, RotationState.PAUSED)
            await audit_log.record(
                session, actor, "hot_wallet.rotation_paused", row.id, {"wallet": row.old_wallet}
            )
    crashpoint(settings, "rotation.after_pause")
    return view(row)


async def open_requests(session: AsyncSession, wallet_raw: str) -> int:
    """How many requests of the wallet are not yet final or expired."""
    count = await session.scalar(
        select(func.count())
        .select_from(TonRequest)
        .where(TonRequest.wallet == wallet_raw, TonRequest.status.in_(OPEN_REQUEST_STATES))
    )
    return int(count or 0)


async def wait_drained(
    db: Database, rotation_id: str, actor: str, *, within_s: float, poll_s: float = 1.0
) -> RotationView:
    """`paused` -> `drained` once no request of the old wallet is open; the payout tracker of
    the running worker settles them (or proves them expired). Conflict
    (`wallet_rotation_not_drained`) when they are still open after `within_s`: rerun later."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        async with db.transaction() as session:
            row = await locked(session, rotation_id)
            if row.state != RotationState.PAUSED:
                return view(row)
            # A request being signed holds this row until it commits: then it is counted.
            await lock_query_counter(session, row.old_wallet)
            left = await open_requests(session, row.old_wallet)
            if left == 0:
                move(row, RotationState.DRAINED)
                await audit_log.record(
                    session,
                    actor,
                    "hot_wallet.rotation_drained",
                    row.id,
                    {"wallet": row.old_wallet},
                )
                return view(row)
        if loop.time() >= deadline:
            raise Conflict(
                f"{left} request(s) of the old wallet are still open (the worker's tracker "
                "settles them or proves them expired); rerun `tonrail keys rotate-wallet "
                "--resume` later",
                code="wallet_rotation_not_drained",
            )
        await asyncio.sleep(poll_s)


async def cancel(db: Database, actor: str, reason: str) -> RotationView:
    """Cancel the rotation in progress while nothing has been signed for its sweep: the old
    wallet signs again; the new key file is deleted (it never held funds)."""
    if not reason.strip():
        raise InvalidRequest("say why (the audit log keeps it)", param="reason")
    async with db.transaction() as session:
        row = await open_rotation(session, lock=True)
        if row is None:
            raise NotFound("no hot wallet rotation in progress", code="wallet_rotation_none")
        if row.state == RotationState.SWEEP_FAILED:
            raise IllegalTransition(
                f"rotation {row.id}: its sweep failed (booked as it happened); a cancel now "
                "needs a second operator: `tonrail keys rotate-wallet --recover cancel`",
                code="wallet_rotation_not_cancelable",
            )
        if RotationState.CANCELED not in ROTATION_MOVES[row.state]:
            raise IllegalTransition(
                f"rotation {row.id} is {row.state}: its sweep was signed, it can only finish; "
                "rerun `tonrail keys rotate-wallet --resume`",
                code="wallet_rotation_not_cancelable",
            )
        await refuse_if_new_wallet_funded(session, row)
        move(row, RotationState.CANCELED)
        await audit_log.record(
            session,
            actor,
            "hot_wallet.rotation_canceled",
            row.id,
            {"reason": reason.strip(), "old_wallet": row.old_wallet},
        )
    await asyncio.to_thread(Path(row.new_key_file).unlink, missing_ok=True)
    return view(row)


async def new_wallet_holds(session: AsyncSession) -> dict[str, int]:
    """What the books say reached the new wallet before the switch (a failed sweep's part
    that landed), nonzero assets only."""
    held = {a: await balance(session, books.NEXT_HOT_WALLET, a) for a in ("TON", "USDT")}
    return {a: v for a, v in held.items() if v}


async def refuse_if_new_wallet_funded(session: AsyncSession, row: TonWalletRotation) -> None:
    """A cancel deletes the new key: never while the new wallet holds funds."""
    held = await new_wallet_holds(session)
    if held:
        raise Conflict(
            f"rotation {row.id}: a failed sweep left {held} on the new wallet {row.new_wallet}; "
            "canceling would delete its key: sweep again or switch instead "
            "(`tonrail keys rotate-wallet --recover resweep|switch`)",
            code="wallet_rotation_new_wallet_funded",
        )


async def locked(session: AsyncSession, rotation_id: str) -> TonWalletRotation:
    row = await session.get(TonWalletRotation, rotation_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no rotation {rotation_id}", code="wallet_rotation_none")
    return row


# ------------------------------------------------------------------------------ the sweep
@dataclass
class Wallets:
    """Both wallets on chain, and the old key while the key file still holds it."""

    api: ToncenterTonApi
    old: HighloadWallet
    new: HighloadWallet
    old_jetton: str | None  # raw addresses of their USDT jetton wallets, when USDT is on
    new_jetton: str | None
    sign_old: Callable[[bytes], bytes] | None

    async def aclose(self) -> None:
        await self.api.aclose()


async def open_wallets(settings: Settings, rotation: RotationView) -> Wallets:
    """The chain client and both wallets of `rotation`; the old key only while the key file
    still holds it (until the switch)."""
    from tonrail.rails.ton.toncenter import ToncenterClient

    network = resolve_network(settings)
    api = ToncenterTonApi(ToncenterClient.from_network(network, settings))
    try:
        envelope = keys.read_envelope(settings)
        sign_old = None
        if keys.envelope_public_key(envelope).hex() == rotation.old_public_key:
            sign_old = keys.load_signer(settings).sign
        old = wallet_of(settings, bytes.fromhex(rotation.old_public_key))
        new = wallet_of(settings, bytes.fromhex(rotation.new_public_key))
        old_jetton = new_jetton = None
        if network.usdt_master:
            old_jetton = await jetton_wallet_of(api, network.usdt_master, raw(old.address))
            new_jetton = await jetton_wallet_of(api, network.usdt_master, raw(new.address))
    except BaseException:
        await api.aclose()
        raise
    return Wallets(api, old, new, old_jetton, new_jetton, sign_old)


async def sign_sweep(
    db: Database, settings: Settings, w: Wallets, rotation_id: str, actor: str
) -> RotationView:
    """`drained` -> `sweep_signed`: sign the sweep from the old wallet's balances now and
    store it on the row; nothing is sent before it commits."""
    if w.sign_old is None:
        raise Conflict(
            "the key file no longer holds the old wallet's key: the sweep cannot be signed",
            code="wallet_rotation_old_key_missing",
        )
    old_state, ton_balance = await w.api.account_state(w.old.address.to_str())
    usdt = await jetton_balance(w.api, w.old_jetton) if w.old_jetton else 0
    attach = SWEEP_JETTON_ATTACH_NANOTON if usdt > 0 else 0
    ton = ton_balance - SWEEP_KEEP_NANOTON - SWEEP_FEE_ALLOWANCE_NANOTON - attach
    if ton <= 0:
        raise Conflict(
            f"the old wallet holds {ton_balance} nanoton: too little to fund and deploy the new "
            "wallet; top it up, or cancel the rotation",
            code="wallet_rotation_low_balance",
        )
    now = clock.now()
    async with db.transaction() as session:
        row = await locked(session, rotation_id)
        if row.state != RotationState.DRAINED:
            return view(row)
        seq = await next_query_seq(session, row.old_wallet)
        created_at = int(now.timestamp()) - settings.ton_created_at_lag_s
        query_id = query_id_for(seq)
        transfers = [
            OutTransfer(
                w.new.address,
                ton,
                False,  # the new wallet is not deployed yet: a bounceable message would return
                comment_body(f"tonrail hot wallet rotation {row.id}"),
                state_init=w.new.state_init,
            )
        ]
        if usdt > 0 and w.old_jetton is not None:
            transfers.append(
                jetton_transfer(
                    _address(w.old_jetton),
                    w.new.address,
                    usdt,
                    attach_ton=attach,
                    forward_ton=0,  # no notification: the new wallet's deposits start clean
                    response=w.old.address,
                    query_id=secrets.randbits(63),
                    comment="",
                )
            )
        signed = sign_request(
            w.old,
            w.sign_old,
            transfers,
            query_id=query_id,
            created_at=created_at,
            deploy=old_state != "active",  # a wallet that never paid out is not deployed yet
        )
        row.sweep_ton, row.sweep_usdt = ton, usdt
        row.sweep_query_seq, row.sweep_query_id = seq, query_id
        row.sweep_created_at = created_at
        row.sweep_valid_until = created_at + w.old.timeout
        row.sweep_boc, row.sweep_msg_hash = signed.boc, signed.message_hash_norm
        row.sweep_send_count = 0
        move(row, RotationState.SWEEP_SIGNED)
        await audit_log.record(
            session,
            actor,
            "hot_wallet.sweep_signed",
            row.id,
            {
                "ton": ton,
                "usdt": usdt,
                "query_id": query_id,
                "valid_until": row.sweep_valid_until,
                "message_hash": signed.message_hash_norm,
            },
        )
    crashpoint(settings, "rotation.after_sweep_signed")
    return view(row)


def _address(raw_address: str) -> Address:
    return Address(raw_address)


async def _processed(w: Wallets, query_id: int) -> bool | None:
    """The old wallet's `processed?(query_id)`; None when it cannot be read (an old wallet
    that never paid out, not deployed until its sweep, has processed nothing)."""
    return await processed_by(w.api, w.old.address.to_str(), query_id)


async def settle_sweep(
    db: Database,
    settings: Settings,
    w: Wallets,
    rotation_id: str,
    actor: str,
    *,
    within_s: float,
    poll_s: float = 0.5,
) -> RotationView:
    """`sweep_signed` -> `swept` (or back to `drained` when it expired unprocessed, or
    `sweep_failed` when its trace ended otherwise than signed): send and re-send the stored
    sweep until `valid_until`, read its trace to the end, book what it did once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    last_sent = -1e9
    while True:
        async with db.transaction() as session:
            row = await locked(session, rotation_id)
        if row.state != RotationState.SWEEP_SIGNED:
            return view(row)
        assert row.sweep_msg_hash and row.sweep_boc and row.sweep_valid_until
        ext = await w.api.tx_by_in_message(row.sweep_msg_hash)
        if ext is not None:
            trace = await trace_sweep(w.api, row, raw(w.old.address), w.old_jetton, ext)
            if trace is not None:
                return await _book_sweep(db, settings, rotation_id, actor, trace)
        else:
            chain_now = int(clock.now().timestamp())
            if chain_now <= row.sweep_valid_until and row.sweep_landed_at is None:
                if loop.time() - last_sent >= settings.ton_resend_seconds:
                    sent = await _send(w, row.sweep_boc, copy=row.sweep_send_count > 0)
                    last_sent = loop.time()
                    async with db.transaction() as session:
                        fresh = await locked(session, rotation_id)
                        fresh.sweep_send_count += 1
                        fresh.updated_at = clock.now()
                        if sent == SendOutcome.EXECUTED:
                            fresh.sweep_landed_at = fresh.updated_at
                    crashpoint(settings, "rotation.after_sweep_sent")
            elif chain_now > row.sweep_valid_until + settings.ton_expiry_margin_s:
                assert row.sweep_query_id is not None
                if await _processed(w, row.sweep_query_id) is False and (
                    await w.api.tx_by_in_message(row.sweep_msg_hash) is None
                ):
                    return await _expire_sweep(db, rotation_id, actor)
        if loop.time() >= deadline:
            raise Conflict(
                "the sweep is not settled on chain yet; rerun `tonrail keys rotate-wallet "
                "--resume` (the same signed message is re-sent, never a second one)",
                code="wallet_rotation_sweep_pending",
            )
        await asyncio.sleep(poll_s)


async def _send(w: Wallets, boc: str, *, copy: bool = False) -> SendOutcome:
    """Send the stored sweep (`copy`: sent before). A duplicate or a processed one may be
    refused: the chain decides, but a copy refused as already executed proves it landed."""
    result = await send_stored(w.api.send_boc, boc, copy=copy)
    log = structlog.get_logger(__name__)
    if result.outcome == SendOutcome.EXECUTED:
        log.info("sweep already executed; not re-sent")
    elif result.error is not None:
        log.warning("sweep send failed", error=str(result.error))
    return result.outcome


async def _expire_sweep(db: Database, rotation_id: str, actor: str) -> RotationView:
    async with db.transaction() as session:
        row = await locked(session, rotation_id)
        if row.state != RotationState.SWEEP_SIGNED:
            return view(row)
        details = {"query_id": row.sweep_query_id, "message_hash": row.sweep_msg_hash}
        clear_sweep(row)
        move(row, RotationState.DRAINED)
        await audit_log.record(session, actor, "hot_wallet.sweep_expired", row.id, details)
    return view(row)


def clear_sweep(row: TonWalletRotation) -> None:
    """Forget the row's sweep (expired unprocessed, or failed and booked): the next one is
    signed from the balances then; the audit log and the books keep the old one."""
    row.sweep_boc = row.sweep_msg_hash = None
    row.sweep_query_id = row.sweep_query_seq = None
    row.sweep_created_at = row.sweep_valid_until = None
    row.sweep_ton = row.sweep_usdt = None
    row.sweep_fee = row.sweep_entry_id = None
    row.sweep_send_count = 0
    row.sweep_landed_at = None


async def _book_sweep(
    db: Database, settings: Settings, rotation_id: str, actor: str, trace: SweepTrace
) -> RotationView:
    """Book the sweep's trace once: `swept` when it did all it was signed for, else
    `sweep_failed` (what it did is booked, the old wallet stays the hot wallet)."""
    async with db.transaction() as session:
        row = await locked(session, rotation_id)
        if row.state != RotationState.SWEEP_SIGNED:
            return view(row)
        if trace.failures:
            await _book_failed(session, row, actor, trace)
        else:
            await _book_swept(session, row, actor, trace)
    crashpoint(
        settings, "rotation.after_sweep_failed" if trace.failures else "rotation.after_swept"
    )
    return view(row)


async def _book_swept(
    session: AsyncSession, row: TonWalletRotation, actor: str, trace: SweepTrace
) -> None:
    assert trace.deploy_tx is not None
    ton, usdt = row.sweep_ton or 0, row.sweep_usdt or 0
    entry = await retire_old_wallet(
        session,
        row.old_wallet,
        "hot_wallet.swept",
        arrived={"TON": trace.ton_arrived, "USDT": trace.usdt_arrived},
        fee=trace.fee,
        after_lt=trace.deploy_tx.lt,
    )
    row.sweep_fee, row.sweep_entry_id = trace.fee, entry
    await start_new_cursor(session, row, trace.deploy_tx)
    move(row, RotationState.SWEPT)
    await audit_log.record(
        session,
        actor,
        "hot_wallet.swept",
        row.id,
        {"ton": ton, "usdt": usdt, "fee": trace.fee, "journal_entry": entry},
    )


async def retire_old_wallet(
    session: AsyncSession,
    old_wallet: str,
    kind: str,
    *,
    arrived: dict[str, int],
    fee: int,
    after_lt: int,
) -> str:
    """One entry (`rules.rotation_sweep`, retiring): the old wallet's holdings leave
    `asset:hot_wallet` for the retired wallets less what left them (`arrived` plus `fee`);
    the new wallet's (what arrived, and what a failed sweep had brought it before) become
    `asset:hot_wallet`.

    The deposit watcher books the old wallet's deposits holding its cursor row: one it is
    booking now (on the hot wallet's account) commits first and is counted here; once this
    commits, it books what follows on the retired wallets (deposits._holder reads
    `retired`, set here, after waiting here).

    What the deposit watcher booked on the old wallet after the new wallet's deployment
    (`after_lt`) stays on the old address: it moves to the retired wallets in entries of its
    own lts (`hot_wallet.swept_late`), so the new wallet's reconciliation (up to an lt,
    reconcile.py) counts such a deposit and its move out together or not at all."""
    old_cursor = await session.get(TonWalletCursor, old_wallet, with_for_update=True)
    if old_cursor is not None:
        old_cursor.retired = True
    late = await booked_after(session, after_lt)
    held = {
        "TON": await balance(session, books.HOT_WALLET, "TON") - sum(late.values()),
        "USDT": await balance(session, books.HOT_WALLET, "USDT"),
    }
    next_held = {a: await balance(session, books.NEXT_HOT_WALLET, a) for a in ("TON", "USDT")}
    lines = books.rotation_sweep(
        held=held, arrived=arrived, fee=fee, next_held=next_held, retire=True
    )
    entry = await post(session, kind, lines)
    for lt, amount in sorted(late.items()):
        await post(
            session,
            "hot_wallet.swept_late",
            [
                books.Line(books.HOT_WALLET, "TON", -amount),
                books.Line(books.RETIRED_HOT_WALLETS, "TON", amount),
            ],
            lts=(lt, lt),
        )
    return entry


async def start_new_cursor(session: AsyncSession, row: TonWalletRotation, tx: Tx) -> None:
    """The new wallet's deposit watcher starts after `tx` (a sweep's transaction on it), so
    no sweep is ever read as a deposit; a cursor an earlier (failed) sweep set moves on."""
    cursor = await session.get(TonWalletCursor, row.new_wallet, with_for_update=True)
    if cursor is None:
        session.add(
            TonWalletCursor(
                wallet=row.new_wallet, last_lt=tx.lt, last_hash=tx.hash, updated_at=clock.now()
            )
        )
    elif cursor.last_lt < tx.lt:
        cursor.last_lt, cursor.last_hash, cursor.updated_at = tx.lt, tx.hash, clock.now()


async def _book_failed(
    session: AsyncSession, row: TonWalletRotation, actor: str, trace: SweepTrace
) -> None:
    """A sweep whose trace ended otherwise than signed: what left the old wallet leaves
    `asset:hot_wallet` (the old wallet stays the hot wallet in the books), what reached the
    new one goes to `asset:next_hot_wallet`, the fees to the network; `sweep_failed`. The
    sweep's query id is spent: it can never land again (final)."""
    lines = books.rotation_sweep(
        held={},
        arrived={"TON": trace.ton_arrived, "USDT": trace.usdt_arrived},
        fee=trace.fee,
        next_held={},
        retire=False,
    )
    entry = await post(session, "hot_wallet.sweep_failed", lines) if lines else None
    if trace.deploy_tx is not None:
        await start_new_cursor(session, row, trace.deploy_tx)
    row.sweep_fee, row.sweep_entry_id = trace.fee, entry
    row.error = "; ".join(trace.failures)
    move(row, RotationState.SWEEP_FAILED)
    await audit_log.record(
        session,
        actor,
        "hot_wallet.sweep_failed",
        row.id,
        {
            "why": row.error,
            "signed": {"ton": row.sweep_ton, "usdt": row.sweep_usdt},
            "arrived": {"ton": trace.ton_arrived, "usdt": trace.usdt_arrived},
            "fee": trace.fee,
            "journal_entry": entry,
            "message_hash": row.sweep_msg_hash,
        },
    )


async def booked_after(session: AsyncSession, lt: int) -> dict[int, int]:
    """chain lt -> TON booked on the hot wallet's account by entries of transactions after
    `lt` (the old wallet's, booked before the sweep is), nonzero sums only."""
    rows = await session.execute(
        select(JournalEntry.chain_lt, func.sum(LedgerLine.amount))
        .join(LedgerLine, LedgerLine.entry_id == JournalEntry.id)
        .where(
            LedgerLine.account == books.HOT_WALLET,
            LedgerLine.asset == "TON",
            JournalEntry.chain_lt > lt,
        )
        .group_by(JournalEntry.chain_lt)
    )
    return {int(lt_): int(total) for lt_, total in rows.all() if lt_ is not None and total}


async def confirm_deployed(
    db: Database, w: Wallets, rotation_id: str, actor: str, *, within_s: float
) -> RotationView:
    """`swept` -> `deployed` once the new wallet is active on chain (the sweep deployed it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        state, held = await w.api.account_state(w.new.address.to_str())
        if state == "active":
            break
        if loop.time() >= deadline:
            raise Conflict(
                f"the new wallet is {state}, not active; rerun with --resume",
                code="wallet_rotation_not_deployed",
            )
        await asyncio.sleep(0.5)
    async with db.transaction() as session:
        row = await locked(session, rotation_id)
        if row.state == RotationState.SWEPT:
            move(row, RotationState.DEPLOYED)
            await audit_log.record(
                session,
                actor,
                "hot_wallet.rotation_deployed",
                row.id,
                {"wallet": row.new_wallet, "balance": held},
            )
    return view(row)


# ------------------------------------------------------------------------------ the switch
def _swap_key_file(settings: Settings, row: TonWalletRotation) -> None:
    """Put the new envelope in the key file, keeping the old one beside it; idempotent."""
    path = key_file(settings)
    current = keys.read_envelope(settings)
    held = keys.envelope_public_key(current).hex()
    if held == row.new_public_key:
        return  # swapped before a crash
    if held != row.old_public_key:
        raise Conflict(
            f"{path} holds neither the old nor the new wallet's key",
            code="wallet_rotation_key_file_changed",
        )
    new_envelope = Path(row.new_key_file).read_text().strip()
    body = keys.parse_envelope(new_envelope)
    seed = keys.open_envelope(new_envelope, keys.kek_for(settings, body["kek"]))
    if keys.HotWalletSigner(seed).public_key.hex() != row.new_public_key:
        raise Conflict(f"{row.new_key_file} is not the new wallet's key", code="wallet_key_invalid")
    del seed
    retired = path.with_name(f"{path.name}{RETIRED_SUFFIX}{row.old_public_key[:16]}")
    keys.write_envelope(retired, current, force=True)
    keys.write_envelope(path, new_envelope, force=True)


async def switch(
    db: Database, settings: Settings, w: Wallets, rotation_id: str, actor: str
) -> RotationView:
    """`deployed` -> `switched`: the key file holds the new wallet's envelope, our own
    accounts include the new wallet, and workers adopt it at their next round."""
    async with db.transaction() as session:
        row = await locked(session, rotation_id)
    if row.state != RotationState.DEPLOYED:
        return view(row)
    await asyncio.to_thread(_swap_key_file, settings, row)
    await register_own_accounts(db, row.new_wallet, w.new_jetton)
    async with db.transaction() as session:
        row = await locked(session, rotation_id)
        if row.state == RotationState.DEPLOYED:
            move(row, RotationState.SWITCHED)
            await audit_log.record(
                session,
                actor,
                "hot_wallet.rotation_switched",
                row.id,
                {"from": row.old_wallet, "to": row.new_wallet, "key_file": str(key_file(settings))},
            )
    crashpoint(settings, "rotation.after_switch")
    return await finish(row.id, db)


async def finish(rotation_id: str, db: Database) -> RotationView:
    """The last step of a switched rotation: remove `<key file>.next` (the key file holds it
    now). Idempotent; a rerun after a crash here ends here."""
    async with db.transaction() as session:
        row = await locked(session, rotation_id)
    if row.state == RotationState.SWITCHED:
        await asyncio.to_thread(Path(row.new_key_file).unlink, missing_ok=True)
    return view(row)
