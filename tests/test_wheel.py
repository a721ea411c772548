"""The wheel works installed outside the checkout: it migrates, runs, serves the dashboard.

Built without build isolation (setuptools comes with the dev extras) and installed with
--no-deps into a fresh venv in a temporary folder; the dependencies come from the dev venv
through a path entry, so the test stays offline. Nothing of the checkout is on the path.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.tonnet import free_port
from tonrail.settings import REPO_ROOT

VENDOR = REPO_ROOT / "src" / "tonrail" / "vendor"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv outside the checkout with only the built wheel of tonrail in it."""
    missing = [n for n in ("htmx.min.js", "chart.umd.min.js") if not (VENDOR / n).is_file()]
    assert not missing, f"{missing} not in {VENDOR}: run `make assets`"
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(dist), str(REPO_ROOT)],
        check=True,
    )  # fmt: skip
    (wheel,) = dist.glob("tonrail-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for expected in (
        "tonrail/migrations/env.py",
        "tonrail/migrations/script.py.mako",
        "tonrail/migrations/versions/0001_initial_schema.py",
        "tonrail/vendor/htmx.min.js",
        "tonrail/vendor/chart.umd.min.js",
        "tonrail/vendor/ton-sandbox-config.js",
        "tonrail/vendor/pay-wallet.js",
        "tonrail/vendor/treasury-wallet.js",
        "tonrail/paypage/templates/pay.html",
        "tonrail/paypage/static/pay.js",
        "tonrail/paypage/static/icon.png",
    ):
        assert expected in names, f"{expected} is not in {wheel.name}"
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # The dependencies, offline: the dev venv's site-packages after the venv's own (a plain
    # path entry: the editable install's own .pth there is not processed).
    Path(purelib, "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--no-index", str(wheel)],
        check=True,
    )  # fmt: skip
    where = subprocess.run(
        [str(python), "-c", "import tonrail; print(tonrail.__file__)"],
        check=True, capture_output=True, text=True, cwd=root,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(purelib), where
    yield venv


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TON", "DATABASE", "PORT", "DATA_DIR", "PYTHON", "DASHBOARD"))
    }
    env.update(DATA_DIR=str(data_dir), LOG_LEVEL="WARNING", **extra)
    return env


def test_installed_wheel_migrates(installed: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(installed / "bin" / "tonrail"), "migrate"],
        cwd=tmp_path, env=_env(tmp_path / "var"), capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "newest schema" in result.stdout
    files = list((tmp_path / "var").glob("*.sqlite3"))
    assert files, "no database file written"
    with sqlite3.connect(files[0]) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert versions, "alembic_version is empty"
    assert {"payments", "ledger_lines", "api_keys"} <= tables, tables


@pytest.mark.slow
async def test_installed_wheel_runs_and_serves_the_dashboard(
    installed: Path, tmp_path: Path
) -> None:
    port, localnet_port = free_port(), free_port()
    env = _env(
        tmp_path / "var",
        PORT=str(port),
        LOCALNET_PORT=str(localnet_port),
        DEMO_TRAFFIC_SECONDS="0",
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(installed / "bin" / "tonrail"), "run",
            cwd=tmp_path, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _wait_healthy(client, proc, log)
            await _sign_in(client, log)
            page = await client.get("/dashboard/overview")
            assert page.status_code == 200, page.text[:500]
            scripts = re.findall(r'<script src="(/dashboard/static/[^"]+)"', page.text)
            assert {"/dashboard/static/htmx.min.js", "/dashboard/static/chart.umd.min.js"} <= set(
                scripts
            ), scripts
            for src in scripts:
                asset = await client.get(src)
                assert asset.status_code == 200, (src, asset.text[:200])
                assert asset.headers["content-type"].startswith("text/javascript")
                packaged = _packaged(src.rsplit("/", 1)[1])
                if packaged is not None:
                    assert asset.content == packaged
            # The local network (its chain config is package data too) answers toncenter.
            async with httpx.AsyncClient() as raw:
                info = await raw.get(f"http://127.0.0.1:{localnet_port}/api/v2/getMasterchainInfo")
            assert info.status_code == 200 and info.json()["ok"] is True
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), timeout=30)


def _read(log: Path) -> str:
    return log.read_text(errors="replace")


def _packaged(name: str) -> bytes | None:
    return (VENDOR / name).read_bytes() if (VENDOR / name).is_file() else None


async def _sign_in(client: httpx.AsyncClient, log: Path) -> None:
    """Sign in as the admin `tonrail run` created and printed once."""
    found = re.search(r"dashboard admin \(shown once\): user (\S+)\s+password (\S+)", _read(log))
    assert found, _read(log)[-2000:]
    form = await client.get("/dashboard/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text[:500]
    signed_in = await client.post(
        "/dashboard/login",
        data={"username": found[1], "password": found[2], "csrf_token": token[1]},
    )
    assert signed_in.status_code in (200, 303), signed_in.text[:500]


async def _wait_healthy(
    client: httpx.AsyncClient, proc: asyncio.subprocess.Process, log: Path
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while loop.time() < deadline:
        if proc.returncode is not None:
            raise AssertionError(_read(log)[-3000:])
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.3)
    raise AssertionError(f"not healthy: {_read(log)[-3000:]}")
