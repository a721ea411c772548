"""Run Alembic migrations programmatically (tonrail migrate, tonrail run, tests).

The scripts are package data (`tonrail/migrations`), found through the package, so an
installed wheel migrates exactly like a checkout; no alembic.ini is needed at run time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

SCRIPT_LOCATION = "tonrail:migrations"  # Alembic resolves "package:folder" via the package


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
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
