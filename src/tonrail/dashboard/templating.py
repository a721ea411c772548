"""Jinja2 for the dashboard: autoescaping everywhere, money and time filters, page rendering."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from tonrail.chain.network import TON
from tonrail.money import format_minor

TEMPLATES = Path(__file__).parent / "templates"

# Autoescape is on for every template, whatever its name: chain comments and customer metadata
# reach these pages and must render as inert text.
env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    enable_async=False,
    trim_blocks=True,
    lstrip_blocks=True,
)


def money(amount: int | None, asset: str | None) -> str:
    """`1234500000, "TON"` -> `1.2345 TON` (exact; trailing zeros dropped)."""
    if amount is None or asset is None:
        return "-"
    return f"{format_minor(amount, asset)} {asset}"


def ton(nanoton: int | None) -> str:
    return "-" if nanoton is None else money(nanoton, "TON")


def when(value: datetime | int | None) -> str:
    """A time as UTC; an int is a unix time (a contract's expiration date, say)."""
    if value is None:
        return "-"
    if isinstance(value, int):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - value).total_seconds())
    if seconds < 0:
        return "in the future"
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f} %"


def short(value: str | None, keep: int = 8) -> str:
    """A long hash or address shortened for a table cell: `EQCxE6…_sDs`."""
    if not value:
        return "-"
    return value if len(value) <= 2 * keep + 1 else f"{value[:keep]}…{value[-keep:]}"


env.filters.update(money=money, ton=ton, when=when, ago=ago, pct=pct, short=short)
env.globals["TON"] = TON


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """Render a page or a fragment with what every page needs (admin, CSRF token, switches)."""
    state = getattr(request.state, "dashboard", None)
    base = {"request": request, "page": template.split("/")[-1].removesuffix(".html")}
    if state is not None:
        base.update(state)
    html = env.get_template(template).render({**base, **context})
    return HTMLResponse(html, status_code=status_code)
