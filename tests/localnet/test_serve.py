"""`serve` runs the network as `tonrail localnet` will: a state file, a port, a block time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(state: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    code = (
        "from tonrail.localnet.server import serve; "
        f"serve({str(state)!r}, '127.0.0.1', {port}, 100)"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _wait(url: str, proc: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            return dict(httpx.get(f"{url}/localnet/status", timeout=1).json())
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("server did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow
def test_serve_produces_blocks_and_keeps_state(tmp_path: Path) -> None:
    state = tmp_path / "localnet.sqlite3"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(state, port)
    try:
        first = _wait(url, proc)
        time.sleep(0.5)
        later = httpx.get(f"{url}/localnet/status").json()
        assert later["seqno"] > first["seqno"]  # the 100 ms block producer runs
        assert later["block_ms"] == 100
        assert later["collate_ms"] is None  # no limit by default: whole traces in a block
        info = httpx.get(f"{url}/api/v2/getMasterchainInfo").json()
        assert info["ok"] is True
        genesis = httpx.get(f"{url}/localnet/genesis").json()
    finally:
        _stop(proc)
    seqno = later["seqno"]
    port = _free_port()  # a fresh port: the old one may linger in TIME_WAIT or be taken
    url = f"http://127.0.0.1:{port}"
    proc = _start(state, port)
    try:
        resumed = _wait(url, proc)
        assert resumed["seqno"] >= seqno  # the chain resumes from the file
        assert httpx.get(f"{url}/localnet/genesis").json() == genesis
    finally:
        _stop(proc)


@pytest.mark.slow
def test_module_entry_point_takes_faults_at_start(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tonrail.localnet",
            "--state",
            str(tmp_path / "net.sqlite3"),
            "--port",
            str(port),
            "--block-ms",
            "100",
            "--collate-ms",
            "250",
            "--faults",
            '{"max_tx_per_block": 5, "http_429_rate": 1.0}',
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, proc)
        faults = httpx.get(f"{url}/localnet/faults").json()
        assert faults["max_tx_per_block"] == 5 and faults["http_429_rate"] == 1.0
        assert httpx.get(f"{url}/localnet/status").json()["collate_ms"] == 250
        assert httpx.get(f"{url}/api/v2/getMasterchainInfo").status_code == 429
    finally:
        _stop(proc)


def test_module_entry_point_refuses_a_negative_collation_time(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tonrail.localnet",
            "--state",
            str(tmp_path / "n.sqlite3"),
            "--collate-ms",
            "-1",
        ],
        env={**os.environ, "PYTHONPATH": f"{REPO / 'src'}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--collate-ms must be 0 or more" in done.stderr


def test_the_cli_refuses_a_negative_collation_time(tmp_path: Path) -> None:
    """`tonrail localnet` and `python -m tonrail.localnet` share the rule (`collate_limit`)."""
    from typer.testing import CliRunner

    from tonrail.cli import app

    state = tmp_path / "n.sqlite3"
    done = CliRunner().invoke(app, ["localnet", "--state", str(state), "--collate-ms", "-1"])
    assert done.exit_code == 2 and "--collate-ms must be 0 or more" in done.output
    assert not state.exists()  # refused before anything was opened
