"""Reading payout traces cheaply: our accounts as feeds, non-bounceable TON settled at send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tonrail.rails.ton import feed as feed_module
from tonrail.rails.ton.chain_view import Msg, Tx
from tonrail.rails.ton.feed import AccountFeed, NotCovered, OwnFeeds
from tonrail.rails.ton.trace import follow_jetton, follow_ton

HOT = "0:" + "AA" * 32
OURS = "0:" + "BB" * 32
PAYEE = "0:" + "CC" * 32


def msg(h: str, dest: str, value: int = 0, *, bounce: bool = True, **more: Any) -> Msg:
    return Msg(
        hash=h,
        source=None,
        destination=dest,
        value=value,
        fwd_fee=more.pop("fwd_fee", 0),
        opcode=more.pop("opcode", None),
        bounced=more.pop("bounced", False),
        body_hash=None,
        body_b64=None,
        comment=None,
        bounce=bounce,
    )


def tx(h: str, lt: int, account: str, in_msg: Msg, *out: Msg, fees: int = 0) -> Tx:
    return Tx(h, lt, 0, account, False, fees, in_msg, tuple(out))


class FakeChain:
    """Transactions by account, listed the way toncenter lists them (lt ascending)."""

    def __init__(self) -> None:
        self.txs: list[Tx] = []
        self.listed: list[tuple[str, int]] = []
        self.by_message: list[str] = []

    async def account_transactions(self, account: str, after_lt: int, limit: int) -> list[Tx]:
        self.listed.append((account, after_lt))
        mine = sorted((t for t in self.txs if t.account == account and t.lt > after_lt), key=_lt)
        return mine[:limit]

    async def last_lt(self, address: str) -> int:
        return max((t.lt for t in self.txs if t.account == address), default=0)

    async def tx_by_in_message(self, msg_hash: str) -> Tx | None:
        self.by_message.append(msg_hash)
        return next((t for t in self.txs if t.in_msg and t.in_msg.hash == msg_hash), None)


def _lt(t: Tx) -> int:
    return t.lt


async def test_a_feed_answers_many_messages_with_one_listing() -> None:
    chain = FakeChain()
    chain.txs = [tx(f"t{i}", 100 + i, OURS, msg(f"m{i}", OURS)) for i in range(50)]
    feeds = OwnFeeds(frozenset({HOT, OURS}))
    assert feeds.covers(OURS.lower()) and not feeds.covers(PAYEE)
    found = [await feeds.find(chain, OURS, f"m{i}", 90) for i in range(50)]
    assert [t.hash for t in found if t is not None] == [f"t{i}" for i in range(50)]
    assert len(chain.listed) == 1 and not chain.by_message
    # Not on chain yet: None, and a later listing (after REFRESH_EVERY_S) picks it up.
    feed_module.REFRESH_EVERY_S, saved = 0.0, feed_module.REFRESH_EVERY_S
    try:
        assert await feeds.find(chain, OURS, "late", 90) is None
        chain.txs.append(tx("t-late", 500, OURS, msg("late", OURS)))
        late = await feeds.find(chain, OURS, "late", 90)
        assert late is not None and late.hash == "t-late"
        assert chain.listed[-1] == (OURS, 149)  # only what is new since the cursor
    finally:
        feed_module.REFRESH_EVERY_S = saved


async def test_a_feed_reaches_back_for_an_older_request_and_pages() -> None:
    chain = FakeChain()
    chain.txs = [tx(f"t{i}", 1000 + i, HOT, msg(f"m{i}", HOT)) for i in range(700)]
    feed = AccountFeed(HOT, start_lt=1500, cursor_lt=1500)
    # A request whose messages were created before the feed started: it lists back to it.
    got = await feed.find(chain, "m10", 1005)
    assert got is not None and got.lt == 1010 and feed.start_lt == 1005
    assert await feed.find(chain, "m650", 1005) is not None
    # Too far back to list (more than MAX_PAGES pages): the caller asks per message.
    big = AccountFeed(HOT, start_lt=10**9, cursor_lt=10**9)
    chain.txs = [tx(f"u{i}", 10 + i, HOT, msg(f"n{i}", HOT)) for i in range(5000)]
    with pytest.raises(NotCovered):
        await big.find(chain, "n1", 0)


async def test_forgetting_old_transactions_narrows_what_a_feed_covers() -> None:
    feed = AccountFeed(HOT, start_lt=0, cursor_lt=100)
    for i in range(10):
        feed.by_in_msg[f"m{i}"] = tx(f"t{i}", i + 1, HOT, msg(f"m{i}", HOT))
    feed._forget_oldest(4)
    assert feed.start_lt == 4 and "m3" not in feed.by_in_msg and "m4" in feed.by_in_msg


async def test_non_bounceable_ton_is_final_when_sent_bounceable_waits_for_the_payee() -> None:
    chain = FakeChain()

    async def lookup(m: Msg) -> Tx | None:
        return await chain.tx_by_in_message(m.hash)

    sent = msg("out1", PAYEE, 10**9, bounce=False, fwd_fee=700)
    outcome = await follow_ton(sent, HOT, lookup)
    assert (outcome.status, outcome.fee, chain.by_message) == ("confirmed", 700, [])
    risky = msg("out2", PAYEE, 10**9, bounce=True, fwd_fee=700)
    assert (await follow_ton(risky, HOT, lookup)).status == "pending"
    back = msg("b2", HOT, 10**9 - 5000, bounced=True)
    chain.txs = [
        tx("p2", 10, PAYEE, risky, back),
        tx("h2", 11, HOT, back, fees=300),
    ]
    bounced = await follow_ton(risky, HOT, lookup)
    assert bounced.status == "bounced" and bounced.fee == 700 + 5000 + 300


async def test_a_jetton_payout_is_read_to_the_payees_jetton_wallet_and_its_excess() -> None:
    from tonrail.rails.ton.chain_view import EXCESSES_OP, JETTON_INTERNAL_TRANSFER_OP

    chain = FakeChain()
    theirs_addr = "0:" + "DD" * 32
    out = msg("j1", OURS, 50_000_000, fwd_fee=1_000)
    internal = msg("i1", theirs_addr, 40_000_000, opcode=JETTON_INTERNAL_TRANSFER_OP)
    excess = msg("e1", HOT, 20_000_000, opcode=EXCESSES_OP)
    chain.txs = [
        tx("o1", 10, OURS, out, internal),
        tx("r1", 11, theirs_addr, internal, excess),
        tx("x1", 12, HOT, excess, fees=400),
    ]

    async def lookup(m: Msg) -> Tx | None:
        return await chain.tx_by_in_message(m.hash)

    outcome = await follow_jetton(out, HOT, lookup)
    assert outcome.status == "confirmed"
    assert outcome.fee == 1_000 + 50_000_000 - 20_000_000 + 400
    assert outcome.trace == {
        "our_jetton_wallet_tx": "o1",
        "recipient_jetton_wallet_tx": "r1",
        "excess_tx": "x1",
    }


def excess_body(query_id: int) -> str:
    import base64

    from ton_core import begin_cell

    from tonrail.rails.ton.chain_view import EXCESSES_OP

    cell = begin_cell().store_uint(EXCESSES_OP, 32).store_uint(query_id, 64).end_cell()
    return base64.b64encode(cell.to_boc()).decode()


async def test_a_jetton_payout_settles_on_its_excess_from_the_recipients_wallet() -> None:
    """The recipient's jetton wallet sends the excess only after taking the transfer: the
    hot wallet's feed, matched by query_id and sender, settles the payout without a read of
    the recipient's own transaction."""
    from dataclasses import replace

    from tonrail.rails.ton.chain_view import EXCESSES_OP, JETTON_INTERNAL_TRANSFER_OP
    from tonrail.rails.ton.trace import ASK_RECIPIENT

    theirs_addr = "0:" + "DD" * 32
    chain = FakeChain()
    feeds = OwnFeeds(frozenset({HOT, OURS}))
    out = msg("j1", OURS, 50_000_000, fwd_fee=1_000)
    internal = replace(
        msg("i1", theirs_addr, 40_000_000, opcode=JETTON_INTERNAL_TRANSFER_OP),
        body_b64=excess_body(77),  # the same 64 bits after the opcode: query_id 77
    )
    excess = replace(
        msg("e1", HOT, 20_000_000, opcode=EXCESSES_OP),
        source=theirs_addr,
        body_b64=excess_body(77),
    )
    forged = replace(excess, hash="e2", source="0:" + "EE" * 32)  # same query_id, wrong sender
    chain.txs = [
        tx("o1", 10, OURS, out, internal),
        tx("x0", 11, HOT, forged, fees=1),
        tx("x1", 12, HOT, excess, fees=400),
    ]

    async def lookup(m: Msg) -> Tx | None:
        if feeds.covers(m.destination):
            return await feeds.find(chain, str(m.destination), m.hash, 5)
        return await chain.tx_by_in_message(m.hash)

    async def find_excess(i: Msg, ours: Tx) -> tuple[Msg, Tx] | str | None:
        from tonrail.rails.ton.chain_view import query_id_of

        query_id = query_id_of(i)
        assert query_id == 77
        took = await feeds.find_excess(chain, HOT, query_id, i.destination, 5)
        return (took.in_msg, took) if took is not None and took.in_msg else ASK_RECIPIENT

    outcome = await follow_jetton(out, HOT, lookup, find_excess)
    assert outcome.status == "confirmed"
    assert outcome.fee == 1_000 + 50_000_000 - 20_000_000 + 400
    assert outcome.trace["excess_tx"] == "x1"
    assert chain.by_message == []  # two listings, no per-message read
    assert {a for a, _ in chain.listed} == {HOT, OURS}


async def test_lookups_waiting_together_share_one_listing() -> None:
    """Many lookups of messages not yet on chain, all at once: one listing answers them all
    (each waiter used to list again behind the lock, a convoy of listings)."""
    import asyncio

    class SlowChain(FakeChain):
        async def account_transactions(self, account: str, after_lt: int, limit: int) -> list[Tx]:
            await asyncio.sleep(0.01)  # a listing takes a round trip, as over HTTP
            return await super().account_transactions(account, after_lt, limit)

    chain = SlowChain()
    chain.txs = [tx(f"t{i}", 100 + i, OURS, msg(f"m{i}", OURS)) for i in range(5)]
    feed = AccountFeed(OURS, start_lt=90, cursor_lt=90)
    feed_module.REFRESH_EVERY_S, saved = 0.0, feed_module.REFRESH_EVERY_S
    try:
        found = await asyncio.gather(*[feed.find(chain, f"m{i % 5}", 90) for i in range(40)])
        assert all(t is not None for t in found)
        assert len(chain.listed) == 1
        # Not on chain: the first waiter's listing was sent before the others asked, so one
        # more listing answers every other waiter; not one listing each.
        missing = await asyncio.gather(*[feed.find(chain, f"later{i}", 90) for i in range(40)])
        assert missing == [None] * 40 and len(chain.listed) == 3
    finally:
        feed_module.REFRESH_EVERY_S = saved


async def test_requests_are_found_in_the_hot_wallets_own_stream() -> None:
    """The external of every request signed after the hot wallet's feed began is found by
    listing the wallet's transactions (by its normalized hash), not asked per request; one
    signed before the feed began cannot be answered by it (NotCovered: asked per message)."""
    from dataclasses import replace
    from datetime import timedelta

    from tonrail import clock

    chain = FakeChain()
    chain.txs = [tx("old", 50, HOT, msg("m-old", HOT))]
    feeds = OwnFeeds(frozenset({HOT}))
    await feeds.start(chain, HOT)
    await feeds.start(chain, HOT)  # once
    feed = feeds.feeds[HOT]
    assert (feed.start_lt, feed.cursor_lt) == (50, 50) and feed.since is not None
    ext_in = replace(msg("ext-plain", HOT), hash_norm="ext-norm")
    later = clock.now() + timedelta(seconds=5)
    assert await feeds.find_sent_after(chain, HOT, "ext-norm", later) is None
    chain.txs += [tx(f"x{i}", 60 + i, HOT, msg(f"other{i}", HOT)) for i in range(20)]
    chain.txs.append(tx("ext-tx", 100, HOT, ext_in))
    feed_module.REFRESH_EVERY_S, saved = 0.0, feed_module.REFRESH_EVERY_S
    try:
        found = await feeds.find_sent_after(chain, HOT, "ext-norm", later)
    finally:
        feed_module.REFRESH_EVERY_S = saved
    assert found is not None and found.hash == "ext-tx"
    assert chain.by_message == [] and chain.listed == [(HOT, 50), (HOT, 50)]
    with pytest.raises(NotCovered):
        await feeds.find_sent_after(chain, HOT, "ext-norm", feed.since - timedelta(seconds=1))
    with pytest.raises(NotCovered):
        await OwnFeeds(frozenset({HOT})).find_sent_after(chain, HOT, "ext-norm", later)


async def test_a_feed_keeps_only_recent_transactions() -> None:
    """What a worker remembers of the hot wallet stays bounded by age (feed.KEEP_SECONDS):
    a 30-minute soak grew each worker by 11-12 % while the feed kept every transaction
    (about 11 KiB each). A request older than what is kept is found by its hash instead."""
    chain = FakeChain()
    start = 1_800_000_000
    chain.txs = [
        Tx(f"t{i}", 1000 + i, start + 2 * i, HOT, False, 0, msg(f"m{i}", HOT), ())
        for i in range(600)
    ]  # twenty minutes of transactions, one every 2 s
    since = datetime.fromtimestamp(start - 10, UTC)
    feed = AccountFeed(HOT, start_lt=999, cursor_lt=999, since=since)
    assert await feed.find(chain, "m599", 999) is not None  # lists all 600, then ages them
    kept = {t.hash for t in feed.by_in_msg.values()}
    newest = start + 2 * 599
    cutoff = newest - feed_module.KEEP_SECONDS
    assert kept == {f"t{i}" for i in range(600) if start + 2 * i >= cutoff}
    assert feed.start_lt == 1000 + min(int(h[1:]) for h in kept) - 1
    assert feed.since == datetime.fromtimestamp(newest - feed_module.KEEP_SECONDS - 1, UTC)
    # An old request's message: the feed lists back for it (bounded), or says NotCovered.
    assert (await feed.find(chain, "m10", 1005)) is not None
    with pytest.raises(NotCovered):
        await feed.find_sent_after(chain, "m1", since + timedelta(seconds=30))


def refusal_trace(
    exit_code: int, *, jetton_wallet: str = OURS, sent_internal: bool = False
) -> tuple[Msg, list[Tx]]:
    """Our jetton wallet's aborted transaction for a transfer with `value` attached: the TON
    bounced back to the hot wallet (less its fees), or an internal transfer left."""
    from dataclasses import replace

    from tonrail.rails.ton.chain_view import JETTON_INTERNAL_TRANSFER_OP

    out = msg("j1", jetton_wallet, 15_000_000, fwd_fee=1_000)
    back = replace(msg("b1", HOT, 14_000_000, bounced=True), source=jetton_wallet)
    outs = [back]
    if sent_internal:
        outs.append(msg("i1", PAYEE, 100, opcode=JETTON_INTERNAL_TRANSFER_OP))
    ours = replace(tx("o1", 10, jetton_wallet, out, *outs), aborted=True, exit_code=exit_code)
    return out, [ours, tx("h1", 11, HOT, back, fees=300)]


async def test_our_jetton_wallet_refusing_too_little_ton_is_told_apart() -> None:
    """Only our own jetton wallet's not-enough-TON refusal (709 standard, 48 stablecoin)
    with nothing sent on gets the code `jetton_attach_low`; it is booked as a bounce (the
    TON attached came back less the fees)."""
    from tonrail.states import JETTON_ATTACH_LOW

    async def outcome(out: Msg, txs: list[Tx], ours: str | None = OURS) -> Any:
        chain = FakeChain()
        chain.txs = txs

        async def lookup(m: Msg) -> Tx | None:
            return await chain.tx_by_in_message(m.hash)

        return await follow_jetton(out, HOT, lookup, our_jetton_wallet=ours)

    for code in (709, 48):
        refused = await outcome(*refusal_trace(code))
        assert (refused.status, refused.code) == ("bounced", JETTON_ATTACH_LOW)
        assert refused.fee == 1_000 + 15_000_000 - 14_000_000 + 300
        assert refused.trace["our_jetton_wallet_exit_code"] == str(code)
        assert f"exit code {code}" in str(refused.reason)
    # Not enough jettons (706 standard, 47 stablecoin), or any other code: bounced, as before.
    for code in (706, 47, 0xFFFF):
        other = await outcome(*refusal_trace(code))
        assert (other.status, other.code) == ("bounced", None)
    # A jetton wallet that is not ours (the rotation's sweep passes none): as before.
    assert (await outcome(*refusal_trace(709), ours=None)).code is None
    elsewhere = "0:" + "EE" * 32
    assert (await outcome(*refusal_trace(709, jetton_wallet=elsewhere))).code is None
    # An internal transfer left: not this refusal.
    assert (await outcome(*refusal_trace(709, sent_internal=True))).code is None
    # Still in flight: the bounce not yet taken back in.
    out, txs = refusal_trace(709)
    pending = await outcome(out, txs[:1])
    assert (pending.status, pending.code) == ("pending", None)
