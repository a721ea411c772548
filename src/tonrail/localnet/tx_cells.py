"""Transactions parsed once: the block that made them hands them to the APIs that list them.

A block parses every transaction it makes (its lt, its out messages). A client following an
account (toncenter's v3 `/transactions?account=`, v2 `getTransactions`) then lists each new
transaction of that account and the API renders it, which took a second parse of the same
BOC: measured, the largest single cost of the local network's process while a worker tracked
payouts (docs/LOCALNET.md). So for the accounts listed lately, the block keeps its parse
until the API takes it; other accounts' transactions are parsed when asked for, as before.

Bounded twice: an account is followed for FOLLOW_S after its last listing, and the cells kept
hold at most KEPT_BOC_BYTES of BOC (a parsed cell tree takes some 20 times its BOC in
memory), the oldest dropped first; a dropped one is parsed again when asked for.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ton_core import Cell

from tonrail.localnet.boc import trusted_cell

FOLLOW_S = 60.0  # an account is followed this long after its last listing
KEPT_BOC_BYTES = 4 << 20  # the BOC size of the cells kept, at most


class TxCells:
    """Parsed transaction cells of the followed accounts, kept for the APIs (thread-safe:
    the block thread keeps, the HTTP thread takes)."""

    def __init__(
        self, *, kept_bytes: int = KEPT_BOC_BYTES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.kept_bytes = kept_bytes
        self._clock = clock
        self._followed: dict[str, float] = {}  # raw address (upper case) -> followed until
        self._cells: OrderedDict[bytes, tuple[Cell, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.shared = 0  # parses saved (for tests and benchmarks)

    def follow(self, account: str) -> None:
        """`account` was listed: keep its transactions' parses for a while."""
        self._followed[account.upper()] = self._clock() + FOLLOW_S

    def followed(self, account: str) -> bool:
        until = self._followed.get(account.upper())
        return until is not None and until > self._clock()

    def keep(self, account: str, tx_hash: bytes, cell: Cell, boc_size: int) -> None:
        """A block made this transaction of `account` (kept if the account is followed)."""
        if not self.followed(account):
            return
        with self._lock:
            self._cells[tx_hash] = (cell, boc_size)
            self._size += boc_size
            while self._size > self.kept_bytes and self._cells:
                _, (_, size) = self._cells.popitem(last=False)
                self._size -= size

    def take(self, tx_hash: bytes, boc: bytes) -> Cell:
        """The transaction's cell: the block's parse when kept (handed over once), else
        parsed from `boc` now."""
        with self._lock:
            kept = self._cells.pop(tx_hash, None)
            if kept is not None:
                self._size -= kept[1]
                self.shared += 1
                return kept[0]
        return trusted_cell(boc)
