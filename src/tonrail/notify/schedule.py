"""When a failed delivery is tried again: exponential backoff with jitter, about 3 days.

Attempt 1 goes at once; after failed attempt n the next waits RETRY_DELAYS[n-1] seconds,
each stretched or shrunk at random by up to JITTER (so many failing deliveries do not come
back at the same instant). 15 attempts over about 75 hours (68-83 h with the jitter);
after the 15th the delivery has failed (docs/WEBHOOKS.md has the table)."""

from __future__ import annotations

import random
from collections.abc import Callable

RETRY_DELAYS: tuple[int, ...] = (
    5,  # 5 s
    30,  # 30 s
    120,  # 2 min
    600,  # 10 min
    1_800,  # 30 min
    3_600,  # 1 h
    7_200,  # 2 h
    14_400,  # 4 h
    28_800,  # 8 h
    43_200,  # 12 h
    43_200,
    43_200,
    43_200,
    43_200,
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.10


def retry_delay(
    attempts_made: int, uniform: Callable[[float, float], float] = random.uniform
) -> float | None:
    """Seconds until the next attempt after `attempts_made` failed ones; None: no more."""
    if attempts_made < 1 or attempts_made >= MAX_ATTEMPTS:
        return None
    base = RETRY_DELAYS[attempts_made - 1]
    return base * uniform(1 - JITTER, 1 + JITTER)
