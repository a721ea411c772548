"""Screening providers: the sanctions list file (reloaded when it changes) and an HTTP
provider for a commercial screening API. Each answers a Verdict for a Subject."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import httpx
import structlog

from tonrail.errors import TonrailError
from tonrail.screening.rules import Outcome, SanctionsList, Subject, Verdict, parse_list

log = structlog.get_logger(__name__)


class Provider(Protocol):
    name: str

    async def screen(self, subject: Subject, context: dict[str, Any]) -> Verdict: ...


class ListProvider:
    """Entries of SCREENING_LIST_FILE; the file is read again when its size or modification
    time changes. A file that no longer parses (or is gone) keeps the last good list and logs
    why; while no good list was ever read, every subject is held for review."""

    name = "list"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._list: SanctionsList | None = None

    def current(self) -> SanctionsList | None:
        """The list, read again if the file changed; None while no good list was ever read."""
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                self._stamp = stamp
                self._list = parse_list(self.path.read_text(encoding="utf-8"))
                log.info(
                    "screening list loaded",
                    path=str(self.path),
                    addresses=len(self._list.addresses),
                    names=len(self._list.names),
                )
        except (OSError, UnicodeDecodeError, TonrailError) as exc:
            message = exc.message if isinstance(exc, TonrailError) else str(exc)
            log.error("screening list not reloaded, the last good one stays", error=message)
        return self._list

    async def screen(self, subject: Subject, context: dict[str, Any]) -> Verdict:
        found = self.current()
        if found is None:
            return Verdict(Outcome.REVIEW, self.name, "screening list unreadable")
        return found.verdict(subject)


class HttpProvider:
    """A commercial screening API: `POST {base_url}/v1/screenings` with the subject (address,
    name; a backup-rail payer's email and iban when known) and the payment's direction, asset
    and amount; it answers `{"outcome": "clear|review|blocked",
    "reason": "...", "id": "..."}`. An error, a timeout or an answer we cannot read is a
    `review` (a person decides), never a silent `clear`."""

    name = "http"

    def __init__(self, base_url: str, api_key: str, timeout_seconds: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout_seconds

    async def screen(self, subject: Subject, context: dict[str, Any]) -> Verdict:
        # A backup-rail payer's e-mail and IBAN go along when its provider gave them.
        payer = {"email": subject.email, "iban": subject.iban}
        body = {
            "address": subject.address,
            "name": subject.name,
            **{k: v for k, v in payer.items() if v},
            **context,
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                r = await client.post(f"{self.base_url}/v1/screenings", json=body, headers=headers)
            r.raise_for_status()
            answer = r.json()
            outcome = Outcome(answer["outcome"])
            return Verdict(
                outcome,
                self.name,
                str(answer.get("reason", ""))[:200],
                str(answer.get("id", ""))[:80],
            )
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("screening provider unavailable: held for review", error=str(exc)[:200])
            return Verdict(Outcome.REVIEW, self.name, f"provider unavailable: {type(exc).__name__}")
