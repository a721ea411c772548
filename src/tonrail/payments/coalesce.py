"""Group commit of concurrent single payouts (`POST /v1/payouts`) in one API process.

PostgreSQL only (SQLite serializes every writer anyway). A payout that arrives while no
write of this process's groups is in flight writes alone, exactly as without groups: its
own `write_at_once`, no added latency. Payouts that arrive while one is in flight queue;
when it ends, everything queued (up to GROUP_MAX) is written together in ONE statement
(`db.write_together`: each kind of row one INSERT of all the group's rows, the day's volume
and each account's balance one upsert of their sum, the refusals checked inside it).

Every member has passed all of `create_payout`'s checks and built its own writes (the
idempotency record with its own 201 body) before it queues; the group only shares the
transaction. A group is all or nothing: if its statement (or transaction) fails for any reason (a
duplicate idempotency key, the daily or the key's volume limit, a balance, a refusal,
anything) it is rolled back and every member writes alone, as if there had been no group,
so each client gets the answer it would have got. Two requests with the same idempotency
key never share a group: the later one writes alone. A member whose client went away
while its group was in flight is written or not, with its idempotency record, as a single
payout cancelled mid-statement is.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field

import structlog

from tonrail.db import Database, Refusal, Write, write_together

log = structlog.get_logger(__name__)

GROUP_MAX = 64  # payouts written in one transaction at most

# What a queued member is told: written in the group (True), refused when written alone on
# its behalf (False), or "write alone yourself" (None: its group failed and was rolled back).
Outcome = bool | None


@dataclass(eq=False, slots=True)
class _Member:
    writes: Sequence[Write]
    refuse_if: Sequence[Refusal]
    key: Hashable | None
    alone: Callable[[], Awaitable[bool]]
    outcome: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _Refused(Exception):
    """A refusal (maintenance, a lockout) held for a member: the group writes nothing."""


class GroupCommit:
    """This process's queue of single payouts waiting to be written together.

    `groups` counts the group transactions of two or more payouts that committed,
    `grouped` the payouts they wrote, `fallbacks` the groups rolled back (their members
    then wrote alone)."""

    def __init__(self, db: Database, max_size: int = GROUP_MAX):
        self.db = db
        self.max_size = max_size
        self.groups = 0
        self.grouped = 0
        self.fallbacks = 0
        self._queue: deque[_Member] = deque()
        self._busy = False  # a write (alone or a group) of this process is in flight
        self._keys: set[Hashable] = set()  # idempotency keys queued or in flight
        self._drain: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> bool:
        """Whether a write (a payout alone or a group) of this process is in flight."""
        return self._busy

    @property
    def queued(self) -> int:
        """Payouts waiting for the write in flight to end."""
        return len(self._queue)

    async def write(
        self,
        writes: Sequence[Write],
        refuse_if: Sequence[Refusal],
        key: Hashable | None,
        alone: Callable[[], Awaitable[bool]],
    ) -> bool:
        """Write one payout's `writes` (what `alone` writes with `write_at_once`), alone or
        in a group; returns or raises what `alone` would (True: written, False: refused).
        `key` identifies its idempotency key, if it has one."""
        if key is not None and key in self._keys:
            return await alone()  # its twin is queued or in flight: never in one group
        if not self._busy:
            self._busy = True
            self._hold(key)
            try:
                return await alone()
            finally:
                self._release(key)
                self._next()
        member = _Member(writes, refuse_if, key, alone)
        self._queue.append(member)
        self._hold(key)
        try:
            outcome = await member.outcome
        except asyncio.CancelledError:
            if member in self._queue:  # not taken yet: it never writes
                self._queue.remove(member)
                self._release(key)
            raise
        if outcome is None:
            return await alone()
        return outcome

    def _hold(self, key: Hashable | None) -> None:
        if key is not None:
            self._keys.add(key)

    def _release(self, key: Hashable | None) -> None:
        if key is not None:
            self._keys.discard(key)

    def _next(self) -> None:
        """The write in flight ended: the queue's turn, or nothing in flight."""
        if self._queue:
            self._drain = asyncio.create_task(self._write_queued())
        else:
            self._busy = False

    async def _write_queued(self) -> None:
        taken: list[_Member] = []
        try:
            while self._queue:
                taken = [self._queue.popleft() for _ in range(min(self.max_size, len(self._queue)))]
                if len(taken) == 1:
                    await self._write_alone(taken[0])
                else:
                    await self._write_group(taken)
                for member in taken:
                    self._release(member.key)
                taken = []
        finally:
            self._busy = False
            self._drain = None
            for member in taken:  # this task was cancelled (shutdown) with a write unfinished
                self._release(member.key)
                if not member.outcome.done():
                    member.outcome.cancel()

    async def _write_alone(self, member: _Member) -> None:
        """One queued payout: its own single write, its answer (or error) handed over."""
        try:
            written = await member.alone()
        except Exception as exc:
            if not member.outcome.done():
                member.outcome.set_exception(exc)
            return
        if not member.outcome.done():
            member.outcome.set_result(written)

    async def _write_group(self, members: Sequence[_Member]) -> None:
        written = False
        try:
            async with self.db.one_write() as conn:
                refuse_if = [r for m in members for r in m.refuse_if]
                if not await write_together(conn, [m.writes for m in members], refuse_if):
                    raise _Refused
            written = True
        except Exception as exc:
            # Anything: every member writes alone and gets the answer it gets alone (the
            # same error, mapped by its own request, if it was the member's).
            log.info("payout_group_rolled_back", size=len(members), error=repr(exc))
        if written:
            self.groups += 1
            self.grouped += len(members)
        else:
            self.fallbacks += 1
        for member in members:
            if not member.outcome.done():
                member.outcome.set_result(True if written else None)
