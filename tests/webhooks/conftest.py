"""The provider fixtures of tests/rails, shared here."""

from tests.rails.conftest import (  # noqa: F401
    localstripe_url,
    paypal,
    rail_app,
    rail_client,
    rail_settings,
    stripe_extras,
)
