"""Schemathesis against a live server, on SQLite and PostgreSQL (issue 17).

The app runs in uvicorn on a free port; `st run` (the schemathesis CLI, in its own process)
reads /openapi.json from it and sends what it generates with an API key holding every scope:
every phase (examples, coverage, fuzzing, stateful through the schema's OpenAPI links between
create, get, list, approve and cancel) and every check. A finding fails the test with the
CLI's report, which names the request that reproduces it.

`SCHEMATHESIS_MAX_EXAMPLES` (default 8) bounds the examples per operation in `make test`;
`make schemathesis` runs a longer one. Rate limits are off and lockouts high: the run sends
thousands of requests from one address, several of them with a wrong key on purpose.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_key
from tests.live_server import LiveServer
from tonrail.db import Database
from tonrail.settings import Settings

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "8"))
SEED = os.environ.get("SCHEMATHESIS_SEED", "")
ST = Path(sys.executable).with_name("st")
HERE = Path(__file__).parent


@pytest.fixture
def live_api(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(
        settings.model_copy(
            update={"rate_limit_enabled": False, "alert_suspicious_failures": 1_000_000}
        )
    )
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
async def test_the_live_api_conforms_to_its_schema(
    db: Database, live_api: LiveServer, tmp_path: Path
) -> None:
    key = await make_key(db, "acct_st", "payments:read", "payments:write", "payouts:approve")
    command = [
        str(ST),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{live_api.url}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {key}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
        "--no-color",
    ]
    if SEED:
        command += ["--seed", SEED]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HERE / "schemathesis_hooks.py")}
    # In a thread: the live server shares nothing with this loop, but the test should not
    # hold it either.
    run = await asyncio.to_thread(
        subprocess.run,
        command,
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    print(run.stdout[run.stdout.rfind("SUMMARY") :])  # phases, operations, cases (-rP)
