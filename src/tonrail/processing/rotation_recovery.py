"""The ways out of a hot wallet rotation whose sweep failed (`sweep_failed`,
processing/wallet_rotation.py): the sweep's trace ended otherwise than signed and what it did
is booked (`hot_wallet.sweep_failed`: what reached the new wallet on `asset:next_hot_wallet`,
the fees to the network, the rest still on `asset:hot_wallet`, the old wallet's account).

An operator asks for one way (`tonrail keys rotate-wallet --recover CHOICE --reason WHY`,
audit `hot_wallet.recovery_requested`); another operator approves it by naming the same
choice (`--approve-recovery CHOICE`, audit `hot_wallet.recovery_approved`), the payout rule
(security/two_person.py, `approver_is_requester`): the requester cannot approve. The
approved move commits with its audit entry (and its journal entry, for a switch); a rerun
after a crash finds the rotation past it and resumes from there:

- `resweep`: back to `drained`; the command signs a new sweep from the balances then. What
  the failed one brought the new wallet stays booked on `asset:next_hot_wallet` until the
  new sweep is booked, which makes the new wallet's holdings the hot wallet's.
- `switch` (the new wallet must be deployed: the failed sweep's TON reached it): on to
  `swept` without sweeping the rest. One entry `hot_wallet.retired_unswept` moves what the old
  wallet holds to `asset:retired_hot_wallets` (it stays on the old address, which the deposit
  watcher keeps reading) and what the new one holds to `asset:hot_wallet`; the command then
  checks the new wallet active and switches the key file.
- `cancel` (only when nothing reached the new wallet: its key is deleted): `canceled`, the
  old wallet signs again. The failed sweep is final (its query id is spent) and booked.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.db import Database
from tonrail.errors import Conflict, IllegalTransition, InvalidRequest, NotFound
from tonrail.kit.faults import crashpoint
from tonrail.processing import wallet_rotation as rot
from tonrail.rails.ton.models import TonWalletCursor, TonWalletRotation
from tonrail.rails.ton.states import RotationState, SweepRecovery
from tonrail.security import audit_log
from tonrail.security.two_person import refuse_approval_by_requester
from tonrail.settings import Settings


async def _failed_rotation(session: AsyncSession) -> TonWalletRotation:
    row = await rot.open_rotation(session, lock=True)
    if row is None:
        raise NotFound("no hot wallet rotation in progress", code="wallet_rotation_none")
    if row.state != RotationState.SWEEP_FAILED:
        raise IllegalTransition(
            f"rotation {row.id} is {row.state}, not sweep_failed: nothing to recover from; "
            "rerun `tonrail keys rotate-wallet --resume`",
            code="wallet_rotation_not_failed",
        )
    return row


async def _check(session: AsyncSession, row: TonWalletRotation, choice: SweepRecovery) -> None:
    """Whether `choice` is safe for the rotation now (asked again at the approval)."""
    if choice == SweepRecovery.CANCEL:
        await rot.refuse_if_new_wallet_funded(session, row)
    elif choice == SweepRecovery.SWITCH:
        held = await rot.new_wallet_holds(session)
        cursor = await session.get(TonWalletCursor, row.new_wallet)
        if not held.get("TON") or cursor is None:
            raise Conflict(
                f"rotation {row.id}: no TON of the failed sweep reached the new wallet "
                f"{row.new_wallet}, so nothing deployed it: sweep again (or cancel)",
                code="wallet_rotation_new_wallet_not_funded",
            )


async def request(db: Database, actor: str, choice: SweepRecovery, reason: str) -> rot.RotationView:
    """Ask for a way out of the failed sweep; it waits for another operator's approval. A
    new request replaces one still waiting (both are in the audit log)."""
    if not reason.strip():
        raise InvalidRequest("say why (the audit log keeps it)", param="reason")
    async with db.transaction() as session:
        row = await _failed_rotation(session)
        await _check(session, row, choice)
        replaced = row.recovery
        row.recovery, row.recovery_requested_by = choice, actor
        row.recovery_reason = reason.strip()
        await audit_log.record(
            session,
            actor,
            "hot_wallet.recovery_requested",
            row.id,
            {"choice": choice, "reason": row.recovery_reason, "replaces": replaced},
        )
    return rot.view(row)


async def approve(
    db: Database, settings: Settings, actor: str, choice: SweepRecovery
) -> rot.RotationView:
    """Approve the way out another operator asked for (`choice` must name it) and take it:
    `resweep` -> `drained`, `switch` -> `swept` (booked), `cancel` -> `canceled`."""
    async with db.transaction() as session:
        row = await _failed_rotation(session)
        if row.recovery is None or row.recovery_requested_by is None:
            raise Conflict(
                f"rotation {row.id}: no way out was asked for; one operator asks "
                "(`--recover resweep|switch|cancel --reason WHY`), another approves",
                code="wallet_rotation_no_recovery_requested",
            )
        if choice != row.recovery:
            raise Conflict(
                f"rotation {row.id}: {row.recovery_requested_by} asked for {row.recovery}, "
                f"not {choice}",
                code="wallet_rotation_recovery_mismatch",
            )
        refuse_approval_by_requester(
            actor, row.recovery_requested_by, "the operator who asked for a way out"
        )
        await _check(session, row, choice)
        details = {
            "choice": choice,
            "requested_by": row.recovery_requested_by,
            "reason": row.recovery_reason,
            "failed_sweep": row.sweep_msg_hash,
        }
        row.recovery = row.recovery_requested_by = row.recovery_reason = None
        if choice == SweepRecovery.RESWEEP:
            rot.clear_sweep(row)
            rot.move(row, RotationState.DRAINED)
        elif choice == SweepRecovery.SWITCH:
            details["journal_entry"] = await _retire_unswept(session, row)
            rot.move(row, RotationState.SWEPT)
        else:
            rot.move(row, RotationState.CANCELED)
        await audit_log.record(session, actor, "hot_wallet.recovery_approved", row.id, details)
    crashpoint(settings, "rotation.after_recovery_approved")
    if row.state == RotationState.CANCELED:
        await asyncio.to_thread(Path(row.new_key_file).unlink, missing_ok=True)
    return rot.view(row)


async def _retire_unswept(session: AsyncSession, row: TonWalletRotation) -> str:
    """The switch without sweeping the rest, in the books: what the old wallet holds goes to
    the retired wallets (it stays on the old address), what the new one holds (booked on
    `asset:next_hot_wallet` by the failed sweep) becomes the hot wallet's."""
    cursor = await session.get(TonWalletCursor, row.new_wallet)
    assert cursor is not None  # _check: the failed sweep deployed the new wallet
    entry = await rot.retire_old_wallet(
        session,
        row.old_wallet,
        "hot_wallet.retired_unswept",
        arrived={},
        fee=0,
        after_lt=cursor.last_lt,
    )
    row.sweep_entry_id = entry
    return entry
