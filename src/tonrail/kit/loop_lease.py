"""One worker at a time runs a loop: a lease on a row of `loop_leases`, renewed as it runs.

Used by `ton_payouts` (processing/loops.py): a hot wallet's requests take their query ids
from one counter row, so two workers assembling at once only queue on that row's lock, list
the same transactions twice and take CPU from the API. With the lease one worker runs the
loop and the others stand by; when the holder stops it hands the lease back at once
(worker.py: `release_leases`), when it dies the lease runs out and a standby takes over.

The lease is an economy, not the guarantee: everything the loop does is safe with any
number of workers at once (claims with leases, compare-and-set moves; kit/claims.py), so a
holder that overruns its lease while a standby takes over does no harm.

Cost: the holder writes the row once per half lease, also in the middle of a long round
(`kept`); a standby tries once per `STANDBY_CHECK_S` at most, so it takes over at most that
long after the lease ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tonrail import clock
from tonrail.db import Database
from tonrail.kit.models import LoopLease

STANDBY_CHECK_S = 1.0


@dataclass
class LoopLeases:
    """A worker's view of the loop leases it holds or waits for (monotonic times): the
    database is asked only when a held lease is half spent or a standby's wait is over."""

    held_until: dict[str, float] = field(default_factory=dict)  # renew after this
    retry_at: dict[str, float] = field(default_factory=dict)  # a standby asks again after this

    async def hold(self, db: Database, name: str, worker_id: str, seconds: float) -> bool:
        """Whether `worker_id` holds the lease of loop `name` (taking or renewing it for
        `seconds` when due). `seconds` <= 0: no lease, every worker runs the loop."""
        if seconds <= 0:
            return True
        started = time.monotonic()
        if started < self.held_until.get(name, float("-inf")):
            return True
        if started < self.retry_at.get(name, float("-inf")):
            return False
        held = await take_or_renew(db, name, worker_id, seconds)
        if held:
            # Half the lease, counted from before the write: a clock skew between workers of
            # up to half the lease never lets a standby take a lease this worker trusts.
            self.held_until[name] = started + seconds / 2
            self.retry_at.pop(name, None)
        else:
            self.held_until.pop(name, None)
            self.retry_at[name] = started + min(STANDBY_CHECK_S, seconds / 2)
        return held

    def standby_wait(self, name: str) -> float:
        """Seconds until a standby's next check of `name` is due (0 if it is)."""
        return max(0.0, self.retry_at.get(name, float("-inf")) - time.monotonic())

    @asynccontextmanager
    async def kept(
        self, db: Database, name: str, worker_id: str, seconds: float
    ) -> AsyncIterator[None]:
        """Renew the held lease of `name` every half lease while the body runs: a round that
        lasts longer than the lease (a backlog of payouts) keeps it, so a standby does not
        take the loop over in the middle. If the lease is lost all the same (the database
        was unreachable past the lease), the body goes on, harmlessly, to its end."""
        if seconds <= 0:
            yield
            return
        done = asyncio.Event()

        async def renew() -> None:
            while not done.is_set():
                wait = self.held_until.get(name, float("-inf")) - time.monotonic()
                if wait > 0:
                    try:
                        await asyncio.wait_for(done.wait(), timeout=wait)
                    except TimeoutError:
                        pass
                    continue
                try:
                    if not await self.hold(db, name, worker_id, seconds):
                        return
                except Exception:
                    return  # the next round asks again

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            done.set()
            await renewing


async def take_or_renew(db: Database, name: str, worker_id: str, seconds: float) -> bool:
    """One statement: take the lease of `name` if nobody holds it (or the holder's lease is
    over), or extend it if `worker_id` holds it; True if `worker_id` holds it now."""
    now = clock.now()
    insert = pg_insert if db.dialect == "postgresql" else sqlite_insert
    stmt = insert(LoopLease).values(
        name=name, locked_by=worker_id, locked_until=now + timedelta(seconds=seconds)
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"locked_by": stmt.excluded.locked_by, "locked_until": stmt.excluded.locked_until},
        where=(LoopLease.locked_by == worker_id)
        | LoopLease.locked_by.is_(None)
        | LoopLease.locked_until.is_(None)
        | (LoopLease.locked_until < now),
    ).returning(LoopLease.name)
    async with db.transaction() as session:
        return (await session.execute(upsert)).first() is not None
