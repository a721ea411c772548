"""Sending a stored highload request: the one step of the payout loop (`ton_loop.send_due`),
the treasury's proposals (`treasury_loop`) and the rotation's sweep (`wallet_rotation`).

Each request is signed and stored before it is ever sent, then re-sent unchanged until it is
seen on chain or its validity ends; the wallet executes a query_id once. The node's answer
decides no outcome (the chain does), with one exception: a copy refused because the wallet
has already executed its query_id (exit code 36) proves the request landed, so each caller
stops re-sending it (recording that in its own row) and still books it from the chain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from tonrail.rails.ton.highload import refused_as_executed
from tonrail.rails.ton.toncenter import ToncenterError


class SendOutcome(StrEnum):
    SENT = "sent"  # the node took it (it may still be lost: re-sent until seen or expired)
    EXECUTED = "executed"  # a copy refused as already executed: the request landed
    REJECTED = "rejected"  # refused otherwise (e.g. a replay still queued, expired)
    FAILED = "failed"  # toncenter did not answer (down, timeout, 5xx, 429...)


@dataclass(frozen=True)
class SendResult:
    outcome: SendOutcome
    error: ToncenterError | None = None


async def send_stored(
    send: Callable[[str], Awaitable[None]], boc: str, *, copy: bool
) -> SendResult:
    """Send a stored request's BOC with `send` (the TON API's send_boc) and say how it went.

    `copy`: the request was sent before (its send count is above 0). Only a copy's refusal
    as already executed is `EXECUTED`: a first send refused so would not prove that this
    request is what the wallet executed."""
    try:
        await send(boc)
    except ToncenterError as exc:
        if exc.kind != "rejected":
            return SendResult(SendOutcome.FAILED, exc)
        if copy and refused_as_executed(exc):
            return SendResult(SendOutcome.EXECUTED, exc)
        return SendResult(SendOutcome.REJECTED, exc)
    return SendResult(SendOutcome.SENT)
