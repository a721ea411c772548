"""Screenshots of the dashboard's main pages with real demo traffic (`make screenshots`).

Starts `tonrail run` (API + dashboard + workers + the local TON network, on SQLite) in a fresh
data directory with its demo traffic, lets the traffic run for a while, signs in with the
admin credentials it prints, and saves full-page PNGs of the main pages into docs/img/ with
Playwright driving Debian's Chromium (/usr/bin/chromium; Playwright never downloads one).

Knobs (environment): SCREENSHOTS_WARMUP_SECONDS (how long the traffic runs first, default
420), SCREENSHOTS_TRAFFIC_SECONDS (DEMO_TRAFFIC_SECONDS of the run, default 1),
SCREENSHOTS_RANGE (the time range of pages that have one, default 1h: the run is young).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "img"
TONRAIL = str(Path(sys.executable).parent / "tonrail")
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1440, "height": 900}
MAX_HEIGHT = 2400  # long pages (the fee decisions, the audit log) are cut here
_READERS: set[asyncio.Task[None]] = set()  # read the server output: a full pipe blocks it
CREDENTIALS = re.compile(r"dashboard admin \(shown once\): user (\S+)  password (\S+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(data_dir: Path, port: int) -> tuple[asyncio.subprocess.Process, str, str]:
    """`tonrail run` in `data_dir`; returns it with the admin's username and password."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TON", "DATABASE", "PORT", "DATA_DIR", "DEMO", "BOOTSTRAP"))
    }
    env.update(
        DATA_DIR=str(data_dir),
        PORT=str(port),
        LOCALNET_PORT=str(_free_port()),
        LOG_LEVEL="WARNING",
        DEMO_TRAFFIC_SECONDS=os.environ.get("SCREENSHOTS_TRAFFIC_SECONDS", "1"),
    )
    proc = await asyncio.create_subprocess_exec(
        TONRAIL,
        "run",
        env=env,
        cwd=data_dir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output = ""
    deadline = time.monotonic() + 120
    while True:
        if time.monotonic() > deadline:
            raise RuntimeError(f"tonrail run printed no admin credentials in 120 s:\n{output}")
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=1)
        except TimeoutError:
            continue
        if not line and proc.returncode is not None:
            raise RuntimeError(f"tonrail run exited:\n{output}")
        output += line.decode(errors="replace")
        if m := CREDENTIALS.search(output):
            print(f"screenshots: tonrail run is up on port {port}", flush=True)
            _READERS.add(asyncio.create_task(_drain(proc.stdout)))
            return proc, m.group(1), m.group(2)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def _settled(page: Any) -> None:
    """The page loaded and every chart on it is drawn (app.js marks canvases data-drawn)."""
    await page.wait_for_load_state("load")
    await page.wait_for_function(
        "() => window.Chart !== undefined || !document.querySelector('canvas[data-chart]')",
        timeout=20_000,
    )
    await page.wait_for_function(
        "() => !document.querySelector('canvas[data-chart]:not([data-drawn])')",
        timeout=20_000,
    )


async def _shoot(page: Any, base: str, path: str, name: str) -> Path:
    await page.goto(base + path)
    await _settled(page)
    target = OUT / f"{name}.png"
    height = await page.evaluate("() => document.documentElement.scrollHeight")
    clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": min(int(height), MAX_HEIGHT)}
    await page.screenshot(path=str(target), full_page=True, clip=clip)
    print(f"screenshots: {target.relative_to(REPO)}  <- {path}", flush=True)
    return target


async def take(base: str, username: str, password: str, range_: str) -> list[Path]:
    from playwright.async_api import async_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
            page = await context.new_page()
            await page.goto(f"{base}/dashboard/login")
            await page.fill("input[name=username]", username)
            await page.fill("input[name=password]", password)
            await page.click("button[type=submit]")
            await page.wait_for_url(re.compile(r".*/dashboard/(?!login).*"), timeout=20_000)
            ranged = f"?range={range_}" if range_ else ""
            for path, name in (
                (f"/dashboard/overview{ranged}", "overview"),
                ("/dashboard/payments", "payments"),
            ):
                shots.append(await _shoot(page, base, path, name))
            # The detail of a payout that went through: attempts, ledger lines, fee decision.
            await page.goto(f"{base}/dashboard/payments?status=succeeded&direction=out")
            await _settled(page)
            link = page.locator("a[href^='/dashboard/payments/pay_']").first
            href = await link.get_attribute("href", timeout=20_000)
            shots.append(await _shoot(page, base, str(href), "payment-detail"))
            for path, name in (
                (f"/dashboard/errors{ranged}", "errors"),
                (f"/dashboard/fees{ranged}", "fees"),
                (f"/dashboard/backup{ranged}", "backup"),
                ("/dashboard/alerts", "alerts"),
                ("/dashboard/approvals", "approvals"),
                ("/dashboard/operations", "operations"),
            ):
                shots.append(await _shoot(page, base, path, name))
        finally:
            await browser.close()
    return shots


async def main() -> int:
    warmup = float(os.environ.get("SCREENSHOTS_WARMUP_SECONDS", "420"))
    range_ = os.environ.get("SCREENSHOTS_RANGE", "1h")
    with tempfile.TemporaryDirectory(prefix="tonrail-screenshots-") as tmp:
        port = _free_port()
        proc, username, password = await _start(Path(tmp), port)
        try:
            print(f"screenshots: letting the demo traffic run for {warmup:.0f} s", flush=True)
            await asyncio.sleep(warmup)
            await take(f"http://127.0.0.1:{port}", username, password, range_)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
