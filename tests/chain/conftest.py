"""The address tests check the bounce rule on the local network too."""

from tests.localnet.conftest import chain, server  # noqa: F401  (the local network fixtures)
