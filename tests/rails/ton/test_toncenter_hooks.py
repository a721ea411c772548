"""The toncenter client reports each call's final outcome by method name, for monitoring."""

from __future__ import annotations

import httpx
import pytest

from tonrail.rails.ton.toncenter import ToncenterClient, ToncenterError


async def test_calls_are_reported_by_method_after_retries() -> None:
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
    assert [(m, ok) for m, ok, _ in seen] == [
        ("sendBocReturnHash", True),
        ("sendBocReturnHash", False),
    ]
    assert seen[1][2]  # the error kind is named
    assert all("http" not in m for m, _, _ in seen)  # a method name, never a URL
