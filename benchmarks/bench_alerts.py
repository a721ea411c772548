"""Alert detection latency: failures recorded -> alert delivered to Slack and SMTP.

What is measured: a fault is injected at the attempt layer (ALERT_FAILURE_PATTERN_COUNT
failed attempts with one new error code, committed as the TON rail will record bounces);
the clock starts when the last failure commits and stops when the local Slack server
(uvicorn) and the local SMTP server (aiosmtpd) have received the alert. Detection runs as in
production: the worker's `evaluate_alerts` loop at its registered interval, default
settings, on SQLite. Not included yet: the time the TON rail needs to see a bounce on chain
(measured end to end once the TON rail lands).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

ROUNDS = 12
GOAL_SECONDS = 15.0


async def _measure() -> tuple[list[float], list[float], float]:
    from tests.monitoring.helpers import attempt_outcome, payout
    from tests.monitoring.servers import Recorder, http_server, slack_app, smtp_server
    from tonrail.db import Database
    from tonrail.migrate import upgrade_async
    from tonrail.payments.service import PaymentService
    from tonrail.settings import Settings
    from tonrail.worker import LOOPS, WorkerContext, run_loop

    loop = LOOPS["evaluate_alerts"]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}"
        await upgrade_async(url)
        db = Database(url)
        slack = Recorder()
        async with smtp_server() as (smtp_port, smtp), http_server(slack_app(slack)) as base:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                database_url=url,
                data_dir=Path(tmp),
                smtp_port=smtp_port,
                payment_alert_email="ops@example.com",
                slack_webhook_url=SecretStr(f"{base}/services/T000/B000/XXXX"),
                # every round is a new fault; the stuck/progress rules are not under test
                alert_stuck_seconds=10**6,
                alert_progress_stale_seconds=10**6,
            )
            ctx = WorkerContext(db, settings, PaymentService(db, settings), "bench")
            stop = asyncio.Event()
            worker = asyncio.create_task(run_loop(ctx, loop, stop))
            slack_latency: list[float] = []
            mail_latency: list[float] = []
            for n in range(ROUNDS):
                code = f"bounced_{n}"
                for i in range(settings.alert_failure_pattern_count):
                    pid = await payout(
                        db, counterparty="0:" + f"{n:02x}{i:02x}" * 16, key=f"k{n}{i}"
                    )
                    await attempt_outcome(db, pid, "failed", error_code=code)
                t0 = time.perf_counter()
                got_slack = got_mail = None
                while got_slack is None or got_mail is None:
                    await asyncio.sleep(0.01)
                    if got_slack is None and any(code in str(b["text"]) for b in slack.received):
                        got_slack = time.perf_counter() - t0
                    if got_mail is None and any(
                        code in str(m["message"]["Subject"]) for m in smtp.received
                    ):
                        got_mail = time.perf_counter() - t0
                    if time.perf_counter() - t0 > 60:
                        raise RuntimeError(f"round {n}: no alert within 60 s")
                slack_latency.append(got_slack)
                mail_latency.append(got_mail)
                # start the next fault at a random phase of the loop
                await asyncio.sleep(0.37 * (n % 5))
            stop.set()
            await worker
        await db.dispose()
    return slack_latency, mail_latency, loop.interval_seconds


def _row(name: str, xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=20, method="inclusive")
    return f"| {name} | {len(xs)} | {statistics.median(xs):.2f} | {q[18]:.2f} | {max(xs):.2f} |"


def main() -> str:
    slack, mail, interval = asyncio.run(_measure())
    worst = max(max(slack), max(mail))
    verdict = "meets" if worst < GOAL_SECONDS else "misses"
    return "\n".join(
        [
            "## Alert detection latency",
            "",
            "Fault: a burst of failed attempts with one error code, committed through the "
            "attempt layer; latency until the alert reached a local Slack webhook server and a "
            "local SMTP server. Detection by the worker loop `evaluate_alerts` (interval "
            f"{interval:g} s), default settings, SQLite. The TON rail's own time to see a "
            "bounce on chain is not included (measured end to end once the TON rail lands).",
            "",
            "| channel | rounds | median s | p95 s | max s |",
            "| --- | ---: | ---: | ---: | ---: |",
            _row("Slack", slack),
            _row("email (SMTP)", mail),
            "",
            f"Goal: under {GOAL_SECONDS:g} s. Worst case {worst:.2f} s: {verdict} the goal.",
            "",
        ]
    )


if __name__ == "__main__":
    print(main())
