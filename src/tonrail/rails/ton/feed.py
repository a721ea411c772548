"""Our own accounts' transactions, read as a feed instead of one message at a time.

Hundreds of payouts in flight end in transactions on two accounts of ours: our USDT jetton
wallet takes every jetton transfer we send, and the hot wallet takes back every excess and
bounce. Asking toncenter "which transaction took message m?" for each of them costs a
request per message; listing the account's new transactions costs one request per page of
up to PAGE transactions, for all requests in flight together.

An `AccountFeed` keeps the transactions of one account from `start_lt` on, by the hash of
the message they took in. It answers for a message created after `start_lt` (a transaction
taking it has a higher lt): found, or not on chain yet as of the last listing. For older
messages (the feed started later, e.g. after a restart) it says so and the caller asks
toncenter per message. An account's transactions are listed in lt order, so the feed never
misses one below its cursor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tonrail import clock
from tonrail.rails.ton.api import TonApi
from tonrail.rails.ton.chain_view import EXCESSES_OP, Tx, query_id_of

PAGE = 256  # transactions per listing request
MAX_PAGES = 16  # per refresh; the rest on the next one
MAX_KEPT = 20_000  # transactions remembered; beyond, the oldest half is dropped
# Transactions older than this (chain time, behind the newest listed) are dropped: a request
# is found within seconds of landing, and one older than this asks by its hash instead
# (NotCovered). A parsed transaction holds its messages' bodies (about 11 KiB each for the
# hot wallet, measured); keeping every one made a worker grow without end (make soak).
KEEP_SECONDS = 600
PRUNE_EVERY_S = 10.0  # the age check walks the whole feed: not at every listing
REFRESH_EVERY_S = 0.1  # concurrent lookups within this share one listing
CLOCK_SKEW = timedelta(seconds=2)  # between the worker that signed a request and this one


class NotCovered(Exception):
    """The message is older than what the feed holds: ask for it by its hash."""


@dataclass
class AccountFeed:
    account: str  # raw address
    start_lt: int  # the feed holds every transaction of the account with lt > start_lt ...
    cursor_lt: int  # ... up to this one (the last listed)
    by_in_msg: dict[str, Tx] = field(default_factory=dict)
    # excesses taken in, by (query_id, sender): a forged excess reusing a query_id from
    # another sender cannot hide the real one
    by_excess: dict[tuple[int, str], Tx] = field(default_factory=dict)
    # Wall time from which every transaction of the account is in the feed (its start_lt was
    # the account's last lt then); None when the feed began at a message's lt instead.
    since: datetime | None = None
    refreshed_at: float = 0.0  # monotonic time the last listing ended ...
    listed_from: float = 0.0  # ... and began
    listings: int = 0  # listing requests made (for tests and benchmarks)
    pruned_at: float = 0.0  # monotonic time of the last age check
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def find(self, api: TonApi, msg_hash: str, created_after_lt: int) -> Tx | None:
        """The transaction that took message `msg_hash` (created after `created_after_lt`),
        or None while it is not on chain; NotCovered when the feed cannot tell."""
        tx = self.by_in_msg.get(msg_hash)
        if tx is not None:
            return tx
        await self._catch_up(api, created_after_lt, msg_hash, lambda: msg_hash in self.by_in_msg)
        return self.by_in_msg.get(msg_hash)

    async def find_sent_after(self, api: TonApi, msg_hash: str, sent_after: datetime) -> Tx | None:
        """The transaction that took message `msg_hash` (an external one by its normalized
        hash), first sent after `sent_after`, or None while it is not on chain; NotCovered
        when the feed began after that."""
        if self.since is None or sent_after < self.since + CLOCK_SKEW:
            raise NotCovered(msg_hash)
        tx = self.by_in_msg.get(msg_hash)
        if tx is not None:
            return tx
        await self._catch_up(api, self.start_lt, msg_hash, lambda: msg_hash in self.by_in_msg)
        return self.by_in_msg.get(msg_hash)

    async def find_excess(
        self, api: TonApi, query_id: int, source: str | None, created_after_lt: int
    ) -> Tx | None:
        """The transaction that took in an excess (TEP-74) with `query_id` from `source`, or
        None while none came; NotCovered when the feed cannot tell."""
        tx = self._excess(query_id, source)
        if tx is not None:
            return tx
        found = lambda: self._excess(query_id, source) is not None  # noqa: E731
        await self._catch_up(api, created_after_lt, str(query_id), found)
        return self._excess(query_id, source)

    async def _catch_up(
        self, api: TonApi, created_after_lt: int, wanted: str, found: Callable[[], bool]
    ) -> None:
        """List what is new, shared by the callers waiting at the same time: one whose answer
        a listing made while it waited found, or that a listing begun after it asked covers,
        lists nothing (no convoy of listings behind the lock, one per waiter)."""
        asked = time.monotonic()
        async with self.lock:
            if created_after_lt < self.start_lt and not await self._backfill(api, created_after_lt):
                raise NotCovered(wanted)
            if found() or self.listed_from >= asked:
                return
            if time.monotonic() - self.refreshed_at >= REFRESH_EVERY_S:
                await self._refresh(api)

    def _excess(self, query_id: int, source: str | None) -> Tx | None:
        if source is None:
            return None
        return self.by_excess.get((query_id, source.upper()))

    def _keep(self, tx: Tx) -> None:
        if tx.in_msg is None:
            return
        self.by_in_msg[tx.in_msg.hash] = tx
        if tx.in_msg.hash_norm is not None:
            # An external message is known by its normalized hash (what we store when signing).
            self.by_in_msg[tx.in_msg.hash_norm] = tx
        if tx.in_msg.opcode == EXCESSES_OP and not tx.aborted:
            query_id = query_id_of(tx.in_msg)
            if query_id is not None and tx.in_msg.source is not None:
                self.by_excess.setdefault((query_id, tx.in_msg.source.upper()), tx)

    async def _refresh(self, api: TonApi) -> None:
        """List what is new since the cursor."""
        self.listed_from = time.monotonic()
        for _ in range(MAX_PAGES):
            page = await api.account_transactions(self.account, self.cursor_lt, PAGE)
            self.listings += 1
            for tx in page:
                self._keep(tx)
                self.cursor_lt = max(self.cursor_lt, tx.lt)
            if len(page) < PAGE:
                break
        self.refreshed_at = time.monotonic()
        if len(self.by_in_msg) > MAX_KEPT:
            self._forget_oldest(len(self.by_in_msg) // 2)
        elif self.refreshed_at - self.pruned_at >= PRUNE_EVERY_S:
            self.pruned_at = self.refreshed_at
            newest = max((tx.now for tx in self.by_in_msg.values()), default=0)
            self.forget_older_than(newest - KEEP_SECONDS)

    async def _backfill(self, api: TonApi, from_lt: int) -> bool:
        """Extend the feed back to `from_lt`; False if that is too far to list."""
        cursor = from_lt
        for _ in range(MAX_PAGES):
            page = await api.account_transactions(self.account, cursor, PAGE)
            self.listings += 1
            for tx in page:
                if tx.lt > self.start_lt:
                    break
                self._keep(tx)
                cursor = tx.lt
            else:
                if len(page) == PAGE:
                    continue
            self.start_lt = from_lt
            return True
        return False

    def _forget_oldest(self, count: int) -> None:
        """Drop the oldest transactions; the feed then covers only what it still holds."""
        self.since = None
        oldest = sorted(self.by_in_msg.items(), key=lambda kv: kv[1].lt)[:count]
        for msg_hash, tx in oldest:
            del self.by_in_msg[msg_hash]
            self.start_lt = max(self.start_lt, tx.lt)
        self.by_excess = {q: t for q, t in self.by_excess.items() if t.lt > self.start_lt}

    def forget_older_than(self, utime: int) -> int:
        """Drop the transactions of chain time before `utime`; the feed then covers what is
        after the newest one dropped (in lt, and in wall time a second after it). Returns
        how many went."""
        old = [(h, tx) for h, tx in self.by_in_msg.items() if tx.now < utime]
        if not old:
            return 0
        for msg_hash, tx in old:
            del self.by_in_msg[msg_hash]
            self.start_lt = max(self.start_lt, tx.lt)
        self.by_excess = {q: t for q, t in self.by_excess.items() if t.lt > self.start_lt}
        if self.since is not None:
            # Every transaction after the newest dropped one is held; one in the same second
            # may not be: coverage starts a second later.
            newest_gone = max(tx.now for _, tx in old)
            self.since = max(self.since, datetime.fromtimestamp(newest_gone + 1, UTC))
        return len({tx.hash for _, tx in old})


@dataclass
class OwnFeeds:
    """A feed per account of ours, started at the first message someone waits for there."""

    accounts: frozenset[str]
    feeds: dict[str, AccountFeed] = field(default_factory=dict)

    def covers(self, account: str | None) -> bool:
        return account is not None and account.upper() in self.accounts

    async def find(
        self, api: TonApi, account: str, msg_hash: str, created_after_lt: int
    ) -> Tx | None:
        """`AccountFeed.find` on the feed of `account` (started here on first use)."""
        return await self._feed(account, created_after_lt).find(api, msg_hash, created_after_lt)

    async def find_excess(
        self, api: TonApi, account: str, query_id: int, source: str | None, created_after_lt: int
    ) -> Tx | None:
        """`AccountFeed.find_excess` on the feed of `account`."""
        feed = self._feed(account, created_after_lt)
        return await feed.find_excess(api, query_id, source, created_after_lt)

    async def start(self, api: TonApi, account: str) -> None:
        """Begin the feed of `account` at its last transaction, if it has none yet: from then
        on it answers for every message sent to the account (`find_sent_after`)."""
        key = account.upper()
        if key in self.feeds:
            return
        last = await api.last_lt(account)
        # Read before `since`: whatever is sent from now on lands above `last`.
        self.feeds.setdefault(key, AccountFeed(key, last, last, since=clock.now()))

    async def find_sent_after(
        self, api: TonApi, account: str, msg_hash: str, sent_after: datetime
    ) -> Tx | None:
        """`AccountFeed.find_sent_after` on the feed of `account` (NotCovered without one)."""
        feed = self.feeds.get(account.upper())
        if feed is None:
            raise NotCovered(msg_hash)
        return await feed.find_sent_after(api, msg_hash, sent_after)

    def _feed(self, account: str, created_after_lt: int) -> AccountFeed:
        key = account.upper()
        feed = self.feeds.get(key)
        if feed is None:
            feed = self.feeds[key] = AccountFeed(key, created_after_lt, created_after_lt)
        return feed
