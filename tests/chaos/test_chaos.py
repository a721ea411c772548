"""The chaos run's CI version (docs/CHAOS.md): 90 s of kills and toncenter faults on PostgreSQL.

It runs `python -m benchmarks.chaos --restart-postgres` in a process of its own (which makes a
PostgreSQL cluster of its own with the machine's initdb, starts the local network, 2 API
processes and 3 workers, and crash-restarts that cluster once, halfway; the shared server other
test runs use is never touched) and asserts only correctness: every check of
benchmarks/chaos_checks.py, never a speed. Select it with `-m chaos`, leave it out with
`-m "not chaos"`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.private_pg import available

REPO = Path(__file__).resolve().parents[2]
SECONDS = os.environ.get("CHAOS_CI_SECONDS", "90")

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.mark.skipif(
    available() is not None, reason=f"the chaos run needs its own PostgreSQL: {available()}"
)
def test_chaos_run_pays_every_payout_exactly_once() -> None:
    cmd = [sys.executable, "-m", "benchmarks.chaos", "--seconds", SECONDS, "--quiesce", "900"]
    done = subprocess.run(
        [*cmd, "--restart-postgres"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=float(SECONDS) + 1800,
    )
    report = f"{done.stdout}\n{done.stderr[-6000:]}"
    assert done.returncode == 0, report
    assert "every check passed" in done.stderr, report
    assert '"postgres_restarts": 1' in done.stdout, report
