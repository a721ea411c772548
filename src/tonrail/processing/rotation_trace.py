"""Reading a hot wallet rotation's sweep on chain (processing/wallet_rotation.py): what its
trace did, hop by hop, whether or not that is what was signed.

A sweep is one highload request of the old wallet: its external, the internal_transfer to
itself, then the TON to the new wallet (which deploys it) and the USDT transfer through the
old wallet's jetton wallet. The trace is read to its end (None while a hop is missing); the
result says what reached the new wallet, every nanoton of fee, and what did not happen as
signed (`failures`, empty for a sweep that did all it was signed for).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tonrail.rails.ton.api import TonApi
from tonrail.rails.ton.chain_view import Msg, Tx, same_address
from tonrail.rails.ton.models import TonWalletRotation
from tonrail.rails.ton.states import TraceStatus
from tonrail.rails.ton.trace import follow_jetton


@dataclass(frozen=True)
class SweepTrace:
    ton_arrived: int  # nanoton the new wallet holds from the sweep (net of its own tx fees)
    usdt_arrived: int  # USDT the new wallet's jetton wallet took
    fee: int  # every nanoton the sweep cost the two wallets (the new wallet's tx included)
    deploy_tx: Tx | None  # the new wallet's transaction that took the TON, when it left
    failures: tuple[str, ...] = field(default=())  # what the chain did not do as signed


async def trace_sweep(
    api: TonApi, row: TonWalletRotation, old_raw: str, old_jetton: str | None, ext: Tx
) -> SweepTrace | None:
    """The sweep's whole trace from the old wallet's external transaction `ext`; None while a
    hop is missing."""

    async def lookup(msg: Msg) -> Tx | None:
        return await api.tx_by_in_message(msg.hash)

    self_msgs = [m for m in ext.out_msgs if same_address(m.destination, old_raw)]
    if not self_msgs:
        return SweepTrace(
            0, 0, ext.total_fees, None, ("the old wallet took the sweep but sent nothing",)
        )
    internal = await lookup(self_msgs[0])
    if internal is None:
        return None
    fee = ext.total_fees + self_msgs[0].fwd_fee + internal.total_fees
    failures: list[str] = []
    ton_arrived, usdt_arrived, deploy_tx = 0, 0, None
    to_new = next(
        (m for m in internal.out_msgs if same_address(m.destination, row.new_wallet)), None
    )
    if to_new is None or to_new.value != row.sweep_ton:
        failures.append("the TON transfer to the new wallet did not leave")
    if to_new is not None:
        # Non-bounceable: what left stays with the new wallet, whatever its transaction does.
        deploy_tx = await lookup(to_new)
        if deploy_tx is None:
            return None
        fee += to_new.fwd_fee + deploy_tx.total_fees
        ton_arrived = to_new.value - deploy_tx.total_fees
    if row.sweep_usdt and old_jetton is not None:
        to_jetton = next(
            (m for m in internal.out_msgs if same_address(m.destination, old_jetton)), None
        )
        if to_jetton is None:
            failures.append("the USDT transfer did not leave")
        else:
            jetton = await follow_jetton(to_jetton, old_raw, lookup)
            if jetton.status == TraceStatus.PENDING:
                return None
            fee += jetton.fee
            if jetton.status == TraceStatus.CONFIRMED:
                usdt_arrived = row.sweep_usdt
            else:
                failures.append(f"the USDT transfer failed: {jetton.reason}")
    return SweepTrace(ton_arrived, usdt_arrived, fee, deploy_tx, tuple(failures))
