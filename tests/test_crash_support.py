"""The crash tests' harness (tests/crash_support.py) can fail: a worker that never reaches its
crash point, or that ends any other way than by the crash point's SIGKILL, fails the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crash_support import crash, net, worker_env
from tests.tonnet import Localnet
from tonrail.settings import Settings

__all__ = ["net"]  # fixture, used by name


@pytest.mark.slow
async def test_a_worker_that_never_reaches_its_crash_point_fails_the_test(
    net: Localnet, settings: Settings, tmp_path: Path
) -> None:
    env = worker_env(net, settings, tmp_path, "nowhere.never")
    with pytest.raises(AssertionError, match=r"did not reach nowhere\.never"):
        await crash(env, "ton_deposits", within=5)


async def test_a_worker_that_exits_by_itself_or_has_no_crash_point_fails_the_test(
    net: Localnet, settings: Settings, tmp_path: Path
) -> None:
    env = worker_env(net, settings, tmp_path, "ton.after_claim")
    with pytest.raises(AssertionError):  # an unknown loop: the worker exits with an error
        await crash(env, "no_such_loop", within=30)
    with pytest.raises(AssertionError, match="needs a crash point"):
        await crash({**env, "CRASH_AT": ""}, "ton_deposits")
