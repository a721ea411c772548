"""Fixtures of the fee optimizer's tests: the TON rail on a running local network."""

from tests.rails.ton.rail_fixture import rail  # noqa: F401  (the e2e fixture)
