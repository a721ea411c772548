"""Reading a node's refusal of a re-sent request: only "already executed" (the highload
wallet's exit code 36) proves that the request landed."""

from __future__ import annotations

import pytest

from tonrail.rails.ton.highload import refused_as_executed
from tonrail.rails.ton.toncenter import ToncenterError

LITESERVER = (
    "LITE_SERVER_UNKNOWN: cannot apply external message to current state : External message "
    "was not accepted\nCannot run message on account: inbound external message rejected by "
    "transaction 2B84...:\nexitcode={code}, steps=13, gas_used=0"
)


@pytest.mark.parametrize(
    ("text", "executed"),
    [
        (LITESERVER.format(code=36), True),
        ("toncenter sendBocReturnHash: Exit code 36 != 0", True),
        (LITESERVER.format(code=35), False),  # created_at out of range: expired, not landed
        ("toncenter sendBocReturnHash: Exit code 33 != 0", False),  # bad signature
        (LITESERVER.format(code=366), False),
        ("connection reset by peer", False),
        ("HTTP 500 after 36 attempts", False),
    ],
)
def test_only_exit_code_36_means_already_executed(text: str, executed: bool) -> None:
    assert refused_as_executed(ToncenterError("rejected", text)) is executed
