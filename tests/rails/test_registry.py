"""Which backup rails exist: listed in BACKUP_RAILS and configured, in priority order."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tonrail.rails.registry import (
    build_backup_rails,
    configured_backup_rails,
    enabled_rails,
    routing_policy,
)
from tonrail.settings import Settings


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_only_configured_rails_are_built() -> None:
    assert configured_backup_rails(make()) == ()
    assert enabled_rails(make()) == {"ton"}
    s = make(
        stripe_secret_key=SecretStr("sk_test_1"),
        bank_account_name="Ops",
        bank_account_iban="DE89370400440532013000",
        backup_rails="bank,stripe",
    )
    # The listing order is the priority; PayPal is listed nowhere and has no credentials.
    assert configured_backup_rails(s) == ("bank", "stripe")
    assert set(build_backup_rails(s)) == {"stripe", "bank"}
    assert routing_policy(s).backup_order == ("bank", "stripe")
    assert configured_backup_rails(make(stripe_secret_key=SecretStr("sk"), backup_rails="")) == ()


def test_unknown_rail_and_bad_iban_fail_at_start() -> None:
    with pytest.raises(ValueError, match="unknown rails"):
        configured_backup_rails(make(backup_rails="stripe,venmo"))
    with pytest.raises(ValueError, match="IBAN"):
        build_backup_rails(
            make(bank_account_name="Ops", bank_account_iban="DE89370400440532013001")
        )
