"""Time ranges of the dashboard's Overview and their buckets, as SQL can join them.

The buckets of a range are passed to a query as a small table of segments (bucket, in
range?, from, until) joined to the rows by their time column, so each segment is one range
scan of a covering index (migration 0009) and no function runs per row to find its bucket.
Buckets are aligned to multiples of their width, so a poll a few seconds later puts every row
in the same bucket; the first bucket reaches back before the range, and is split in two
segments so the figures of the range itself (the tiles) stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, func, literal, select, union_all

from tonrail.db import UTCDateTime
from tonrail.errors import InvalidRequest


class RangeInvalid(InvalidRequest):
    """`?range=` is not one of the offered ranges."""

    code = "range_invalid"


@dataclass(frozen=True)
class RangeSpec:
    key: str
    label: str
    seconds: int
    bucket_seconds: int
    bucket_label: str  # strftime format of a bucket's start on the charts
    cache_seconds: int  # how long one computation of the range's figures is shown


RANGES: dict[str, RangeSpec] = {
    r.key: r
    for r in (
        RangeSpec("1h", "1 hour", 3_600, 60, "%H:%M", 2),
        RangeSpec("24h", "24 hours", 86_400, 1_800, "%H:%M", 15),
        RangeSpec("7d", "7 days", 604_800, 14_400, "%a %H:%M", 60),
    )
}
DEFAULT_RANGE = "24h"


def range_spec(value: str | None) -> RangeSpec:
    """The range named by `?range=` (default 24h); RangeInvalid for anything else."""
    key = DEFAULT_RANGE if value is None or value == "" else value
    spec = RANGES.get(key)
    if spec is None:
        raise RangeInvalid(
            f"range must be one of {', '.join(RANGES)}, not {str(value)[:40]!r}", param="range"
        )
    return spec


@dataclass(frozen=True)
class Window:
    """A range ending now: figures cover [since, now]; charts cover the buckets from start."""

    spec: RangeSpec
    now: datetime
    since: datetime
    start: datetime  # since rounded down to a bucket boundary
    buckets: int

    @classmethod
    def ending(cls, spec: RangeSpec, now: datetime) -> Window:
        width = spec.bucket_seconds
        since = now - timedelta(seconds=spec.seconds)
        start_epoch = int(since.timestamp()) // width * width
        end_epoch = int(now.timestamp()) // width * width + width
        start = datetime.fromtimestamp(start_epoch, UTC)
        return cls(spec, now, since, start, (end_epoch - start_epoch) // width)

    def bucket_starts(self) -> list[datetime]:
        width = timedelta(seconds=self.spec.bucket_seconds)
        return [self.start + i * width for i in range(self.buckets)]


Segment = tuple[int, int, datetime, datetime]  # (bucket, 1 if inside the range, from, until)


def segments(window: Window) -> list[Segment]:
    """The buckets as half-open time segments; the first is split at `since`."""
    width = timedelta(seconds=window.spec.bucket_seconds)
    out: list[Segment] = []
    for i, lo in enumerate(window.bucket_starts()):
        hi = lo + width
        if i == 0 and window.since > lo:
            out.append((0, 0, lo, window.since))
            lo = window.since
        out.append((i, 1, lo, hi))
    return out


def segment_table(window: Window) -> Any:
    """`segments(window)` as a CTE (a UNION ALL of literal rows: both SQLite and PostgreSQL)."""
    rows = [
        select(
            literal(b, Integer).label("b"),
            literal(r, Integer).label("r"),
            literal(lo, UTCDateTime()).label("lo"),
            literal(hi, UTCDateTime()).label("hi"),
        )
        for b, r, lo, hi in segments(window)
    ]
    return union_all(*rows).cte("seg")


def in_segment(seg: Any, column: Any) -> ColumnElement[bool]:
    return and_(column >= seg.c.lo, column < seg.c.hi)


def duration_ms(start: Any, end: Any, dialect: str) -> ColumnElement[Any]:
    """Milliseconds from `start` to `end`, both timestamp columns."""
    if dialect == "sqlite":
        return func.round((func.julianday(end) - func.julianday(start)) * 86_400_000)
    # date_part gives a double (EXTRACT a numeric, much slower to sort and round).
    return func.round(func.date_part("epoch", end - start) * 1000)
