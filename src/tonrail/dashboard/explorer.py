"""Links to a public chain explorer for the configured TON network (tonviewer by default).

`EXPLORER_URL` overrides the preset; the local network has no public explorer, so its
addresses and hashes are shown as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from tonrail.settings import Settings

TONVIEWER = {"mainnet": "https://tonviewer.com/", "testnet": "https://testnet.tonviewer.com/"}


@dataclass(frozen=True, slots=True)
class Explorer:
    """Builds explorer URLs; `base` None means no link (plain text)."""

    base: str | None

    def address(self, value: str | None) -> str | None:
        if not self.base or not value:
            return None
        return self.base + quote(value.strip(), safe=":")

    def tx(self, value: str | None) -> str | None:
        """A transaction, or a message hash (tonviewer finds the transaction either way)."""
        if not self.base or not value:
            return None
        return f"{self.base}transaction/{quote(value.strip(), safe='')}"


def explorer_for(settings: Settings) -> Explorer:
    """The explorer of `settings`: EXPLORER_URL if it is an http(s) URL, else the preset's."""
    configured = settings.explorer_url.strip()
    if configured:
        parts = urlsplit(configured)
        if parts.scheme in ("http", "https") and parts.netloc:
            return Explorer(configured.rstrip("/") + "/")
        return Explorer(None)
    return Explorer(TONVIEWER.get(settings.ton_network))
