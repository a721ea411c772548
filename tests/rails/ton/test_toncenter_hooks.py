"""The toncenter client reports failed tries at once and successful calls, by method name."""

from __future__ import annotations

import httpx
import pytest

from tonrail.rails.ton.toncenter import ToncenterClient, ToncenterError


async def test_failed_tries_and_successes_are_reported_by_method() -> None:
    answers = iter(
        [
            httpx.Response(
                200,
                json={
                    "ok": True,
                    "result": {
                        "@type": "raw.extMessageInfo",
                        "hash": "aGFzaA==",
                        "hash_norm": "bm9ybQ==",
                    },
                },
            ),
            httpx.Response(502, text="bad gateway"),
            httpx.Response(502, text="bad gateway"),
        ]
    )
    seen: list[tuple[str, bool, str]] = []
    client = ToncenterClient(
        ["http://toncenter.test/api/v2"],
        transport=httpx.MockTransport(lambda request: next(answers)),
        max_attempts=2,
        backoff_initial=0.0,
        backoff_max=0.0,
        on_call=lambda method, ok, kind: seen.append((method, ok, kind)),
    )
    await client.send_boc_return_hash("te6cc")
    with pytest.raises(ToncenterError):
        await client.send_boc_return_hash("te6cc")
    await client.aclose()
    # The failing call is reported per try (2 of them), before the retries are over.
    assert [(m, ok) for m, ok, _ in seen] == [
        ("sendBocReturnHash", True),
        ("sendBocReturnHash", False),
        ("sendBocReturnHash", False),
    ]
    assert seen[1][2]  # the error kind is named
    assert all("http" not in m for m, _, _ in seen)  # a method name, never a URL
