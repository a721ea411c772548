"""Tracking TON requests on chain until every transfer of each is final."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, select, update

from tonrail import clock
from tonrail.errors import Conflict
from tonrail.kit.claims import claim, release
from tonrail.processing.context import TonRailContext, request_transfers, transaction
from tonrail.processing.outcomes import (
    Stray,
    expire_request,
    finalize_request,
    mark_overdue,
    mark_unknown,
)
from tonrail.rails.ton.api import TonApi
from tonrail.rails.ton.chain_view import Msg, Tx, query_id_of, same_address
from tonrail.rails.ton.feed import NotCovered
from tonrail.rails.ton.models import TonRequest, TonTransfer
from tonrail.rails.ton.states import OPEN_REQUEST_STATES, RequestStatus, TraceStatus, TransferStatus
from tonrail.rails.ton.trace import (
    ASK_RECIPIENT,
    ExcessFinder,
    Lookup,
    Outcome,
    follow_jetton,
    follow_ton,
)

log = structlog.get_logger(__name__)


TRACK_CONCURRENCY = 8  # requests followed at once
EXCESS_PATIENCE_S = 10.0  # a jetton transfer without an excess by then: read the recipient


async def track_open(ctx: TonRailContext) -> int:
    """Advance every request that is not final; returns how many reached a final state.

    Requests are followed concurrently (TRACK_CONCURRENCY): each waits on chain reads, not
    on this process. One looked at less than TON_TRACK_PAUSE_MS ago is left alone. A
    pipeline, not a barrier: while some requests are being settled (their books written),
    requests that became open meanwhile are claimed and read every TON_TRACK_PAUSE_MS, so a
    request that just landed is not kept waiting by the settling of others. Each request is
    looked at once per call, and the call returns when every one it started is done."""
    # The hot wallet's feed, from its last transaction: the requests found from here on.
    await ctx.feeds().start(ctx.api, ctx.wallet_raw)
    pause = ctx.settings.ton_track_pause_ms / 1000
    slots = asyncio.Semaphore(TRACK_CONCURRENCY)
    started: dict[str, asyncio.Task[bool]] = {}

    async def track(request_id: str) -> bool:
        try:
            async with slots:
                try:
                    done = await track_request(ctx, request_id)
                except Conflict as exc:
                    if exc.code != "concurrent_update":
                        raise
                    # Another worker moved it meanwhile (its lease on it had run out): the
                    # next look reads what it wrote. One request's race never fails the round.
                    log.info("ton request changed by another worker", request=request_id)
                    done = False
        finally:
            async with transaction(ctx) as session:
                await release(session, TonRequest, [request_id], ctx.worker_id)
        if done:
            ctx.track_after.pop(request_id, None)
            ctx.found.pop(request_id, None)
            ctx.excess_waits.pop(request_id, None)
        else:
            ctx.track_after[request_id] = time.monotonic() + pause
        return done

    while True:
        busy = sum(1 for t in started.values() if not t.done())
        claimed = await _claim_open(
            ctx, exclude=set(started), first=not started, room=TRACK_CONCURRENCY - busy
        )
        for request_id in claimed:
            started[request_id] = asyncio.create_task(track(request_id))
        running = [t for t in started.values() if not t.done()]
        if not running:
            break
        await asyncio.wait(running, timeout=pause)
    results = [t.result() if not t.exception() else t.exception() for t in started.values()]
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return sum(1 for r in results if r is True)


async def _claim_open(
    ctx: TonRailContext, *, exclude: set[str], first: bool, room: int
) -> list[str]:
    """Lease the open requests due for a look (not resting, not in `exclude`): at most
    `room`, what this worker can follow at once. Leasing more would only park them behind
    the slots, out of reach of the other workers, until their leases ran out mid-wait."""
    now = time.monotonic()
    for request_id in [r for r, after in ctx.track_after.items() if after <= now]:
        del ctx.track_after[request_id]
    skip = [*ctx.track_after, *exclude]
    condition: ColumnElement[bool] = TonRequest.status.in_(OPEN_REQUEST_STATES)
    if skip:
        condition = condition & TonRequest.id.not_in(skip)
    limit = min(ctx.settings.worker_batch_size - len(exclude), room)
    if limit <= 0:
        return []
    async with transaction(ctx) as session:
        open_requests = await claim(
            session,
            TonRequest,
            condition,
            # The worker's lease, as every claim takes it: alike other claims in shape only.
            worker_id=ctx.worker_id,
            lease_seconds=ctx.settings.worker_lease_seconds,
            limit=limit,
            order_by=(TonRequest.created_at,),
        )
    claimed = [r.id for r in open_requests]
    if first:
        # What another worker finished or took over is no longer ours to remember.
        for request_id in set(ctx.found) - set(ctx.track_after) - set(claimed):
            del ctx.found[request_id]
            ctx.excess_waits.pop(request_id, None)
    return claimed


async def processed_flag(ctx: TonRailContext, query_id: int) -> bool | None:
    """The hot wallet's `processed?(query_id, need_clean=false)`; None when it cannot be read."""
    return await processed_by(ctx.api, ctx.wallet.address.to_str(), query_id)


async def processed_by(api: TonApi, address: str, query_id: int) -> bool | None:
    """A highload wallet's `processed?(query_id, need_clean=false)` (any of ours: the hot
    wallet, or an old one a rotation sweeps); None when it cannot be read."""
    try:
        exit_code, stack = await api.run_get_method(
            address, "processed?", [["num", hex(query_id)], ["num", "0x0"]]
        )
    except Exception:
        exit_code, stack = -1, []
    if exit_code != 0 or not stack:
        # No code to ask: a wallet that was never deployed has processed nothing.
        try:
            state, _ = await api.account_state(address)
        except Exception:
            return None
        return False if state != "active" else None
    value = stack[0][1] if isinstance(stack[0], list) else stack[0]
    return int(str(value), 16) != 0 if isinstance(value, str) else bool(value)


async def _external(ctx: TonRailContext, msg_hash: str, signed_at: datetime) -> Tx | None:
    """The hot wallet's transaction that took the request's external message: from the hot
    wallet's own feed (one listing a block for every request in flight), else, for a request
    signed before the feed began, asked of toncenter by the message hash."""
    try:
        return await ctx.feeds().find_sent_after(ctx.api, ctx.wallet_raw, msg_hash, signed_at)
    except NotCovered:
        return await ctx.api.tx_by_in_message(msg_hash)


def _lookup(ctx: TonRailContext, request_id: str, after_lt: int) -> Lookup:
    """The transaction that took a message of this request's trace (all created after
    `after_lt`): from what was found already, from our own accounts' feeds, else asked of
    toncenter by the message hash."""
    found = ctx.found.setdefault(request_id, {})
    feeds = ctx.feeds()

    async def lookup(msg: Msg) -> Tx | None:
        tx = found.get(msg.hash)
        if tx is not None:
            return tx
        tx = None
        covered = False
        if msg.destination is not None and feeds.covers(msg.destination):
            try:
                tx = await feeds.find(ctx.api, msg.destination, msg.hash, after_lt)
                covered = True
            except NotCovered:
                pass
        if not covered:
            tx = await ctx.api.tx_by_in_message(msg.hash)
        if tx is not None:
            found[msg.hash] = tx
        return tx

    return lookup


def _excess_finder(ctx: TonRailContext, request_id: str, after_lt: int) -> ExcessFinder:
    """The excess of a jetton transfer from the hot wallet's feed, by query_id and sender;
    after EXCESS_PATIENCE_S without one, the recipient's transaction is read instead."""
    feeds = ctx.feeds()
    waits = ctx.excess_waits.setdefault(request_id, {})

    async def find(internal: Msg, ours: Tx) -> tuple[Msg, Tx] | str | None:
        query_id = query_id_of(internal)
        if query_id is None:
            return ASK_RECIPIENT
        try:
            took = await feeds.find_excess(
                ctx.api, ctx.wallet_raw, query_id, internal.destination, after_lt
            )
        except NotCovered:
            return ASK_RECIPIENT
        if took is not None and took.in_msg is not None:
            return took.in_msg, took
        since = waits.setdefault(internal.hash, time.monotonic())
        return ASK_RECIPIENT if time.monotonic() - since > EXCESS_PATIENCE_S else None

    return find


async def track_request(ctx: TonRailContext, request_id: str) -> bool:
    """Read the chain for one request and record what it shows; True once it is final."""
    async with transaction(ctx) as session:
        request = await session.get(TonRequest, request_id)
        if request is None or request.status not in OPEN_REQUEST_STATES:
            return False
        msg_hash = request.msg_hash_norm
        valid_until = request.valid_until
        query_id = request.query_id
        processed = request.status == RequestStatus.PROCESSED
        # Signed before it was first sent: younger than the timeout, nothing can be overdue.
        overdue = clock.now() - request.created_at > timedelta(seconds=ctx.confirmation_timeout_s)
        signed_at = request.created_at
    found = ctx.found.setdefault(request_id, {})
    ext = found.get(msg_hash) or await _external(ctx, msg_hash, signed_at)
    if ext is None and processed:
        return False  # seen processed before (`resolve-unknown` found it): never expired
    if ext is None:
        chain_now = int(clock.now().timestamp())
        if chain_now <= valid_until + ctx.settings.ton_expiry_margin_s:
            if overdue:
                await mark_overdue(ctx, request_id, ctx.confirmation_timeout_s)
            return False
        # Past validity: the wallet can no longer accept it. Prove it never did.
        if await processed_flag(ctx, query_id) is False and (
            await ctx.api.tx_by_in_message(msg_hash) is None
        ):
            await expire_request(ctx, request_id)
            return True
        await mark_unknown(ctx, request_id)
        return False
    found[msg_hash] = ext
    lookup = _lookup(ctx, request_id, ext.lt)
    txs = await _transfer_txs(ctx, ext, lookup)
    if txs is None:
        if overdue:
            await mark_overdue(ctx, request_id, ctx.confirmation_timeout_s)
        return False
    out_msgs = [
        m for tx in txs for m in tx.out_msgs if not same_address(m.destination, ctx.wallet_raw)
    ]
    common_fee = (
        ext.total_fees
        + sum(
            m.fwd_fee
            for tx in [ext, *txs]
            for m in tx.out_msgs
            if same_address(m.destination, ctx.wallet_raw)
        )
        + sum(tx.total_fees for tx in txs)
    )
    if not txs:
        # Accepted but the self-message was not sent (no funds?): nothing went out.
        common_fee = ext.total_fees
    # Out messages of the external too: it should only carry the self-message, but whatever
    # left the wallet in this request must reach the books.
    out_msgs += [m for m in ext.out_msgs if not same_address(m.destination, ctx.wallet_raw)]
    settled = await _settle(ctx, request_id, ext, txs, out_msgs, common_fee, lookup)
    if not settled and overdue:
        await mark_overdue(ctx, request_id, ctx.confirmation_timeout_s)
    return settled


async def _transfer_txs(ctx: TonRailContext, ext: Tx, lookup: Lookup) -> list[Tx] | None:
    """The internal_transfer transactions of a request (nested packs included), or None
    while one is still missing."""
    txs: list[Tx] = []
    pending = [m for m in ext.out_msgs if same_address(m.destination, ctx.wallet_raw)]
    while pending:
        msg = pending.pop()
        tx = await lookup(msg)
        if tx is None:
            return None
        txs.append(tx)
        pending += [m for m in tx.out_msgs if same_address(m.destination, ctx.wallet_raw)]
    return txs


async def _settle(
    ctx: TonRailContext,
    request_id: str,
    ext: Tx,
    txs: list[Tx],
    out_msgs: list[Any],
    common_fee: int,
    lookup: Lookup,
) -> bool:
    async with transaction(ctx) as session:
        # Locked, and read again: another worker may have settled it since this one looked
        # (its lease ran out mid-read); a final request is never taken back to `processed`.
        request = await session.get(TonRequest, request_id, with_for_update=True)
        assert request is not None
        if request.status not in OPEN_REQUEST_STATES:
            return True
        transfers = await request_transfers(session, request_id)
        if request.ext_tx_hash is None:
            # Found now (a request may already be `processed` without it: its copy was
            # refused as executed, or `processed?` said so).
            request.status = RequestStatus.PROCESSED
            request.ext_tx_hash = ext.hash
            request.ext_lt = ext.lt
            request.transfer_tx_hash = txs[0].hash if txs else None
            request.common_fee = common_fee
            request.updated_at = clock.now()
        # Match each transfer to its own out message: destination and body are unique.
        unmatched = list(out_msgs)
        # The hot wallet transaction that sent each out message (a nested pack has its own).
        sent_by = {m.hash: tx.hash for tx in txs for m in tx.out_msgs}
        for t in transfers:
            if t.status != TransferStatus.PENDING:
                continue
            found = next(
                (
                    m
                    for m in unmatched
                    if same_address(m.destination, t.message_to) and m.body_hash == t.body_hash
                ),
                None,
            )
            if found is None:
                t.status = TransferStatus.NOT_SENT
            else:
                unmatched.remove(found)
                t.status = TransferStatus.SENT
                t.out_msg_hash = found.hash
                t.trace = {
                    **t.trace,
                    "out_msg": found.hash,
                    "sent_tx": sent_by.get(found.hash, ""),
                    "value": str(found.value),
                    "fwd_fee": str(found.fwd_fee),
                }
            t.updated_at = clock.now()
        await session.flush()
        pending_transfers = [
            (t.attempt_id, t.asset, t.out_msg_hash, dict(t.trace))
            for t in transfers
            if t.status == TransferStatus.SENT
        ]
        claimed = {t.out_msg_hash for t in transfers if t.out_msg_hash}
    # Messages no transfer of ours explains (see `Stray`): followed like a TON payout.
    strays = [m for m in out_msgs if m.hash not in claimed]
    outcomes: dict[str, Outcome] = {}
    by_hash = {m.hash: m for m in out_msgs}
    lookups = ctx.follow_slots
    excesses = _excess_finder(ctx, request_id, ext.lt)

    async def follow_one(attempt_id: str, asset: str, msg: Msg) -> None:
        async with lookups:
            if asset == "TON":
                outcomes[attempt_id] = await follow_ton(msg, ctx.wallet_raw, lookup)
            else:
                outcomes[attempt_id] = await follow_jetton(
                    msg, ctx.wallet_raw, lookup, excesses, our_jetton_wallet=ctx.jetton_wallet
                )

    jobs = []
    for attempt_id, asset, out_hash, trace in pending_transfers:
        if "outcome" in trace:  # final on an earlier round: the chain will not change it
            o = trace["outcome"]
            outcomes[attempt_id] = Outcome(
                o["status"],
                int(o["fee"]),
                o.get("reason"),
                dict(o.get("trace", {})),
                int(o.get("last_lt", 0)),
                o.get("code"),
            )
            continue
        msg = by_hash.get(out_hash or "")
        if msg is not None:
            jobs.append(follow_one(attempt_id, asset, msg))
    stray_outcomes: dict[str, Outcome] = {}

    async def follow_stray(msg: Msg) -> None:
        async with lookups:
            stray_outcomes[msg.hash] = await follow_ton(msg, ctx.wallet_raw, lookup)

    jobs += [follow_stray(m) for m in strays]
    await asyncio.gather(*jobs)
    if any(o.status == TraceStatus.PENDING for o in (*outcomes.values(), *stray_outcomes.values())):
        await _remember_final(ctx, outcomes)
        return False
    # The hot wallet's transactions the request's books cover: from the external to the
    # last one that took a bounce or an excess back in (reconcile.py compares up to an lt).
    last_lt = max(
        [ext.lt, *(tx.lt for tx in txs), *(o.last_lt for o in outcomes.values())]
        + [o.last_lt for o in stray_outcomes.values()]
    )
    await finalize_request(
        ctx,
        request_id,
        outcomes,
        [Stray(m, stray_outcomes[m.hash]) for m in strays],
        lts=(ext.lt, last_lt),
    )
    return True


async def _remember_final(ctx: TonRailContext, outcomes: dict[str, Outcome]) -> None:
    """Keep the outcomes already final, so later rounds follow only what is still pending."""
    final = {a: o for a, o in outcomes.items() if o.status != TraceStatus.PENDING}
    if not final:
        return
    async with transaction(ctx) as session:
        rows = (
            await session.execute(
                select(TonTransfer.attempt_id, TonTransfer.trace).where(
                    TonTransfer.attempt_id.in_(list(final))
                )
            )
        ).all()
        changed = [
            {
                "attempt_id": attempt_id,
                "trace": {
                    **trace,
                    "outcome": {
                        "status": final[attempt_id].status,
                        "fee": final[attempt_id].fee,
                        "reason": final[attempt_id].reason,
                        "trace": final[attempt_id].trace,
                        "last_lt": final[attempt_id].last_lt,
                        "code": final[attempt_id].code,
                    },
                },
            }
            for attempt_id, trace in rows
            if "outcome" not in (trace or {})
        ]
        if changed:
            await session.execute(update(TonTransfer), changed)
