"""What every alert channel shares: the message and the failure it may raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class AlertMessage:
    """One thing to tell people: an alert triggered, acknowledged or resolved, or a report."""

    alert_id: str
    dedup_key: str
    action: str  # trigger | acknowledge | resolve | report
    rule: str
    severity: str  # critical | error | warning | info
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    body: str = ""  # the long text of a report

    @property
    def title(self) -> str:
        prefix = {
            "trigger": f"[{self.severity.upper()}]",
            "acknowledge": "[ACKNOWLEDGED]",
            "resolve": "[RESOLVED]",
            "report": "[REPORT]",
        }.get(self.action, f"[{self.action.upper()}]")
        return f"{prefix} tonrail: {self.summary}"


class ChannelError(Exception):
    """A delivery failed. `retryable` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class Channel(Protocol):
    name: str

    async def send(self, message: AlertMessage) -> None:
        """Deliver or raise ChannelError; never log or raise secrets (URLs, keys)."""
        ...


def details_text(details: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in sorted(details.items()))
