"""Migration 0017b: balances start from what the books already hold."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tonrail.migrate import upgrade


def test_the_migration_fills_balances_from_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url, "0001")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO journal_entries (id, kind, created_at) VALUES "
            "('je_1', 'invoice.paid', '2026-12-01 00:00:00')"
        )
        lines = [
            ("asset:hot_wallet", "TON", 9),
            ("liability:merchant:acct_a", "TON", -9),
            ("liability:merchant:acct_b", "USDT", 4),  # a house account that paid out
            ("liability:payouts_payable", "USDT", -4),
        ]
        conn.executemany(
            "INSERT INTO ledger_lines (entry_id, account, asset, amount) VALUES ('je_1', ?, ?, ?)",
            lines,
        )
    upgrade(url)
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT account_id, asset, available, overdraft_allowed FROM account_balances "
            "ORDER BY account_id"
        ).fetchall()
    assert rows == [("acct_a", "TON", 9, 1), ("acct_b", "USDT", -4, 1)]
