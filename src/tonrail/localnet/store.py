"""SQLite persistence of the local chain: accounts, transactions, messages and blocks.

The chain keeps the hot state in memory and writes each block in one SQLite transaction, so a
restart resumes from the last produced block.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY,
    shard_account BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS blocks (
    seqno INTEGER PRIMARY KEY,
    utime INTEGER NOT NULL,
    start_lt INTEGER NOT NULL,
    end_lt INTEGER NOT NULL,
    tx_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS transactions (
    hash BLOB PRIMARY KEY,
    account TEXT NOT NULL,
    lt INTEGER NOT NULL,
    utime INTEGER NOT NULL,
    mc_seqno INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    in_msg_hash BLOB,
    boc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS tx_account_lt ON transactions (account, lt DESC);
CREATE INDEX IF NOT EXISTS tx_lt ON transactions (lt DESC);
CREATE INDEX IF NOT EXISTS tx_trace ON transactions (trace_id);
CREATE INDEX IF NOT EXISTS tx_block ON transactions (mc_seqno, lt);
CREATE TABLE IF NOT EXISTS messages (
    hash BLOB NOT NULL,
    norm_hash BLOB,
    direction TEXT NOT NULL,
    tx_hash BLOB NOT NULL,
    source TEXT,
    destination TEXT,
    created_lt INTEGER NOT NULL,
    opcode INTEGER,
    PRIMARY KEY (hash, direction, tx_hash)
);
CREATE INDEX IF NOT EXISTS msg_norm ON messages (norm_hash);
CREATE INDEX IF NOT EXISTS msg_source ON messages (source, created_lt DESC);
CREATE INDEX IF NOT EXISTS msg_dest ON messages (destination, created_lt DESC);
"""


@dataclass(frozen=True)
class TxRow:
    hash: bytes
    account: str
    lt: int
    utime: int
    mc_seqno: int
    trace_id: bytes
    in_msg_hash: bytes | None
    boc: bytes


@dataclass(frozen=True)
class MsgRow:
    hash: bytes
    norm_hash: bytes | None
    direction: str  # "in" (the message a transaction consumed) or "out" (one it sent)
    tx_hash: bytes
    source: str | None
    destination: str | None
    created_lt: int
    opcode: int | None


@dataclass(frozen=True)
class BlockRow:
    seqno: int
    utime: int
    start_lt: int
    end_lt: int
    tx_count: int


_TX_COLS = "hash, account, lt, utime, mc_seqno, trace_id, in_msg_hash, boc"
_MSG_COLS = "hash, norm_hash, direction, tx_hash, source, destination, created_lt, opcode"


class ChainStore:
    """Thread-safe access to the chain's SQLite file (`:memory:` for tests)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def load_accounts(self) -> dict[str, bytes]:
        with self._lock:
            rows = self._conn.execute("SELECT address, shard_account FROM accounts").fetchall()
        return {str(a): bytes(s) for a, s in rows}

    def last_block(self) -> BlockRow | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT seqno, utime, start_lt, end_lt, tx_count FROM blocks "
                "ORDER BY seqno DESC LIMIT 1"
            ).fetchone()
        return None if row is None else BlockRow(*row)

    def get_block(self, seqno: int) -> BlockRow | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT seqno, utime, start_lt, end_lt, tx_count FROM blocks WHERE seqno = ?",
                (seqno,),
            ).fetchone()
        return None if row is None else BlockRow(*row)

    def write_block(
        self,
        block: BlockRow,
        accounts: dict[str, bytes],
        txs: Sequence[TxRow],
        msgs: Iterable[MsgRow],
        meta: dict[str, str],
    ) -> None:
        """Persist one block atomically."""
        with self._lock:
            c = self._conn
            c.execute("BEGIN")
            try:
                c.execute(
                    "INSERT INTO blocks VALUES (?, ?, ?, ?, ?)",
                    (block.seqno, block.utime, block.start_lt, block.end_lt, block.tx_count),
                )
                c.executemany(
                    "INSERT OR REPLACE INTO accounts VALUES (?, ?)", list(accounts.items())
                )
                c.executemany(
                    f"INSERT INTO transactions ({_TX_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                    [
                        (
                            t.hash,
                            t.account,
                            t.lt,
                            t.utime,
                            t.mc_seqno,
                            t.trace_id,
                            t.in_msg_hash,
                            t.boc,
                        )
                        for t in txs
                    ],
                )
                c.executemany(
                    f"INSERT OR IGNORE INTO messages ({_MSG_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                    [
                        (
                            m.hash,
                            m.norm_hash,
                            m.direction,
                            m.tx_hash,
                            m.source,
                            m.destination,
                            m.created_lt,
                            m.opcode,
                        )
                        for m in msgs
                    ],
                )
                c.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    def _txs(self, sql: str, args: Sequence[object]) -> list[TxRow]:
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [
            TxRow(bytes(r[0]), r[1], r[2], r[3], r[4], bytes(r[5]), r[6] and bytes(r[6]), r[7])
            for r in rows
        ]

    def transaction(self, tx_hash: bytes) -> TxRow | None:
        sql = f"SELECT {_TX_COLS} FROM transactions WHERE hash = ?"  # noqa: S608
        rows = self._txs(sql, (tx_hash,))
        return rows[0] if rows else None

    def account_transactions(
        self,
        account: str,
        *,
        limit: int,
        max_lt: int | None = None,
        min_lt: int | None = None,
        offset: int = 0,
        ascending: bool = False,
    ) -> list[TxRow]:
        """Transactions of one account with lt in [min_lt, max_lt], newest first by default."""
        order = "ASC" if ascending else "DESC"
        return self._txs(
            f"SELECT {_TX_COLS} FROM transactions WHERE account = ? AND lt <= ? AND lt >= ? "  # noqa: S608
            f"ORDER BY lt {order} LIMIT ? OFFSET ?",
            (account, max_lt if max_lt is not None else 2**63 - 1, min_lt or 0, limit, offset),
        )

    def transactions(
        self,
        *,
        limit: int,
        offset: int = 0,
        ascending: bool = False,
        min_lt: int | None = None,
        max_lt: int | None = None,
        mc_seqno: int | None = None,
    ) -> list[TxRow]:
        order = "ASC" if ascending else "DESC"
        where = "lt <= ? AND lt >= ?"
        args: list[object] = [max_lt if max_lt is not None else 2**63 - 1, min_lt or 0]
        if mc_seqno is not None:
            where += " AND mc_seqno = ?"
            args.append(mc_seqno)
        return self._txs(
            f"SELECT {_TX_COLS} FROM transactions WHERE {where} ORDER BY lt {order} "  # noqa: S608
            "LIMIT ? OFFSET ?",
            [*args, limit, offset],
        )

    def block_transactions(
        self, mc_seqno: int, *, after_lt: int, limit: int
    ) -> list[tuple[str, int, bytes]]:
        """(account, lt, hash) of one block's transactions in lt order, without their BOCs."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT account, lt, hash FROM transactions WHERE mc_seqno = ? AND lt > ? "
                "ORDER BY lt LIMIT ?",
                (mc_seqno, after_lt, limit),
            ).fetchall()
        return [(str(a), int(lt), bytes(h)) for a, lt, h in rows]

    def trace_transactions(self, trace_id: bytes) -> list[TxRow]:
        return self._txs(
            f"SELECT {_TX_COLS} FROM transactions WHERE trace_id = ? ORDER BY lt",  # noqa: S608
            (trace_id,),
        )

    def messages(
        self,
        *,
        msg_hash: bytes | None = None,
        direction: str | None = None,
        source: str | None = None,
        destination: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[MsgRow]:
        where: list[str] = []
        args: list[object] = []
        if msg_hash is not None:
            where.append("(hash = ? OR norm_hash = ?)")
            args += [msg_hash, msg_hash]
        if direction is not None:
            where.append("direction = ?")
            args.append(direction)
        if source is not None:
            where.append("source = ?")
            args.append(source)
        if destination is not None:
            where.append("destination = ?")
            args.append(destination)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_MSG_COLS} FROM messages {clause} ORDER BY created_lt DESC "  # noqa: S608
                "LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [
            MsgRow(bytes(r[0]), r[1] and bytes(r[1]), r[2], bytes(r[3]), r[4], r[5], r[6], r[7])
            for r in rows
        ]
