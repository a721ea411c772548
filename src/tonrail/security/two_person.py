"""The two-person rule: whoever asked for a move that needs approval cannot approve it
(payouts above the approval threshold, payments/service.py; a way out of a failed hot
wallet sweep, processing/rotation_recovery.py)."""

from __future__ import annotations

from tonrail.errors import PermissionDenied


def refuse_approval_by_requester(approver: str, requester: str | None, who: str) -> None:
    """403 `approver_is_requester` when `approver` is who asked (`who` names them)."""
    if approver == requester:
        raise PermissionDenied(f"{who} cannot approve it", code="approver_is_requester")
