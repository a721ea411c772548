"""The two-person rule both payout approvals and a hot wallet rotation's way out use
(security/two_person.py): the requester cannot approve, 403 `approver_is_requester`."""

from __future__ import annotations

import pytest

from tonrail.errors import PermissionDenied
from tonrail.security.two_person import refuse_approval_by_requester


def test_the_requester_is_refused_and_anyone_else_may_approve() -> None:
    with pytest.raises(PermissionDenied) as refused:
        refuse_approval_by_requester("key_a", "key_a", "the requester of a payout")
    assert refused.value.code == "approver_is_requester"
    assert refused.value.message == "the requester of a payout cannot approve it"
    refuse_approval_by_requester("key_b", "key_a", "the requester of a payout")
    refuse_approval_by_requester("admin:bob", None, "the operator who asked for a way out")
