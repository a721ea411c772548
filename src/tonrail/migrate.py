"""Run Alembic migrations programmatically (tonrail migrate, tonrail run, tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from tonrail.settings import REPO_ROOT


def alembic_config(url: str) -> Config:
    ini = REPO_ROOT / "alembic.ini"
    config = Config(str(ini))
    config.set_main_option("script_location", str(Path(REPO_ROOT) / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at `url` to `revision`; creates the SQLite file's folder."""
    if url.startswith("sqlite") and ":///" in url:
        path = url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "heads") -> None:
    # Alembic's env.py runs its own event loop, so run it in a thread.
    await asyncio.to_thread(upgrade, url, revision)
