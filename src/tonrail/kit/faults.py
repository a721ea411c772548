"""Crash points for fault-injection tests: the process dies here, as with a power cut.

`CRASH_AT=ton.after_send` makes the worker SIGKILL itself at that point, so tests can prove
that a restart neither loses nor repeats a payment. Refused in production.
"""

from __future__ import annotations

import os
import signal

from tonrail.settings import Settings


def crashpoint(settings: Settings, name: str) -> None:
    if settings.crash_at and settings.crash_at == name and settings.environment != "production":
        os.kill(os.getpid(), signal.SIGKILL)
