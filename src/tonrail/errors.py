"""One exception hierarchy; each error has a stable machine-readable `code` and an HTTP status."""

from __future__ import annotations

from typing import Any


class TonrailError(Exception):
    """Base of every error tonrail raises on purpose."""

    code = "tonrail_error"
    status = 400

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param}


# A class per error so callers catch each by type: alike in shape only.
class InvalidRequest(TonrailError):
    code = "invalid_request"
    status = 400


class InvalidAmount(InvalidRequest):
    code = "amount_invalid"


class UnknownAsset(InvalidRequest):
    code = "asset_unknown"


class InvalidAddress(InvalidRequest):
    code = "address_invalid"


class AmountOutOfRange(TonrailError):
    code = "amount_out_of_range"
    status = 422


class AuthenticationFailed(TonrailError):
    code = "authentication_failed"
    status = 401


class PermissionDenied(TonrailError):
    code = "permission_denied"
    status = 403


class NotFound(TonrailError):
    code = "not_found"
    status = 404


class Conflict(TonrailError):
    code = "conflict"
    status = 409


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class LimitExceeded(TonrailError):
    code = "daily_volume_limit_exceeded"
    status = 422


class InsufficientBalance(TonrailError):
    """A payout (or refund) the account's available balance does not cover."""

    code = "insufficient_balance"
    status = 422


class KeyLimitExceeded(TonrailError):
    """A payout beyond a limit of the API key that asks for it (amount, day, asset, address)."""

    code = "key_limit_exceeded"
    status = 422


class ServiceUnavailable(TonrailError):
    code = "service_unavailable"
    status = 503
