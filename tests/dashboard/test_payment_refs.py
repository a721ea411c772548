"""What the payment page shows of a TON attempt's trace, for each way a payout is confirmed."""

from __future__ import annotations

from tonrail.dashboard.pages.payments import attempt_refs
from tonrail.dashboard.queries.payments import AttemptStory
from tonrail.payments.models import Attempt
from tonrail.rails.ton.models import TonTransfer


def _story(trace: dict[str, str]) -> AttemptStory:
    attempt = Attempt(rail="ton", status="confirmed", details={}, provider_ref=None)
    transfer = TonTransfer(status="confirmed", out_msg_hash="ab" * 32, trace=trace)
    return AttemptStory(attempt, transfer, None)


def test_a_usdt_payout_confirmed_by_its_excess_shows_the_recipient_wallet() -> None:
    refs = attempt_refs(_story({"recipient_jetton_wallet": "EQAbc", "excess_tx": "cd" * 32}))
    assert ("recipient jetton wallet", "EQAbc", "address") in refs
    assert ("excess returned", "cd" * 32, "tx") in refs


def test_a_non_bounceable_ton_payout_says_how_it_was_confirmed() -> None:
    refs = attempt_refs(_story({"delivery": "non_bounceable"}))
    assert any(label == "confirmed by" for label, _, _ in refs)
    assert ("outgoing message", "ab" * 32, "tx") in refs
