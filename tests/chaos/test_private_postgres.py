"""The chaos run's own PostgreSQL cluster (benchmarks/private_pg.py): made, used, crash-restarted
(immediate stop) without losing a committed row, and removed, while the machine's shared server
is untouched."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import asyncpg
import pytest

from benchmarks.private_pg import PrivatePostgres, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


async def _fetch(port: int, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="postgres")
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def test_private_cluster_survives_an_immediate_restart_and_is_removed() -> None:
    # Like the chaos run's folder: under /tmp, which the postgres user can reach (pytest's
    # tmp_path is under a root-only folder).
    run_folder = Path(tempfile.mkdtemp(prefix="tonrail-pgtest-"))
    pg = PrivatePostgres(run_folder / "postgres")
    try:
        pg.start()
        assert pg.port != 5432
        assert pg.url("x") == f"postgresql+asyncpg://postgres@127.0.0.1:{pg.port}/x"
        settings = asyncio.run(
            _fetch(
                pg.port,
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('fsync', 'full_page_writes', 'synchronous_commit', 'listen_addresses')",
            )
        )
        assert {r["name"]: r["setting"] for r in settings} == {
            "fsync": "on",
            "full_page_writes": "on",
            "synchronous_commit": "on",
            "listen_addresses": "127.0.0.1",
        }
        asyncio.run(_fetch(pg.port, "CREATE TABLE kept AS SELECT 42 AS n"))
        before = asyncio.run(_fetch(pg.port, "SELECT pg_postmaster_start_time() AS t"))[0]["t"]
        took = pg.restart()
        assert pg.restarts == 1 and took > 0
        after = asyncio.run(_fetch(pg.port, "SELECT pg_postmaster_start_time() AS t"))[0]["t"]
        assert after > before  # a new server, not the old one
        # The immediate stop skipped the checkpoint: the start recovered from the WAL.
        assert "database system was interrupted" in pg.log.read_text() or (
            "not properly shut down" in pg.log.read_text()
        )
        assert [r["n"] for r in asyncio.run(_fetch(pg.port, "SELECT n FROM kept"))] == [42]
        pg.remove()
        assert not pg.folder.exists()
    finally:
        pg.stop()
        shutil.rmtree(run_folder, ignore_errors=True)
