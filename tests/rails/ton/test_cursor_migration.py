"""Migration 0019c: the deposit cursors of wallets a rotation has already swept start
`retired` (their deposits are booked on the retired hot wallets); the others do not."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tonrail.migrate import upgrade

AT = "2026-12-01 00:00:00"


def test_the_migration_marks_the_cursors_of_swept_wallets(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url, "0004")  # ton_wallet_cursors
    upgrade(url, "0018w")  # ton_wallet_rotations
    states = {"0:AA": "switched", "0:BB": "swept", "0:CC": "sweep_signed", "0:DD": "canceled"}
    with sqlite3.connect(path) as conn:
        for wallet in (*states, "0:EE"):
            conn.execute(
                "INSERT INTO ton_wallet_cursors (wallet, last_lt, last_hash, updated_at) "
                "VALUES (?, 1, 'h', ?)",
                (wallet, AT),
            )
        for n, (wallet, state) in enumerate(states.items()):
            conn.execute(
                "INSERT INTO ton_wallet_rotations (id, state, old_wallet, old_public_key, "
                "new_wallet, new_public_key, new_key_file, sweep_send_count, actor, created_at, "
                "updated_at) VALUES (?, ?, ?, 'k', '0:FF', 'k', 'f', 0, 'a', ?, ?)",
                (f"rot_{n}", state, wallet, AT, AT),
            )
    upgrade(url)
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT wallet, retired FROM ton_wallet_cursors ORDER BY wallet")
        assert rows.fetchall() == [("0:AA", 1), ("0:BB", 1), ("0:CC", 0), ("0:DD", 0), ("0:EE", 0)]
