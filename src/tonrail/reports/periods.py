"""Report periods: a calendar month (`2026-11`) or an ISO week (`2026-W48`), in UTC."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from tonrail.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    start: datetime  # inclusive
    end: datetime  # exclusive


def _invalid(param: str, text: str, shape: str) -> InvalidRequest:
    message = f"{param} must be {shape}, not {text[:20]!r}"
    return InvalidRequest(message, param=param, code="parameter_invalid")


def month(text: str) -> Period:
    """`YYYY-MM` -> the UTC calendar month."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", text)
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 2000:
        raise _invalid("period", text, "a month as YYYY-MM")
    year, mon = int(m.group(1)), int(m.group(2))
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
    return Period(f"{year:04d}-{mon:02d}", start, end)


def iso_week(text: str) -> Period:
    """`YYYY-Www` -> Monday 00:00 UTC to the next Monday."""
    m = re.fullmatch(r"(\d{4})-W(\d{2})", text)
    if not m or int(m.group(1)) < 2000:
        raise _invalid("week", text, "an ISO week as YYYY-Www")
    try:
        monday = date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    except ValueError:
        raise _invalid("week", text, "an ISO week as YYYY-Www") from None
    start = datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
    return Period(f"{m.group(1)}-W{m.group(2)}", start, start + timedelta(days=7))


def previous_month(now: datetime) -> str:
    first = now.astimezone(UTC).replace(day=1)
    last = first - timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"
