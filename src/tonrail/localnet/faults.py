"""Fault controls for tests and chaos runs, settable at start and at run time."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Faults:
    """What the local network does wrong on purpose. The defaults are a healthy network."""

    inclusion_delay_ms: int = 0  # an external waits at least this long before a block takes it
    max_tx_per_block: int = 0  # 0 = unlimited; otherwise the message queues build up
    drop_external_rate: float = 0.0  # share of accepted externals silently lost
    http_429_rate: float = 0.0  # share of toncenter API requests answered 429
    http_5xx_rate: float = 0.0  # share of toncenter API requests answered 502/503/504
    stall_blocks: bool = False  # the block producer makes no blocks while set
    index_lag_blocks: int = 0  # v3 (the indexer) shows no transaction of the newest N blocks
    time_offset_s: int = 0  # time travel: added to the wall clock seen by the chain
    seed: int = 0  # seeds the random choices, so a chaos run can be repeated
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def choice(self, options: list[int]) -> int:
        return self._rng.choice(options)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("_rng", None)
        return out

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update; unknown or ill-typed fields raise ValueError."""
        if not isinstance(changes, dict):
            raise ValueError("faults must be a JSON object")
        known = {f.name: f for f in fields(self) if not f.name.startswith("_")}
        parsed: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown fault {key!r}")
            kind = type(getattr(self, key))
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be a boolean")
                parsed[key] = value
            elif kind is float:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{key} must be a number")
                if not 0.0 <= float(value) <= 1.0:
                    raise ValueError(f"{key} must be between 0 and 1")
                parsed[key] = float(value)
            else:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{key} must be an integer")
                if key != "time_offset_s" and value < 0:
                    raise ValueError(f"{key} must not be negative")
                parsed[key] = value
        for key, value in parsed.items():
            setattr(self, key, value)
        if "seed" in parsed:
            self._rng.seed(self.seed)
