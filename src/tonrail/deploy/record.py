"""The testnet verification record: written by `tonrail rehearsal verify`, required by
scripts/deploy-mainnet-payments.sh (through `tonrail deploy check-record`).

One JSON file per verification run, named by time and commit, in REHEARSAL_RECORD_DIR:
the git SHA and release it verified, the network, when, and each check's result. The
mainnet deploy accepts only a record that passed every check, on testnet, for the commit
(or release) being deployed, and no older than its maximum age.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tonrail import __version__, clock

KIND = "tonrail-testnet-verification"
FORMAT = 1


class RecordError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def git_sha(cwd: Path | None = None) -> str:
    """The commit being verified or deployed: the git checkout at `cwd` (default: the
    working directory, else the checkout this package runs from); "unknown" outside one."""
    from tonrail.settings import REPO_ROOT

    for where in (cwd,) if cwd else (Path.cwd(), REPO_ROOT):
        try:
            out = subprocess.run(
                ["git", "rev-parse", "HEAD"],  # noqa: S607 (git from PATH, no shell)
                cwd=where,
                capture_output=True,
                text=True,
                check=True,
            )
        except (OSError, subprocess.CalledProcessError):
            continue
        return out.stdout.strip()
    return "unknown"


def write(directory: Path, record: dict[str, Any]) -> Path:
    """Write `record` atomically as <dir>/testnet-verification-<UTC time>-<sha12>.json."""
    directory.mkdir(parents=True, exist_ok=True)
    at = datetime.fromisoformat(record["finished_at"]).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{record['network']}-verification-{at}-{record['git_sha'][:12]}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def new_record(
    network: str, sha: str, started_at: datetime, checks: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "kind": KIND,
        "format": FORMAT,
        "git_sha": sha,
        "release": __version__,
        "network": network,
        "started_at": started_at.isoformat(),
        "finished_at": clock.now().isoformat(),
        "ok": bool(checks) and all(c["ok"] for c in checks),
        "checks": checks,
        **extra,
    }


@dataclass(frozen=True)
class Accepted:
    path: Path
    record: dict[str, Any]


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        return None
    return data


def require(
    directory: Path,
    *,
    sha: str,
    release: str | None = None,
    network: str = "testnet",
    max_age: timedelta = timedelta(hours=24),
    now: datetime | None = None,
) -> Accepted:
    """The newest passing record for `sha` (or `release`) on `network` younger than
    `max_age`; otherwise RecordError saying what is missing."""
    now = now or clock.now()
    records = [
        (path, data)
        for path in sorted(directory.glob("*-verification-*.json"))
        if (data := _load(path)) is not None
    ]
    if not records:
        raise RecordError(
            f"no testnet verification record in {directory}: run `make deploy-testnet"
            " test-payments verify-testnet-payments` with TON_NETWORK=testnet first"
        )
    on_network = [(p, d) for p, d in records if d.get("network") == network]
    if not on_network:
        found = sorted({str(d.get("network")) for _, d in records})
        raise RecordError(f"no verification record on {network} (only on {', '.join(found)})")
    for_this = [
        (p, d)
        for p, d in on_network
        if d.get("git_sha") == sha or (release is not None and d.get("release") == release)
    ]
    if not for_this:
        what = f"commit {sha}" + (f" or release {release}" if release else "")
        raise RecordError(f"no {network} verification record for {what}")
    passed = [(p, d) for p, d in for_this if d.get("ok") is True]
    if not passed:
        newest_path, newest = max(for_this, key=lambda pd: str(pd[1].get("finished_at")))
        failed = [c.get("name") for c in newest.get("checks", []) if not c.get("ok")]
        raise RecordError(
            f"the {network} verification of this commit failed ({newest_path.name}:"
            f" {', '.join(map(str, failed)) or 'no checks'})"
        )
    path, data = max(passed, key=lambda pd: str(pd[1].get("finished_at")))
    try:
        finished = datetime.fromisoformat(str(data["finished_at"]))
    except (KeyError, ValueError):
        raise RecordError(f"{path.name}: no valid finished_at") from None
    if finished.tzinfo is None:
        finished = finished.replace(tzinfo=UTC)
    age = now - finished
    if age > max_age:
        raise RecordError(
            f"the newest passing {network} verification ({path.name}) is"
            f" {age.total_seconds() / 3600:.1f} h old; the limit is"
            f" {max_age.total_seconds() / 3600:g} h: run the rehearsal again"
        )
    return Accepted(path, data)
