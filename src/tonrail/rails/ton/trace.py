"""Pure reading of a payout's trace: is it pending, confirmed or bounced, and what did it cost.

`follow` walks the messages a transfer caused, one transaction at a time, through a lookup
`(message) -> Tx | None` (the transaction that took the message in); a missing transaction
means the trace has not settled yet and the outcome is `pending`. Fees are exact: every
nanoton the hot wallet spent on the transfer beyond the amount that reached the payee
(forward fees, TON attached to a jetton transfer and not returned, the fees of the
transactions that took the returns back in).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from tonrail.rails.ton.chain_view import (
    EXCESSES_OP,
    JETTON_INTERNAL_TRANSFER_OP,
    JETTON_NOT_ENOUGH_TON_EXIT_CODES,
    Msg,
    Tx,
    same_address,
)
from tonrail.rails.ton.states import TraceStatus
from tonrail.states import JETTON_ATTACH_LOW

Lookup = Callable[[Msg], Awaitable[Tx | None]]
# For a jetton internal transfer (and the transaction of our jetton wallet that sent it): the
# excess the recipient's jetton wallet returned to us and the transaction that took it in;
# None while it has not come; ASK_RECIPIENT to read the recipient's transaction instead.
ExcessFinder = Callable[[Msg, Tx], Awaitable["tuple[Msg, Tx] | str | None"]]
ASK_RECIPIENT = "ask_recipient"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: TraceStatus
    fee: int = 0  # nanoton beyond the principal, this transfer's own part
    reason: str | None = None
    trace: dict[str, str] = field(default_factory=dict)
    # The lt of the last transaction of the hot wallet this outcome read (a bounce or an
    # excess taken back in); 0 when none: what its books cover on chain (reconcile.py).
    last_lt: int = 0
    # The attempt's error code when the trace names a more precise one than the status
    # (JETTON_ATTACH_LOW); None: the status's own ("bounced", "failed").
    code: str | None = None


async def follow_ton(out: Msg, hot_wallet: str, lookup: Lookup) -> Outcome:
    """A TON payout: confirmed when the payee's transaction took it without bouncing.

    A non-bounceable message is confirmed once our wallet sent it: TON delivers every
    internal message, and without the bounce flag its value stays with the destination
    whatever that account does with it (it cannot come back, so there is nothing to wait
    for). A bounceable one may return, so the payee's transaction is read."""
    if not out.bounce:
        return Outcome(TraceStatus.CONFIRMED, fee=out.fwd_fee, trace={"delivery": "non_bounceable"})
    dest = await lookup(out)
    if dest is None:
        return Outcome(TraceStatus.PENDING)
    trace = {"destination_tx": dest.hash}
    bounce = next((m for m in dest.out_msgs if m.bounced), None)
    if bounce is None:
        return Outcome(TraceStatus.CONFIRMED, fee=out.fwd_fee, trace=trace)
    return await _bounced_back(out, bounce, lookup, trace, "bounced by the destination")


async def _bounced_back(
    out: Msg, bounce: Msg, lookup: Lookup, trace: dict[str, str], reason: str
) -> Outcome:
    """Our message bounced: the value came back to the hot wallet, minus what it cost."""
    back = await lookup(bounce)
    if back is None:
        return Outcome(TraceStatus.PENDING, trace=trace)
    trace["bounce_tx"] = back.hash
    lost = out.value - bounce.value + back.total_fees
    return Outcome(
        TraceStatus.BOUNCED, fee=out.fwd_fee + lost, reason=reason, trace=trace, last_lt=back.lt
    )


def attach_refused(out: Msg, ours: Tx, our_jetton_wallet: str | None) -> bool:
    """Our own jetton wallet refused the transfer for too little TON attached, and only that:
    the message went to our jetton wallet (`our_jetton_wallet`), whose transaction aborted
    with the not-enough-TON exit code (JETTON_NOT_ENOUGH_TON_EXIT_CODES) and sent no
    internal transfer. An aborted transaction commits nothing, so no jetton moved; the same
    transfer with more TON attached is accepted."""
    return (
        our_jetton_wallet is not None
        and same_address(out.destination, our_jetton_wallet)
        and same_address(ours.account, our_jetton_wallet)
        and ours.aborted
        and ours.exit_code in JETTON_NOT_ENOUGH_TON_EXIT_CODES
        and not any(m.opcode == JETTON_INTERNAL_TRANSFER_OP for m in ours.out_msgs)
    )


async def follow_jetton(
    out: Msg,
    hot_wallet: str,
    lookup: Lookup,
    find_excess: ExcessFinder | None = None,
    our_jetton_wallet: str | None = None,
) -> Outcome:
    """A jetton payout: confirmed when the payee's jetton wallet took the internal transfer.

    That wallet answers a transfer it accepted with an excess to our hot wallet carrying the
    transfer's query_id (TEP-74), and only then: its compute phase must succeed for the
    message to leave. So with `find_excess`, the excess that came back from the address our
    jetton wallet sent the transfer to settles the payout without reading the recipient's
    own transaction; a transfer that found no excess is read the long way. A transfer our
    jetton wallet (`our_jetton_wallet`) refused for too little TON attached bounces with the
    code JETTON_ATTACH_LOW (`attach_refused`)."""
    ours = await lookup(out)
    if ours is None:
        return Outcome(TraceStatus.PENDING)
    trace = {"our_jetton_wallet_tx": ours.hash}
    if ours.exit_code is not None and ours.aborted:
        trace["our_jetton_wallet_exit_code"] = str(ours.exit_code)
    bounce = next((m for m in ours.out_msgs if m.bounced), None)
    refused_here = attach_refused(out, ours, our_jetton_wallet)
    if refused_here and bounce is not None and same_address(bounce.destination, hot_wallet):
        refused = await _bounced_back(
            out,
            bounce,
            lookup,
            trace,
            f"our jetton wallet refused the transfer: {out.value} nanoton attached is less "
            f"than it asks for (exit code {ours.exit_code}); no jetton moved",
        )
        if refused.status == TraceStatus.PENDING:
            return refused
        return replace(refused, code=JETTON_ATTACH_LOW)
    if bounce is not None or ours.aborted:
        if bounce is None:
            return Outcome(
                TraceStatus.FAILED,
                fee=out.fwd_fee + out.value,
                reason="our jetton wallet rejected the transfer",
                trace=trace,
            )
        return await _bounced_back(
            out, bounce, lookup, trace, "our jetton wallet bounced the transfer (balance?)"
        )
    internal = next((m for m in ours.out_msgs if m.opcode == JETTON_INTERNAL_TRANSFER_OP), None)
    if internal is None:
        # Another failure with its own reason: alike the one above in shape only.
        return Outcome(
            TraceStatus.FAILED,
            fee=out.fwd_fee + out.value,
            reason="no internal transfer left our jetton wallet",
            trace=trace,
        )
    if find_excess is not None:
        found = await find_excess(internal, ours)
        if found is None:
            return Outcome(TraceStatus.PENDING, trace=trace)
        if isinstance(found, tuple):
            returned, took = found
            trace["recipient_jetton_wallet"] = str(internal.destination)
            trace["excess_tx"] = took.hash
            return Outcome(
                TraceStatus.CONFIRMED,
                fee=out.fwd_fee + out.value - returned.value + took.total_fees,
                trace=trace,
                last_lt=took.lt,
            )
    theirs = await lookup(internal)
    if theirs is None:
        return Outcome(TraceStatus.PENDING, trace=trace)
    trace["recipient_jetton_wallet_tx"] = theirs.hash
    if theirs.aborted:
        # The jettons bounce back to our jetton wallet; the TON attached is spent.
        return Outcome(
            TraceStatus.BOUNCED,
            fee=out.fwd_fee + out.value,
            reason="the recipient's jetton wallet refused the transfer",
            trace=trace,
        )
    excess = next(
        (
            m
            for m in theirs.out_msgs
            if m.opcode == EXCESSES_OP and same_address(m.destination, hot_wallet)
        ),
        None,
    )
    if excess is None:
        return Outcome(TraceStatus.CONFIRMED, fee=out.fwd_fee + out.value, trace=trace)
    back = await lookup(excess)
    if back is None:
        return Outcome(TraceStatus.PENDING, trace=trace)
    trace["excess_tx"] = back.hash
    return Outcome(
        TraceStatus.CONFIRMED,
        fee=out.fwd_fee + out.value - excess.value + back.total_fees,
        trace=trace,
        last_lt=back.lt,
    )


def split_common_fee(common: int, count: int) -> list[int]:
    """Equal shares of the request's own fees; the remainder goes to the first transfers."""
    if count <= 0:
        return []
    base, rest = divmod(common, count)
    return [base + (1 if i < rest else 0) for i in range(count)]
